"""kontext/core/lru.py: bounded, least recently used first."""

import pytest

from kontext.core.lru import BoundedCache


def test_the_least_recently_used_entry_goes_first():
    c = BoundedCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # now "b" is the least recently used
    c.put("c", 3)
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2


def test_pop_and_drop_forget_entries():
    c = BoundedCache(10)
    for k in ("x1", "x2", "y1"):
        c.put(k, k)
    c.pop("y1")
    c.pop("missing")
    c.drop(lambda k: k.startswith("x"))
    assert len(c) == 0 and c.get("x1", "gone") == "gone"


def test_a_cache_needs_room_for_one():
    with pytest.raises(ValueError, match="max_entries"):
        BoundedCache(0)
