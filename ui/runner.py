"""Run one edit in a worker thread and stream its progress, for generator handlers.

Gradio's `cancels=` closes a generator between yields but cannot stop a plain function mid-call.
So the pipeline runs in a thread, the handler yields progress, and closing the handler (Stop,
a closed tab, a client's cancel) sets the cancel flag: the engine stops at its next step and
nothing is committed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kontext.engine import StepEvent


@dataclass
class Progress:
    step: int
    total: int
    preview: Any = None  # a small PIL image, or None


@dataclass
class Done:
    value: Any


def stream(run: Callable[..., Any], preview: Callable[[StepEvent], Any] | None = None,
           poll_s: float = 0.25) -> Iterator[Progress | Done]:
    """Call `run(on_step=..., cancel=...)` in a thread; yield Progress while it works, then Done.

    Errors raised by `run` are re-raised here. If the consumer stops iterating, the run is cancelled.
    """
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def on_step(ev: StepEvent) -> None:
        img = None
        if preview is not None:
            try:
                img = preview(ev)
            except Exception:  # noqa: BLE001 - a preview must never break an edit
                img = None
        events.put(Progress(ev.step, ev.total, img))

    def work() -> None:
        try:
            events.put(Done(run(on_step=on_step, cancel=cancel)))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            events.put(e)

    thread = threading.Thread(target=work, name="kontext-edit", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=poll_s)
            except queue.Empty:
                continue
            batch = [item]
            while not events.empty():
                batch.append(events.get_nowait())
            for x in batch:
                if isinstance(x, BaseException):
                    raise x
            done = next((x for x in batch if isinstance(x, Done)), None)
            if done is not None:
                yield done
                return
            # Only the newest progress matters, so the UI never lags behind the run.
            last = batch[-1]
            if last.preview is None:
                last = Progress(last.step, last.total,
                                next((x.preview for x in reversed(batch) if x.preview is not None), None))
            yield last
    finally:
        cancel.set()  # no-op when the run is already done
