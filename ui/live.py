"""Live share links: the viewers of a link the owner made live follow each step as it happens.

Push, not poll: each viewer's page holds one streaming event (an async generator, no thread) that
sleeps until the session changes (kontext/sessions/live.py publishes every change of a followed
session), then sends what changed. What a change shows is worked out once for all viewers of a link
(`LiveRoom.frame`, kept per link and change), so 50 viewers cost one redraw and 50 small sends per
change, and nothing while nothing happens. A running turn's steps send only the status line and the
preview (written once to a file that every viewer's page loads), not the whole view.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder

from kontext.core import write_atomic
from kontext.errors import UnknownShare
from kontext.sessions import Change, Sessions

# Viewers following live links at once, in all. Each holds one of gradio's queue workers while it
# follows (an awaiting coroutine, no thread): the app raises gradio's worker count by this many
# (ui/app.launch_kwargs) so that viewers never take the workers owners' edits need.
MAX_LIVE_VIEWERS = 200
HEARTBEAT_S = 20.0  # a quiet link still answers this often, so gradio can close a viewer who left
LIVE_TEXT = "● **Live**: this view follows the owner's steps as they happen."
ENDED_TEXT = "**This live link ended**: its owner stopped sharing. What you see is how it was then."
FULL_TEXT = (f"**This link is live, but {MAX_LIVE_VIEWERS} viewers already follow live links here**: this view "
             "is fixed. Reload the page later to follow live.")
FROZEN_TEXT = "**No longer live**: the owner made this link a fixed view. Reload the page to see its latest state."


class LiveRoom:
    """The loop side of kontext's change feed: per session, a count of changes and an event that
    wakes its followers; per link, the last frame worked out."""

    def __init__(self, sessions: Sessions, draw: Callable[[Any], dict[Any, Any]]):
        self.s = sessions
        self.draw = draw  # the shared view's full redraw of a link at the owner's step (Viewer.draw)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: dict[str, asyncio.Event] = {}  # session key -> set at its next change
        self._seq: dict[str, int] = {}  # session key -> changes seen (history, links, turn end)
        self._steps: dict[str, tuple[int, Change]] = {}  # session key -> (count, the running turn's newest step)
        self._frames: dict[tuple, dict[Any, Any]] = {}  # (token, seq, step count) -> updates, for every viewer
        self._viewers = 0  # following now
        self._lock = threading.Lock()  # frames are worked out one at a time (each in milliseconds)
        self.previews = Path(get_upload_folder()) / "kontext-live"
        sessions.changes.listen(self._heard)

    # --- the feed, from any thread onto the loop -----------------------------------------------------
    def _heard(self, key: str, change: Change) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._bump, key, change)

    def _bump(self, key: str, change: Change) -> None:
        if change.kind == "progress":
            count, _ = self._steps.get(key, (0, change))
            self._steps[key] = (count + 1, change)
        elif change.kind != "idle" or key in self._steps:
            self._seq[key] = self._seq.get(key, 0) + 1
            # The turn's result has landed (or it ended): its steps are over. A later step of a
            # turn still running (the owner moved meanwhile) brings its status back. A turn's end
            # after its result has landed changes nothing a viewer sees: no second redraw.
            self._steps.pop(key, None)
        else:
            return
        wake = self._wake.pop(key, None)
        if wake is not None:
            wake.set()

    def _state(self, key: str) -> tuple[int, int]:
        return self._seq.get(key, 0), self._steps.get(key, (0, None))[0]

    async def _changed(self, key: str, seen: tuple[int, int]) -> bool:
        """Until `key` changes after `seen` (True), or HEARTBEAT_S pass (False)."""
        if self._state(key) != seen:
            return True
        wake = self._wake.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), HEARTBEAT_S)
        return self._state(key) != seen

    # --- frames --------------------------------------------------------------------------------------
    def frame(self, token: str, key: str, root: int, state: tuple[int, int], p: Any,
              full: bool) -> dict[Any, Any]:
        """The updates one change sends to every viewer of `token` (the tree starting at `root`): the
        whole view after a change of the steps, only the status and preview during a running turn of
        that tree (a turn on another picture of the session is not the link's to show)."""
        cache_key = (token, *state, full)
        with self._lock:  # one viewer works it out, the others wait for it and take the same
            hit = self._frames.get(cache_key)
            if hit is not None:
                return hit
            out = dict(self.draw(token)) if full else {}
            _, step = self._steps.get(key, (0, None))
            if step is not None and step.root == root and not out.get(p.message):  # a running turn of this tree
                out[p.status] = f"The owner's edit is running: step {step.step} of {step.total}."
                preview = self._preview_file(key, state[0], step)
                if preview is not None:
                    out[p.canvas] = preview
            if len(self._frames) > 256:  # old frames are never asked for again
                self._frames.clear()
            self._frames[cache_key] = out
            return out

    def _preview_file(self, key: str, seq: int, step: Change) -> str | None:
        """The running turn's newest preview as a small PNG, written once for all viewers. Named by
        the session's change count too: every turn ends with a change, so a later turn's step 2 never
        reads an earlier turn's file."""
        if step.preview is None:
            return None
        self.previews.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(f"live:{key}".encode()).hexdigest()[:24]
        path = self.previews / f"{tag}-{seq}-{step.step}.png"
        if not path.exists():
            write_atomic(path, lambda f: step.preview.save(f, format="PNG", compress_level=1))
            for old in self.previews.glob(f"{tag}-*.png"):  # only the newest few stay
                if old != path and old.stat().st_mtime < path.stat().st_mtime - 30:
                    old.unlink(missing_ok=True)
        return str(path)

    def _share(self, token: Any) -> Any:
        """The link, or None once it is gone. In a worker thread: the links' lock is held while a new
        link or a revocation is synced to disk, and the event loop must not wait for that."""
        try:
            return self.s.shares.resolve(token)
        except UnknownShare:
            return None

    # --- one viewer ----------------------------------------------------------------------------------
    async def follow(self, token: Any, p: Any) -> AsyncIterator[dict[Any, Any]]:
        """A viewer's stream: nothing for a frozen link; for a live one, each change until the link
        ends, stops being live, or the viewer leaves (gradio then closes this generator)."""
        self._loop = asyncio.get_running_loop()
        share = await asyncio.to_thread(self._share, token)
        if share is None or not share.live:
            yield {p.live_badge: ""}
            return
        key = share.key
        # The count is only touched here, on the loop: no lock (the frames' lock is held in worker
        # threads while they draw, and the loop must never wait for it).
        if self._viewers >= MAX_LIVE_VIEWERS:
            yield {p.live_badge: FULL_TEXT}
            return
        self._viewers += 1
        self.s.changes.follow(key)
        try:
            seen = self._state(key)
            first = await asyncio.to_thread(self.draw, token)  # what changed before this stream began
            yield {p.live_badge: LIVE_TEXT, **first}
            while True:
                if not await self._changed(key, seen):
                    yield {p.live_badge: LIVE_TEXT}  # a heartbeat: lets gradio end a stream whose viewer left
                    continue
                now = self._state(key)
                share = await asyncio.to_thread(self._share, token)
                if share is None:
                    yield {p.live_badge: ENDED_TEXT}
                    return
                if not share.live:
                    yield {p.live_badge: FROZEN_TEXT}
                    return
                full = now[0] != seen[0]
                seen = now
                frame = await asyncio.to_thread(self.frame, token, key, share.root, now, p, full)
                if frame:  # a step already overtaken by the turn's result sends nothing
                    yield frame
        finally:
            self.s.changes.unfollow(key)
            self._viewers -= 1
