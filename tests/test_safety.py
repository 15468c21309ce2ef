"""The content-safety hook (kontext/model/safety.py): refusals leave the history unchanged."""

from __future__ import annotations

import sys
import types

import pytest
from PIL import Image

from kontext.errors import Refused, UserError
from kontext.model.safety import PromptFilter, load_check
from kontext.model.turns import LocalGpu
from kontext.sessions.session import EditOptions, Sessions

FAST = EditOptions(steps=2)


class CountingGpu(LocalGpu):
    runs = 0

    def run(self, *a, **kw):
        self.runs += 1
        return super().run(*a, **kw)


def started(engine, store, check):
    gpu = CountingGpu(engine)
    s = Sessions(engine, store, gpu=gpu, safety=check)
    key = s.new()
    s.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    return s, key, gpu


def test_a_blocked_prompt_is_refused_before_the_gpu_and_changes_nothing(engine, store):
    s, key, gpu = started(engine, store, PromptFilter(["forbidden thing"]))
    before = s.history(key)
    with pytest.raises(Refused, match="content filter: the instruction contains 'Forbidden  Thing'"):
        s.edit(key, "draw a Forbidden  Thing here", FAST)
    assert gpu.runs == 0 and s.history(key) == before
    _, node = s.edit(key, "a forbidden-ish word alone is fine: forbidden", FAST)  # whole phrases only
    assert node.id == 2


def test_a_refused_result_is_never_kept(engine, store):
    seen = []

    def no_outputs(prompt, image, output):
        seen.append((prompt, image is not None, output is not None))
        return "the result looked unsafe" if output is not None else None

    s, key, gpu = started(engine, store, no_outputs)
    with pytest.raises(Refused, match="the result looked unsafe"):
        s.edit(key, "anything", FAST)
    assert gpu.runs == 1 and len(s.history(key)) == 1
    assert seen == [("anything", True, False), ("anything", True, True)]  # before, then on the result


def test_a_failing_check_refuses_rather_than_lets_through(engine, store):
    def broken(prompt, image, output):
        raise RuntimeError("model file missing")

    s, key, _ = started(engine, store, broken)
    with pytest.raises(Refused, match="the content filter failed"):
        s.edit(key, "anything", FAST)
    assert len(s.history(key)) == 1


def test_checks_are_named_by_a_setting(tmp_path, monkeypatch):
    assert load_check("off") is None
    assert isinstance(load_check("prompt"), PromptFilter)
    words = tmp_path / "words.txt"
    words.write_text("# one per line\nbanana split\n")
    assert load_check("prompt", str(words))("a Banana split please") is not None
    module = types.ModuleType("host_checks")
    module.nsfw = lambda prompt, image, output: None
    monkeypatch.setitem(sys.modules, "host_checks", module)
    assert load_check("host_checks:nsfw") is module.nsfw
    for bad, words_ in (("maybe", "off, prompt or module:function"), ("host_checks:missing", "could not be loaded"),
                        ("no_such_module:x", "could not be loaded")):
        with pytest.raises(UserError, match=words_):
            load_check(bad)
    with pytest.raises(UserError, match="needs --safety prompt"):
        load_check("off", str(words))


def test_the_word_list_catches_suffixes_and_separators():
    f = PromptFilter(["forbidden thing"])
    for text in ("forbidden things", "Forbidden-thing", "forbidden_thingy", "FORBIDDEN\tTHINGS"):
        assert f(text) is not None, text
    assert f("a thing forbidden") is None and f("unforbidden thing") is None


def test_imported_results_are_checked_and_previews_are_off(engine, store, tmp_path):
    s, key, _ = started(engine, store, None)
    s.edit(key, "a blocked word", FAST)
    s.export(key, tmp_path / "e.zip", scope="all")
    checked = Sessions(engine, store, safety=PromptFilter(["blocked word"]))
    other = checked.new()
    with pytest.raises(Refused, match="blocked word"):
        checked.import_zip(other, tmp_path / "e.zip")
    assert len(checked.history(other)) == 0
    def run_with(check):
        s = Sessions(engine, store, safety=check)
        key2 = s.new()
        s.upload(key2, Image.effect_noise((64, 64), 40).convert("RGB"))
        seen = []
        s.edit(key2, "fine", EditOptions(steps=3), on_step=seen.append, preview_every=1)
        return [p.preview for p in seen if p.total]

    assert all(p is None for p in run_with(lambda prompt, image, output: None))  # an image check: no previews
    assert any(p is not None for p in run_with(PromptFilter(["blocked word"])))  # words only: previews stay
