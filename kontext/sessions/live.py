"""What changed in a session, told to whoever follows it (a live share link's viewers).

Every change of a session's history (a finished turn, undo/redo, a jump or pick, an upload, an
import, start over), each step of its running turn, the turn's end, and the revocation of its links
are published here as one small `Change`. Followers subscribe once; publishing is a dictionary
lookup when nobody follows the session, so sessions without live viewers pay nothing. A follower's
callback runs in the publishing thread (a turn's, or a request's) and must only hand the change on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    kind: str  # history: the steps or the current one changed; progress: the running turn's step;
    # idle: the running turn ended (finished, stopped or failed); links: its share links changed
    step: int = 0
    total: int = 0
    preview: Any = None  # the running turn's newest preview (a small PIL image), when it has one
    previews: tuple = ()  # variations: one per candidate
    root: int | None = None  # progress: the first step of the tree the turn edits (None: a new picture)


class Changes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._followed: dict[str, int] = {}  # session key -> followers
        self._listeners: list[Callable[[str, Change], None]] = []

    def listen(self, listener: Callable[[str, Change], None]) -> None:
        """Call `listener(key, change)` for each change of a followed session."""
        with self._lock:
            self._listeners.append(listener)

    def follow(self, key: str) -> None:
        with self._lock:
            self._followed[key] = self._followed.get(key, 0) + 1

    def unfollow(self, key: str) -> None:
        with self._lock:
            n = self._followed.get(key, 0) - 1
            if n > 0:
                self._followed[key] = n
            else:
                self._followed.pop(key, None)

    def followed(self, key: str) -> bool:
        return key in self._followed

    def publish(self, key: str, change: Change) -> None:
        if key not in self._followed:  # nobody watches: nothing to do (read without the lock: a
            return  # follower that starts now draws the session itself first)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(key, change)
