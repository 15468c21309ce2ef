import threading
import time

import numpy as np
import pytest
from PIL import Image

from kontext.core.metadata import read_metadata
from kontext.errors import Cancelled
from kontext.sessions.session import EditOptions, Sessions

FAST = EditOptions(steps=2)


def started(sessions, photo):
    key = sessions.new()
    sessions.upload(key, photo, name="photo.png")
    return key


def test_turns_chain_and_persist(sessions, photo, store):
    key = started(sessions, photo)
    for i in range(3):
        h, node = sessions.edit(key, f"turn {i}", FAST)
        assert node.parent == h.path()[-2].id
    assert [n.kind for n in h.path()] == ["upload", "edit", "edit", "edit"]
    fresh = Sessions(sessions.engine, store)  # a restarted server reads the same history
    assert fresh.history(key).to_dict() == h.to_dict()


def test_png_of_a_turn_carries_its_parameters(sessions, photo):
    key = started(sessions, photo)
    _, node = sessions.edit(key, "add a hat", EditOptions(seed_mode="fixed", seed=42, steps=2))
    meta = read_metadata(sessions.image_path(key))
    assert meta["step"]["seed"] == 42 and meta["step"]["id"] == node.id
    assert "add a hat" in meta["parameters"] and "Seed: 42" in meta["parameters"]
    assert meta["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")


def test_seed_modes(sessions, photo):
    key = started(sessions, photo)
    _, a = sessions.edit(key, "x", EditOptions(seed_mode="fixed", seed=5, steps=1))
    _, b = sessions.edit(key, "y", EditOptions(seed_mode="locked", steps=1))
    _, c = sessions.edit(key, "z", EditOptions(seed_mode="random", steps=1))
    _, d = sessions.edit(key, "w", EditOptions(seed_mode="random", steps=1))
    assert a.seed == 5 and b.seed == 5
    assert c.seed != d.seed
    with pytest.raises(ValueError, match="seed_mode"):
        sessions.edit(key, "x", EditOptions(seed_mode="lucky"))
    with pytest.raises(ValueError, match="seed is empty"):
        sessions.edit(key, "x", EditOptions(seed_mode="fixed", seed=None))


def test_reroll_is_a_sibling_with_a_new_seed(sessions, photo):
    key = started(sessions, photo)
    _, first = sessions.edit(key, "add a hat", FAST)
    h, again = sessions.reroll(key)
    assert again.parent == first.parent and again.prompt == first.prompt
    assert again.seed != first.seed
    assert [n.id for n in h.siblings()] == [first.id, again.id]
    assert not np.array_equal(np.asarray(sessions.image(key, first.id)), np.asarray(sessions.image(key, again.id)))


def test_text_to_image_starts_a_tree(sessions):
    key = sessions.new()
    h, node = sessions.edit(key, "a lighthouse at dusk", FAST)
    assert node.kind == "text" and node.parent is None
    meta = read_metadata(sessions.image_path(key))
    assert meta["digital_source_type"].endswith("/trainedAlgorithmicMedia")


def test_cancel_and_errors_leave_history_unchanged(sessions, photo):
    key = started(sessions, photo)
    sessions.edit(key, "one", FAST)
    before = sessions.history(key).to_dict()
    files = sorted(p.name for p in sessions.store.folder(key).rglob("*.png"))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        sessions.edit(key, "two", FAST, cancel=cancel)
    with pytest.raises(ValueError, match="steps"):
        sessions.edit(key, "two", EditOptions(steps=0))
    with pytest.raises(ValueError, match="prompt"):
        sessions.edit(key, "   ", FAST)
    assert sessions.history(key).to_dict() == before
    assert sorted(p.name for p in sessions.store.folder(key).rglob("*.png")) == files
    _, node = sessions.edit(key, "three", FAST)  # the next edit works
    assert node.prompt == "three"


def run_paused(sessions, key, prompt, action, **kw):
    """Start an edit, run `action` while it is between steps, then let the edit finish."""
    gate, go = threading.Event(), threading.Event()

    def on_step(ev):
        gate.set()
        go.wait(10)

    result = {}

    def work():
        try:
            result["r"] = sessions.edit(key, prompt, FAST, on_step=on_step, **kw)
        except Exception as e:  # noqa: BLE001 - checked by the caller
            result["e"] = e

    t = threading.Thread(target=work)
    t.start()
    assert gate.wait(10)
    out = action()
    go.set()
    t.join(20)
    return out, result


def test_navigation_and_uploads_during_an_edit_are_kept(sessions, photo):
    key = started(sessions, photo)
    sessions.edit(key, "one", FAST)
    sessions.edit(key, "two", FAST)  # path 1-2-3

    def meanwhile():
        undone = sessions.undo(key)  # instant while the edit runs
        assert undone.current == 2
        return sessions.upload(key, photo, name="second.png")  # a new tree: step 4

    h_mid, result = run_paused(sessions, key, "three", meanwhile)
    h, node = result["r"]
    assert h_mid.current == 4 and h.node(4).kind == "upload"  # the upload survived the edit's commit
    assert node.id == 5 and node.parent == 3  # the edit landed where it started
    assert h.current == 5 and len(h) == 5 and h.last_child[2] == 3


def test_an_edit_whose_start_was_cleared_adds_nothing(sessions, photo):
    key = started(sessions, photo)

    def start_over():
        sessions.clear(key)
        sessions.upload(key, Image.new("RGB", (64, 64), "white"), name="new.png")  # also step 1

    _, result = run_paused(sessions, key, "edit of the old picture", start_over)
    assert isinstance(result.get("e"), ValueError) and "cleared" in str(result["e"])
    h = sessions.history(key)
    assert len(h) == 1 and h.current_node.extra["source"] == "new.png"
    assert len(list(sessions.store.folder(key).rglob("*.png"))) == 1  # no orphan left behind


def test_stop_after_the_last_step_commits_nothing(sessions, photo):
    key = started(sessions, photo)
    before = sessions.history(key).to_dict()
    cancel = threading.Event()

    def on_step(ev):
        if ev.step == ev.total:
            cancel.set()  # the engine has finished denoising; the turn is not committed yet

    with pytest.raises(Cancelled):
        sessions.edit(key, "late stop", FAST, on_step=on_step, cancel=cancel)
    assert sessions.history(key).to_dict() == before


def test_a_second_edit_of_a_running_session_is_refused_not_queued(sessions, photo):
    from kontext.errors import Busy

    key = started(sessions, photo)
    other = started(sessions, photo)

    def meanwhile():
        with pytest.raises(Busy, match="already running or waiting"):
            sessions.edit(key, "second", FAST)
        with pytest.raises(Busy):  # refused before it is planned: planning would find the seed empty
            sessions.edit(key, "second", EditOptions(steps=2, seed_mode="fixed", seed=None))
        waits, out = [], {}

        def queued():  # another session waits for the one GPU slot, and says how many are ahead
            out["r"] = sessions.edit(other, "other session", FAST, on_step=lambda p: waits.append(p.waiting))

        t = threading.Thread(target=queued)
        t.start()
        deadline = time.time() + 10
        while not waits and time.time() < deadline:
            time.sleep(0.05)
        return t, waits, out

    (t, waits, out), result = run_paused(sessions, key, "first", meanwhile)
    t.join(30)
    assert result["r"][1].prompt == "first" and [n.prompt for n in sessions.history(key).children(1)] == ["first"]
    assert waits and waits[0] == 1  # one turn (the paused one) was ahead of it
    assert out["r"][1].prompt == "other session"  # and it ran once the slot was free
    sessions.edit(key, "third", FAST)  # the ticket was given back


def test_a_full_queue_is_refused_and_a_waiting_turn_can_be_stopped(engine, store, photo):
    from kontext.errors import Busy
    from kontext.sessions.admission import TurnQueue

    q = TurnQueue(slots=1, max_waiting=1)
    s = Sessions(engine, store, queue=q)
    keys = [started(s, photo) for _ in range(3)]
    cancel = threading.Event()
    errors = {}

    def wait_then_stop():
        try:
            s.edit(keys[1], "waits", FAST, cancel=cancel)
        except Exception as e:  # noqa: BLE001 - checked below
            errors["waiting"] = e

    def busy():
        t = threading.Thread(target=wait_then_stop)
        t.start()
        while q.waiting == 0:
            time.sleep(0.02)
        with pytest.raises(Busy, match="busy"):
            s.edit(keys[2], "no room", FAST)
        cancel.set()
        t.join(10)

    run_paused(s, keys[0], "runs", busy)
    assert isinstance(errors["waiting"], Cancelled) and q.waiting == 0
    assert len(s.history(keys[1])) == 1  # the stopped turn added nothing


def test_stop_without_a_turn_or_a_flag_says_so_and_a_stopped_turn_never_takes_a_free_slot():
    from kontext.sessions.admission import TurnQueue

    q = TurnQueue(slots=1, max_waiting=1)
    assert q.stop("nobody") is False
    with q.turn("flagless"):
        assert q.has_turn("flagless") and q.stop("flagless") is False  # nothing to set
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(Cancelled), q.turn("stopped", cancel=stopped):
        pytest.fail("a turn stopped before its slot came free ran all the same")
    assert not q.has_turn("stopped") and q.wait_idle(0)  # it left the queue and holds nothing
    with q.turn("next"):  # the slot is free for the next turn
        assert q.has_turn("next")


def test_switch_branch_and_drift_warning(sessions, photo):
    key = started(sessions, photo)
    sessions.edit(key, "a", FAST)
    sessions.undo(key)
    h, b = sessions.edit(key, "b", FAST)
    assert sessions.switch_branch(key, -1).current_node.prompt == "a"
    assert sessions.switch_branch(key, +1).current == b.id
    assert sessions.drift_warning(key) == ""
    for i in range(6):
        sessions.edit(key, f"d{i}", EditOptions(steps=1))
    assert "Redo path as one edit" in sessions.drift_warning(key)  # by turns, or by the measured drift


def test_sessions_are_isolated(sessions, photo):
    k1, k2 = started(sessions, photo), sessions.new()
    sessions.edit(k1, "mine", FAST)
    assert sessions.history(k2).empty
    with pytest.raises(ValueError, match="session key"):
        sessions.history("../../etc")


def test_history_bound(engine, store, photo):
    s = Sessions(engine, store, max_nodes=2)
    key = s.new()
    s.upload(key, photo)
    s.edit(key, "one", FAST)
    with pytest.raises(ValueError, match="history is full"):
        s.edit(key, "two", FAST)
    with pytest.raises(ValueError, match="history is full"):
        s.upload(key, photo)
    assert len(s.history(key)) == 2


def test_combine_redoes_the_path_as_one_edit_from_the_original(sessions, photo):
    key = started(sessions, photo)
    with pytest.raises(ValueError, match="at least two edits"):
        sessions.combine(key)
    sessions.edit(key, "make it blue.", FAST)
    sessions.edit(key, "add a hat", FAST)
    h, node = sessions.combine(key, FAST)
    assert node.parent == 1 and node.prompt == "make it blue; add a hat"
    assert [n.id for n in h.children(1)] == [2, node.id]  # a new branch; the chain is still there
    first = h.node(2)
    assert (node.width, node.height) == (first.width, first.height)  # sized from the original, like step 2


def test_draft_then_refine(sessions, monkeypatch):
    from dataclasses import replace as dc_replace

    # As the real model: context snapped to trained resolutions, unless the edit is a draft.
    monkeypatch.setattr(sessions.engine, "profile", dc_replace(sessions.engine.profile, auto_resize=True))
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((192, 128), 40).convert("RGB"), name="big.png")
    seen = []
    real = sessions.engine.pipe.__class__.__call__

    def spy(pipe, *a, **kw):
        seen.append((kw["image"].size, kw["_auto_resize"]))
        return real(pipe, *a, **kw)

    monkeypatch.setattr(sessions.engine.pipe.__class__, "__call__", spy)
    _, full = sessions.edit(key, "full", FAST)
    sessions.undo(key)
    _, draft = sessions.edit(key, "quick look", EditOptions(steps=2, draft=True, seed_mode="fixed", seed=9))
    assert draft.extra["draft"] is True
    assert draft.width * draft.height <= full.width * full.height // 3  # about a quarter of the area
    assert abs(draft.width / draft.height - 1.5) < 0.2
    assert seen[0][1] is True  # the full edit let the pipeline snap the context
    assert seen[-1] == ((draft.width, draft.height), False)  # the draft's context was scaled down too
    with pytest.raises(ValueError, match="Match input"):
        sessions.edit(key, "x", EditOptions(draft=True, width=64, height=64))
    _, rolled = sessions.reroll(key)
    assert rolled.extra.get("draft") and rolled.seed != draft.seed
    sessions.jump(key, draft.id)
    h, refined = sessions.refine(key)
    assert refined.parent == draft.parent and refined.seed == 9 and refined.prompt == "quick look"
    assert (refined.width, refined.height) == (full.width, full.height) and not refined.extra.get("draft")
    with pytest.raises(ValueError, match="not a draft"):
        sessions.refine(key)


def test_stop_ends_the_sessions_turn_however_it_was_started(sessions, photo):
    """One record of running turns: a turn started without a cancel flag of its own (as the CLI, the
    API or MCP start it) is stopped by `stop(key)` from anywhere, and commits nothing."""
    from gates import held_call

    key = started(sessions, photo)
    assert sessions.stop(key) is False  # nothing runs
    with held_call(sessions.engine, lambda: sessions.edit(key, "held", FAST)) as out:
        assert sessions.queue.has_turn(key)
        assert sessions.stop(key) is True
    assert isinstance(out["error"], Cancelled)
    assert len(sessions.history(key)) == 1 and not sessions.queue.has_turn(key)
    assert sessions.stop(key) is False


def test_a_bad_request_is_refused_before_it_waits_for_the_gpu(sessions, photo):
    """Planned once, before the queue: while another session holds the only GPU slot, a turn with an
    unknown LoRA is refused at once instead of waiting for its turn."""
    from gates import hold_edits
    from kontext.errors import UserError

    busy, key = started(sessions, photo), started(sessions, photo)
    with hold_edits(sessions.engine) as gate:
        t = threading.Thread(target=lambda: sessions.edit(busy, "holds the slot", FAST))
        t.start()
        gate.wait_reached()
        with pytest.raises(UserError, match="LoRA 'nope' is not offered here"):
            sessions.edit(key, "x", EditOptions(steps=2, loras=(("nope", 1.0),)))
        assert sessions.queue.waiting == 0  # it never took a place in the queue
        gate.release()
        t.join(120)
    assert len(sessions.history(key)) == 1
