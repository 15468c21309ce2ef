"""Admission to the GPU: a fair queue with one running-or-waiting turn per session.

Gradio's own queue would line a second edit of the same session up behind the first, and says
only "Queue is full" when it overflows. Here a turn takes a ticket before anything else: a second
ticket for the same session is refused at once, a full queue is refused with a plain "busy"
message, and a waiting turn can report how many are ahead of it (and be stopped while it waits).

It is also the one record of the turns in flight: each session's running or waiting turn is kept
with its cancel flag, so Stop from any tab, the API or MCP (`stop`) ends it, however it was started.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kontext.errors import Busy, Cancelled, UserError

SESSION_BUSY = "an edit of this session is already running or waiting: wait for it to finish, or press Stop"


def session_name(session: object) -> str:
    """`session` as the queue's record names it: text, or a UserError before anything queues (a key
    sent as a JSON object or list would otherwise fail deep inside as a bug)."""
    if not isinstance(session, str) or not session:
        got = "empty text" if isinstance(session, str) else type(session).__name__
        raise UserError(f"session must be the session key from new_session (text), got {got}")
    return session


class TurnQueue:
    def __init__(self, slots: int = 1, max_waiting: int = 16):
        if slots < 1:
            raise UserError(f"slots must be at least 1, got {slots}")
        if max_waiting < 0:
            raise UserError(f"max_waiting must be 0 or more, got {max_waiting}")
        self.slots = slots
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._running = 0
        self._cancels: dict[str, threading.Event | None] = {}  # session -> its turn's cancel flag

    def has_turn(self, session: str) -> bool:
        """Whether `session` has a turn running or waiting now."""
        session = session_name(session)
        with self._cond:
            return session in self._cancels

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no turn runs or waits (True), or `timeout` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running and not self._waiting, timeout)

    def stop(self, session: str) -> bool:
        """Set the cancel flag of `session`'s running or waiting turn; False if it has none (or the
        turn was started without a flag)."""
        session = session_name(session)
        with self._cond:
            cancel = self._cancels.get(session)
            if cancel is None:
                return False
            cancel.set()
            self._cond.notify_all()  # a waiting turn leaves the queue now
            return True

    @contextmanager
    def turn(self, session: str, cancelled: Callable[[], bool] = lambda: False,
             on_wait: Callable[[int], None] | None = None, poll_s: float = 0.25, *,
             cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold a GPU slot for `session` for the body of the `with`; `cancel` is the turn's flag,
        which `stop(session)` sets.

        Raises Busy when the session already has a turn running or waiting, or when the queue is
        full; raises Cancelled when `cancelled()` turns true or `cancel` is set while waiting.
        """
        session = session_name(session)
        me = object()
        with self._cond:
            if session in self._cancels:
                raise Busy(SESSION_BUSY)
            if self._running >= self.slots and len(self._waiting) >= self.max_waiting:
                raise Busy(f"the server is busy ({self._running} running, {len(self._waiting)} waiting): "
                           "try again in a minute")
            self._cancels[session] = cancel
            self._waiting.append(me)
        running = False
        try:
            with self._cond:
                while True:
                    # A turn stopped while it waited never takes the slot, even one that just came free.
                    if cancelled() or (cancel is not None and cancel.is_set()):
                        raise Cancelled()
                    ahead = self._waiting.index(me)
                    if ahead == 0 and self._running < self.slots:
                        self._waiting.popleft()
                        self._running += 1
                        running = True
                        self._cond.notify_all()
                        break
                    if on_wait is not None:
                        on_wait(ahead + max(0, self._running - self.slots + 1))
                    self._cond.wait(poll_s)
            yield
        finally:
            with self._cond:
                if running:
                    self._running -= 1
                elif me in self._waiting:
                    self._waiting.remove(me)
                self._cancels.pop(session, None)
                self._cond.notify_all()
