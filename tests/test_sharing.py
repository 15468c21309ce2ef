"""Read-only share links (kontext/files/sharing.py, Sessions.share/unshare/shared)."""

from __future__ import annotations

import pytest
from PIL import Image

from kontext.errors import UnknownShare, UserError
from kontext.files.sharing import TOKEN_RE
from kontext.files.store import check_key
from kontext.sessions.session import EditOptions

FAST = EditOptions(steps=2)


def test_a_link_shows_its_tree_and_nothing_else(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), name="a.png")
    sessions.edit(key, "one", FAST)
    sessions.edit(key, "two", FAST)
    share = sessions.share(key)
    assert TOKEN_RE.fullmatch(share.token) and share.key == key and share.root == 1
    assert sessions.share(key).token == share.token  # sharing again gives the same link
    with pytest.raises(UserError, match="session key"):
        check_key(share.token)  # a token is never accepted where a key is

    sessions.upload(key, Image.effect_noise((64, 64), 20).convert("RGB"), name="b.png")  # another tree
    _, view = sessions.shared(share.token)
    assert sorted(view.nodes) == [1, 2, 3] and view.current == 3  # the owner is elsewhere: the tip
    _, at = sessions.shared(share.token, current=2)
    assert at.current == 2
    _, outside = sessions.shared(share.token, current=4)
    assert outside.current == 3  # a step of another tree is not shown
    sessions.edit(key, "three", FAST, parent=2)  # the owner goes on: the link shows it
    assert 5 in sessions.shared(share.token)[1].nodes


def test_revoked_cleared_and_invented_links_say_so(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    token = sessions.share(key).token
    assert sessions.unshare(key) == 1
    with pytest.raises(UnknownShare, match="revoked by its owner, or it never existed"):
        sessions.shared(token)
    for made_up in ("v_" + "A" * 64, "nonsense", None, key):
        with pytest.raises(UnknownShare):
            sessions.shared(made_up)
    token = sessions.share(key).token
    sessions.clear(key)
    with pytest.raises(UnknownShare):
        sessions.shared(token)
    sessions.upload(key, Image.effect_noise((64, 64), 10).convert("RGB"))  # the same id 1, another picture
    with pytest.raises(UnknownShare):
        sessions.shared(token)
    with pytest.raises(UserError, match="nothing to share"):
        sessions.share(sessions.new())


def test_links_survive_a_restart(engine, store):
    from kontext.sessions.session import Sessions

    a = Sessions(engine, store)
    key = a.new()
    a.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    token = a.share(key).token
    b = Sessions(engine, store)
    assert b.shared(token)[0].key == key
    assert (store.root / "shares.json").stat().st_mode & 0o077 == 0  # keys inside: owner-only


def test_a_damaged_links_file_never_blocks_sharing_or_start_over(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    sessions.share(key)
    sessions.shares.path.write_text("{not json")
    sessions.clear(key)  # still works
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    assert TOKEN_RE.fullmatch(sessions.share(key).token)


def test_links_are_bounded_per_session_and_dead_ones_make_room(sessions, monkeypatch):
    from kontext.files import sharing

    key = sessions.new()
    for i in range(sharing.MAX_PER_SESSION):
        sessions.upload(key, Image.effect_noise((32, 32), 10 + i).convert("RGB"))
        sessions.share(key)
    sessions.upload(key, Image.effect_noise((32, 32), 99).convert("RGB"))
    with pytest.raises(UserError, match="already has 20 share links"):
        sessions.share(key)
    monkeypatch.setattr(sharing, "MAX_SHARES", sharing.MAX_PER_SESSION)
    other = sessions.new()
    sessions.upload(other, Image.effect_noise((32, 32), 5).convert("RGB"))
    with pytest.raises(UserError, match="share links: try again later"):
        sessions.share(other)  # the server is full of live links
    sessions.store.delete(key)  # that session expired: its links make room
    assert sessions.share(other).key == other
