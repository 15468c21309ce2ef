"""A barrier in the engine's step callback, so a test acts *during* an edit without racing it.

    with hold_edits(engine) as gate:     # every edit on this engine stops after its first step
        job = client.submit(...)         # (from any thread: the page, the API, a session call)
        gate.wait_reached()              # an edit is now held at step 1
        ...                              # act while it runs: undo, Stop, a second tab, ...
        gate.release()                   # let it (and every later edit) run to the end

`gate.let_one()` lets one held edit go on instead (a chain, turn by turn). A held edit also ends
when its own cancel flag is set (Stop), as a real step would, and meanwhile reports its step again
every 0.1 s, as a running edit keeps reporting progress (a handler that hears nothing cannot be
closed between yields). The test waits on events with generous timeouts, whatever the machine's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WAIT_S = 120.0  # generous: a busy 2-core machine is slow, never this slow


class Gate:
    def __init__(self, step: int):
        self.step = step
        self.count = 0  # edits that reached the held step
        self._cond = threading.Condition()
        self._released = False
        self._passes = 0

    def wait_reached(self, n: int = 1, timeout: float = WAIT_S) -> None:
        """Wait until `n` edits have reached the held step (counting those already let through)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= n, timeout), f"{self.count} of {n} edits arrived"

    def release(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def let_one(self) -> None:
        with self._cond:
            self._passes += 1
            self._cond.notify_all()

    def hold(self, cancel: threading.Event | None, report: Any) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()
            while not self._released:
                if self._passes:
                    self._passes -= 1
                    return
                if cancel is not None and cancel.is_set():
                    return  # the engine raises Cancelled at its next check
                self._cond.wait(0.1)
                self._cond.release()  # report outside the lock: the consumer may call back in
                try:
                    report()  # still running: the consumer hears from it, as from a real step
                finally:
                    self._cond.acquire()


@contextmanager
def hold_edits(engine: Any, step: int = 1) -> Iterator[Gate]:
    """Every edit on `engine` waits after step `step` until `gate.release()` / `gate.let_one()` (or
    its own Stop)."""
    gate = Gate(step)
    real = engine.edit

    def edit(*args: Any, on_step: Any = None, cancel: threading.Event | None = None, **kw: Any) -> Any:
        def step_hook(ev: Any) -> None:
            report = (lambda: on_step(ev)) if on_step is not None else (lambda: None)
            report()
            if ev.step == gate.step:
                gate.hold(cancel, report)
        return real(*args, on_step=step_hook, cancel=cancel, **kw)

    engine.edit = edit  # an instance attribute: the class's method is untouched
    try:
        yield gate
    finally:
        gate.release()
        del engine.edit


class HeldCalls:
    """Calls of a method taking (key, file, ...): each is recorded as it arrives (its file's name),
    waits until `go` is set, runs, and is recorded again as done, with what it returned."""

    def __init__(self, real: Any):
        self.real, self.go, self.cond = real, threading.Event(), threading.Condition()
        self.key = ""
        self.arrived: list[str] = []
        self.done: list[tuple[str, Any]] = []

    def __call__(self, key: str, source: Any, **kw: Any) -> Any:
        from pathlib import Path

        self.key = key
        with self.cond:
            self.arrived.append(Path(source).name)
            self.cond.notify_all()
        assert self.go.wait(WAIT_S), "the held calls were never let go"
        out = self.real(key, source, **kw)
        with self.cond:
            self.done.append((Path(source).name, out))
            self.cond.notify_all()
        return out

    def wait(self, n: int, done: bool = False) -> None:
        """Wait until `n` calls have arrived (or, with `done`, ended)."""
        seen = self.done if done else self.arrived
        with self.cond:
            assert self.cond.wait_for(lambda: len(seen) >= n, WAIT_S), f"{len(seen)} of {n} calls"


@contextmanager
def hold_calls(obj: Any, name: str) -> Iterator[HeldCalls]:
    """Every call of `obj.name` (e.g. a Sessions' upload) waits until `calls.go.set()`, so a test can
    act while one is in flight (a page dropping a second picture)."""
    calls = HeldCalls(getattr(obj, name))
    setattr(obj, name, calls)  # an instance attribute: the class's method is untouched
    try:
        yield calls
    finally:
        calls.go.set()
        delattr(obj, name)


@contextmanager
def held_call(engine: Any, call: Any) -> Iterator[dict[str, Any]]:
    """`call()` in a thread of its own while every edit on `engine` is held: the block runs once an
    edit is held (to stop it, say); after it the thread is joined and the dict holds what the call
    returned ("result") or raised ("error")."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as e:  # noqa: BLE001 - the caller checks it
            out["error"] = e

    with hold_edits(engine) as gate:
        thread = threading.Thread(target=run)
        thread.start()
        gate.wait_reached()
        yield out
        thread.join(WAIT_S)
    assert not thread.is_alive(), "the held call did not end"


def wait_until(condition: Any, timeout: float = WAIT_S, what: str = "the condition") -> None:
    """Wait until `condition()` holds (checked every 10 ms), for state that has no event to wait on,
    such as a gradio_client job learning its event id from the server."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not come within {timeout:.0f} s"
        time.sleep(0.01)
