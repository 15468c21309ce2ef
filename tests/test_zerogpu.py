"""The ZeroGPU route on CPU: the GPU function runs in a forked child with pickled arguments and
results (tests/forked_gpu.py), as ZeroGPU runs it; the commit stays in this process."""

import os
import pickle
import threading

import pytest
from PIL import Image

from forked_gpu import ForkedGpu
from kontext.errors import Cancelled
from kontext.hosting import zerogpu as gpu
from kontext.model.turns import Done, Progress, TurnRequest
from kontext.sessions.admission import TurnQueue
from kontext.sessions.session import EditOptions, Sessions

FAST = EditOptions(steps=4)


@pytest.fixture
def forked(engine):
    gpu.install(engine)
    yield ForkedGpu(gpu.gpu_turn)
    gpu.install(None)


def remote_sessions(engine, store, forked, slots=1):
    return Sessions(engine, store, gpu=gpu.RemoteGpu(forked), queue=TurnQueue(slots=slots))


def started(s, photo):
    key = s.new()
    s.upload(key, photo, name="photo.png")
    return key


def test_a_full_turn_runs_in_the_child_and_commits_here(engine, store, forked, photo):
    s = remote_sessions(engine, store, forked)
    key = started(s, photo)
    seen = []
    h, node = s.edit(key, "make it blue", FAST, on_step=seen.append, preview_every=1)
    assert forked.calls == 1 and forked.child_pids and os.getpid() not in forked.child_pids
    steps = [p.step for p in seen if isinstance(p, Progress)]
    # Progress is coalesced when the consumer lags (only the newest step matters): in order, ending
    # at the last step. That every step arrives when the consumer keeps up: tests/test_turns_stream.py.
    assert steps == sorted(set(steps)) and steps[-1] == 4
    assert any(isinstance(p.preview, Image.Image) for p in seen)  # previews crossed the process boundary
    # The commit happened here: the cache, the disk and a fresh reader agree.
    assert h.current == node.id == 2 and s.image(key).size == (node.width, node.height)
    assert Sessions(engine, store).history(key).to_dict() == h.to_dict()
    # The same seed on the local route gives the same picture: one code path, two places to run it.
    local = Sessions(engine, store)
    _, again = local.edit(key, "make it blue", EditOptions(seed_mode="fixed", seed=node.seed, steps=4), parent=1)
    assert list(local.image(key, again.id).getdata()) == list(s.image(key, node.id).getdata())


def test_stop_between_yields_leaves_the_history_unchanged(engine, store, forked, photo):
    s = remote_sessions(engine, store, forked)
    key = started(s, photo)
    before = s.history(key).to_dict()
    cancel = threading.Event()

    def on_step(p):  # Stop at the first progress heard (which step that is depends on the machine)
        cancel.set()

    with pytest.raises(Cancelled):
        s.edit(key, "never lands", EditOptions(steps=8), on_step=on_step, cancel=cancel)
    assert s.history(key).to_dict() == before
    assert len(list(store.folder(key).rglob("*.png"))) == 1
    assert s.queue.waiting == 0
    s.edit(key, "the next one works", FAST)


def test_two_sessions_run_in_parallel_children(engine, store, forked, photo):
    s = remote_sessions(engine, store, forked, slots=2)
    keys = [started(s, photo) for _ in range(2)]
    out, errors = {}, []

    def run(k):
        try:
            out[k] = s.edit(k, f"edit of {k[:6]}", FAST)[1]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and set(out) == set(keys)
    assert len(set(forked.child_pids)) == 2  # one child per call
    for k in keys:
        assert s.history(k).current_node.prompt == f"edit of {k[:6]}"


def test_errors_in_the_worker_come_back_with_their_words(engine, store, forked, photo, monkeypatch):
    s = remote_sessions(engine, store, forked)
    key = started(s, photo)

    def oom(*a, **kw):
        raise RuntimeError("out of GPU memory at 1024x1024: choose a smaller output size")

    monkeypatch.setattr(engine, "edit", oom)  # the child is forked after this, so it sees it
    with pytest.raises(RuntimeError, match="out of GPU memory at 1024x1024"):
        s.edit(key, "x", FAST)
    assert len(s.history(key)) == 1


def test_bad_input_is_refused_before_any_gpu_call(engine, store, forked, photo):
    s = remote_sessions(engine, store, forked)
    key = started(s, photo)
    with pytest.raises(ValueError, match="steps"):
        s.edit(key, "x", EditOptions(steps=1000))
    with pytest.raises(ValueError, match="prompt is empty"):
        s.edit(key, "  ", FAST)
    assert forked.calls == 0


def test_requests_and_results_pickle(engine, photo):
    req = TurnRequest(context=photo, prompt="x", seed=1, guidance=2.5, steps=2, width=64, height=48,
                      preview_every=1)
    assert pickle.loads(pickle.dumps(req)).context.tobytes() == photo.tobytes()
    gpu.install(engine)
    try:
        items = list(gpu.gpu_turn(req))
    finally:
        gpu.install(None)
    done = items[-1]
    assert isinstance(done, Done)
    back = pickle.loads(pickle.dumps(done))
    assert back.value.image.tobytes() == done.value.image.tobytes() and back.value.seed == 1


def test_durations_follow_steps_and_tokens_and_are_capped():
    def req(w, h, steps, context=True):
        ctx = Image.new("RGB", (w, h)) if context else None
        return TurnRequest(context=ctx, prompt="x", seed=1, guidance=2.5, steps=steps, width=w, height=h)

    edit = gpu.turn_seconds(req(1024, 1024, 28))
    assert 20 <= edit <= 60  # ~0.8 s a step on an H200 slice, plus start-up, with a margin
    assert gpu.turn_seconds(req(1024, 1024, 14)) < edit
    assert gpu.turn_seconds(req(1024, 1024, 28, context=False)) < edit  # text-to-image: half the tokens
    assert gpu.turn_seconds(req(512, 512, 28)) < gpu.turn_seconds(req(1024, 1024, 28))
    assert gpu.turn_seconds(req(1440, 1440, 100)) == gpu.MAX_TURN_S
    with pytest.raises(ValueError, match="at most 120 s"):
        gpu.check_fits(req(1440, 1440, 100))
    gpu.check_fits(req(1024, 1024, 28))
