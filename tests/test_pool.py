"""The Ray Serve worker pool (kontext/hosting/pool.py, `--workers ray`) on a local Ray instance, CPU replicas.

Marked `ray`: each test module here starts a Ray instance (about 20 s), so `pytest -m "not ray"`
leaves them out; CI runs them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def pool(tiny_dir):
    from kontext.hosting.pool import start_pool, stop_pool

    said: list[str] = []
    t0 = time.perf_counter()
    pool, engine = start_pool("tiny", "eager", "cpu", 2, say=said.append)
    pool.start_s = time.perf_counter() - t0
    pool.said = said
    yield pool, engine
    stop_pool()


@pytest.fixture
def pool_sessions(pool, store):
    from kontext.sessions.session import Sessions

    runner, engine = pool
    return Sessions(engine, store, gpu=runner)


def photo() -> Image.Image:
    return Image.effect_noise((96, 64), 40).convert("RGB")


def test_the_front_plans_with_the_workers_rules_and_holds_no_model(pool):
    from kontext.hosting.pool import PoolEngine

    runner, engine = pool
    assert isinstance(engine, PoolEngine) and engine.model_id == "tiny" and engine.speed.label == "eager"
    assert runner.replicas == 2 and any("2 worker(s) ready" in m for m in runner.said)
    # It started Ray, so at exit it takes the whole instance down (app.py: stop_pool(name, owns_ray)).
    assert runner.owns_ray and runner.name == "kontext"
    with pytest.raises(RuntimeError, match="workers"):
        engine.edit(photo(), "x")


def test_turns_run_on_both_workers_and_stream_progress(pool_sessions):
    from kontext.sessions.session import EditOptions

    s = pool_sessions
    keys = [s.new() for _ in range(4)]
    for k in keys:
        s.upload(k, photo())
    seen: dict[str, list[int]] = {k: [] for k in keys}

    def turn(k: str):
        return s.edit(k, "make it blue", EditOptions(steps=3), preview_every=1,
                      on_step=lambda p: seen[k].append(p.step))[1]

    with ThreadPoolExecutor(4) as ex:
        nodes = list(ex.map(turn, keys))
    assert len({n.extra["worker"] for n in nodes}) == 2  # two turns at once went to two workers
    assert all([x for x in seen[k] if x] == [1, 2, 3] for k in keys)
    assert all(s.history(k).current == 2 for k in keys)


def test_stop_during_a_remote_turn_changes_nothing_and_the_next_turn_works(pool_sessions):
    from kontext.errors import Cancelled
    from kontext.sessions.session import EditOptions

    s = pool_sessions
    key = s.new()
    s.upload(key, photo())
    cancel = threading.Event()

    def on_step(p):
        if p.step == 2:
            cancel.set()  # what Stop does

    runner = s.gpu
    with pytest.raises(Cancelled):
        s.edit(key, "slow", EditOptions(steps=100), on_step=on_step, cancel=cancel)
    pid = runner.last_worker
    # The worker itself stopped: its turn ended cancelled, long before its 100 steps.
    from kontext.hosting.pool import worker_states

    deadline = time.time() + 30
    while (state := worker_states(runner).get(pid, {}).get("last", {})).get("outcome") == "running" \
            and time.time() < deadline:
        time.sleep(0.2)
    assert state["outcome"] == "cancelled" and state["steps"] < 100, state
    assert len(s.history(key).nodes) == 1
    _, node = s.edit(key, "make it blue", EditOptions(steps=2))
    assert node.id == 2


def test_a_worker_killed_mid_turn_fails_that_turn_only_and_is_replaced(pool, pool_sessions):
    from kontext.errors import WorkerLost
    from kontext.sessions.session import EditOptions

    runner, _ = pool
    s = pool_sessions
    key = s.new()
    s.upload(key, photo())
    killed: list[int] = []

    def on_step(p):
        if p.step == 3 and not killed:
            killed.append(runner.last_worker)
            os.kill(runner.last_worker, signal.SIGKILL)

    from kontext.hosting.pool import worker_states

    before = {pid: info["turns"] for pid, info in worker_states(runner).items()}
    with pytest.raises(WorkerLost, match="nothing was changed"):
        s.edit(key, "slow", EditOptions(steps=100), on_step=on_step)
    assert killed and len(s.history(key).nodes) == 1  # the history is as it was
    survivor = next(pid for pid in before if pid != killed[0])
    after = worker_states(runner)
    # Not re-run behind the visitor's back: the other worker has taken no turn since.
    assert survivor in after and after[survivor]["turns"] == before[survivor]
    _, node = s.edit(key, "make it blue", EditOptions(steps=2))  # the other worker takes it at once
    assert node.id == 2 and node.extra["worker"] != killed[0]
    # Ray Serve replaces the dead worker; its successor takes turns once it has loaded and warmed up.
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and len(workers - {killed[0]}) < 2:
        with ThreadPoolExecutor(2) as ex:
            keys = [s.new() for _ in range(2)]
            for k in keys:
                s.upload(k, photo())
            workers |= {n.extra["worker"] for _, n in ex.map(lambda k: s.edit(k, "x", EditOptions(steps=2)), keys)}
    assert len(workers - {killed[0]}) == 2 and killed[0] not in workers
    # The killed turn was not run again elsewhere: its session still has only the upload and one turn.
    assert sorted(s.history(key).nodes) == [1, 2]


def test_bad_input_is_refused_in_front_and_never_reaches_a_worker(pool_sessions):
    from kontext.errors import UserError
    from kontext.sessions.session import EditOptions

    s = pool_sessions
    key = s.new()
    s.upload(key, photo())
    with pytest.raises(UserError, match="steps"):
        s.edit(key, "x", EditOptions(steps=10_000))
    with pytest.raises(UserError, match="prompt|instruction"):
        s.edit(key, "   ", EditOptions(steps=2))


def test_the_page_says_the_model_runs_in_the_workers(pool):
    from ui.layout import engine_status_text

    _, engine = pool
    assert "on 2 Ray Serve workers (cpu)" in engine_status_text(engine, None)


def test_stop_works_while_a_turn_waits_for_a_free_worker(pool):
    """Both workers busy: a third turn waits inside Ray Serve; Stop ends it there, and it never runs."""
    from kontext.errors import Cancelled
    from kontext.hosting.pool import worker_states
    from kontext.model.turns import plan_step

    runner, engine = pool
    before = sum(i["turns"] for i in worker_states(runner).values())
    big = plan_step(engine, photo(), "slow", seed=1, guidance=None, steps=100, width=512, height=512)
    started = [threading.Event(), threading.Event()]
    release = threading.Event()  # the busy turns run until the waiting one was stopped (then Stop them)

    def busy_turn(i):
        with contextlib.suppress(Cancelled):
            runner.run(big, report=lambda p: started[i].set(), cancel=release)

    busy = [threading.Thread(target=busy_turn, args=(i,)) for i in range(2)]
    for t in busy:
        t.start()
    assert all(e.wait(120) for e in started)  # both workers are running a turn
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()  # Stop while it waits (no worker frees up before it)
    with pytest.raises(Cancelled):
        runner.run(big, cancel=cancel)
    release.set()
    for t in busy:
        t.join()
    assert sum(i["turns"] for i in worker_states(runner).values()) == before + 2  # the stopped one never ran


def test_a_second_front_cannot_take_over_a_running_pool(pool):
    from kontext.errors import UserError
    from kontext.hosting.pool import start_pool

    runner, engine = pool
    with pytest.raises(UserError, match="already running on this Ray cluster"):
        start_pool("tiny", "eager", "cpu", 1, say=lambda m: None)
    assert runner.run(plan_step_small(engine)).image is not None  # the first front's pool still works


def plan_step_small(engine):
    from kontext.model.turns import plan_step

    return plan_step(engine, photo(), "x", seed=1, guidance=None, steps=2, width=None, height=None)
