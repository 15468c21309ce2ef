"""Work that may follow a turn's acknowledgement: compressing the picture it stored uncompressed.

A turn is acknowledged once its PNG is durably on disk; storing 1 MP uncompressed costs under 0.01 s
where compressing it costs 0.03-0.11 s (kontext/core/metadata.py). The compressed file then replaces
the stored one atomically: a reader sees one whole PNG or the other, with the same pixels and text,
and a crash between the two leaves the stored file, which is complete.

One daemon thread per compactor; a job that finds the queue full runs in the caller (the queue's
bound keeps at most that many pictures in memory). Each job carries a name (the image's), so that
a reader of particular files waits for those alone (`wait_for`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

MAX_PENDING = 16


class Compactor:
    def __init__(self, max_pending: int = MAX_PENDING):
        self._jobs: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._pending: Counter[str] = Counter()  # name -> jobs submitted and not yet run
        self._done = threading.Condition()

    def submit(self, job: Callable[[], None], name: str = "") -> None:
        """Run `job` soon in the background (in the caller when the queue is full)."""
        with self._done:
            self._pending[name] += 1
        try:
            self._jobs.put_nowait((name, job))
        except queue.Full:
            log.info("compaction queue full (%d pictures): compressing in the turn's thread", self._jobs.maxsize)
            self._run(name, job)
            return
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="kontext-compactor", daemon=True)
                self._thread.start()

    def wait_for(self, names: Iterable[str]) -> None:
        """Until no job for any of `names` is waiting or running (an export reads those files)."""
        wanted = set(names)
        with self._done:
            self._done.wait_for(lambda: not any(self._pending[n] for n in wanted))

    def wait_idle(self) -> None:
        """Until every submitted job has run (tests and shutdown)."""
        with self._done:
            self._done.wait_for(lambda: not +self._pending)

    def _work(self) -> None:
        while True:
            name, job = self._jobs.get()
            self._run(name, job)

    def _run(self, name: str, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # noqa: BLE001 - the stored picture stays as it is: complete, only larger
            log.exception("could not compress a stored picture; it stays uncompressed")
        finally:
            with self._done:
                self._pending[name] -= 1
                if self._pending[name] <= 0:
                    del self._pending[name]
                self._done.notify_all()
