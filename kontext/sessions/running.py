"""Running a planned turn and committing it.

- The turn waits for its place in the admission queue (one running or waiting turn per session),
  then runs where `self.gpu` says (this process, ZeroGPU's worker, the Ray pool).
- An edit remembers its parent when it starts and, when done, is added to the *latest* history
  under the lock: steps added meanwhile (another edit, an upload, an import) are kept, and two edits
  of one session both land. The finished edit becomes the current step, as the user asked for it.
- A turn is committed only after its PNG is durably stored; a cancelled or failed edit commits
  nothing."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from PIL import Image

from kontext.core import metadata
from kontext.core.history import History, Node
from kontext.errors import Busy, Cancelled, UserError
from kontext.model.engine import EditResult
from kontext.model.safety import enforce
from kontext.model.turns import Progress
from kontext.sessions.admission import SESSION_BUSY
from kontext.sessions.keeper import KEEP_PIXELS, step_dict
from kontext.sessions.live import Change
from kontext.sessions.planning import EditOptions, Planning, Turn
from kontext.showcase.examples import ResultCache

log = logging.getLogger("kontext.sessions.session")


class Running(Planning):
    def edit(
        self,
        key: str,
        prompt: str,
        opts: EditOptions = EditOptions(),
        *,
        parent: int | None | type[...] = ...,
        on_step: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        preview_every: int = 0,
    ) -> tuple[History, Node]:
        """Run one turn from `parent` (default: the current step; None: text-to-image, a new tree).

        The turn is planned (every rule checked), then takes its place in the GPU queue (one running or
        waiting turn per session; `on_step` hears Progress(step=0, waiting=n) meanwhile), then runs
        where `self.gpu` says (this process, ZeroGPU's worker, the pool) and is committed here.
        Returns the committed history and the new step. On any error or cancel nothing changes;
        `stop(key)` sets `cancel` from anywhere.
        """
        def waiting(ahead: int) -> None:
            if on_step is not None:
                on_step(Progress(0, 0, None, ahead))

        if self.queue.has_turn(key):  # the cheapest refusal first: no planning for a turn that cannot queue
            raise Busy(SESSION_BUSY)
        # Planned once, with every rule, before it queues: a bad request is refused at once.
        turn = self.plan(key, prompt, opts, parent=parent, preview_every=preview_every)
        enforce(self.safety, turn.request.prompt, turn.request.context)  # before any GPU time
        result = self._cached(turn)
        if result is not None:  # an example's stored result needs no GPU: it never waits in the queue
            enforce(self.safety, turn.request.prompt, turn.request.context, result.image)
            return self.commit(key, turn, result, cancel)
        cancel = cancel if cancel is not None else threading.Event()  # so that stop(key) can end it
        # Which tree the turn edits (from the plan's own snapshot): a live link shows the running turn
        # only to viewers of that tree.
        root = turn.root

        def report(p: Progress) -> None:
            if on_step is not None:
                on_step(p)
            if p.step:  # live viewers see the running turn's steps and previews
                self.changes.publish(key, Change("progress", p.step, p.total, p.preview, p.previews, root))

        try:
            with self.queue.turn(key, on_wait=waiting, cancel=cancel):
                return self._run_turn(key, turn, report, cancel)
        finally:
            self.changes.publish(key, Change("idle"))

    def _run_turn(self, key: str, turn: Turn, on_step: Callable[[Progress], None],
                  cancel: threading.Event) -> tuple[History, Node]:
        result = self.gpu.run(turn.request, on_step, cancel)
        # The result, before it is kept (or cached): a refusal leaves the history as it was. Every
        # candidate of a group of variations is a picture the user gets.
        for picture in result.candidates or (result.image,):
            enforce(self.safety, turn.request.prompt, turn.request.context, picture)
        if turn.cacheable and not cancel.is_set():
            try:
                self.results.put(ResultCache.key(self.engine, turn.request), result.image,
                                 result.seconds, result.extra)
            except OSError:  # a cache is a shortcut: never lose a finished turn over it
                log.exception("could not keep an example result in the cache")
        return self.commit(key, turn, result, cancel)

    def stop(self, key: str) -> bool:
        """Stop the session's running or waiting turn, however it was started (any tab, the API, MCP);
        False if none runs. The turn ends at its next step and commits nothing."""
        return self.queue.stop(key)

    def _cached(self, turn: Turn) -> EditResult | None:
        """The stored result of this very call, for an example tree's fixed-seed turn (else None)."""
        if not turn.cacheable:
            return None
        hit = self.results.get(ResultCache.key(self.engine, turn.request))
        if hit is None:
            return None
        r = turn.request
        return EditResult(image=Image.open(io.BytesIO(hit.png)).convert("RGB"), seed=r.seed, guidance=r.guidance,
                          steps=r.steps, width=r.width, height=r.height, seconds=hit.seconds,
                          model=self.engine.model_id, extra={**hit.extra, "cached": True})

    def commit(self, key: str, turn: Turn, result: EditResult,
               cancel: threading.Event | None = None) -> tuple[History, Node]:
        """Store the finished turn's PNG (each candidate's, for variations) and add its step (the
        candidates as sibling steps, the first one current) to the latest history, under the lock."""
        pictures = result.candidates or (result.image,)
        if cancel is not None and cancel.is_set():
            raise Cancelled()  # stopped after the last step: still never committed
        # Encode the PNGs outside the lock (it can take a while at 1 MP) with the ids the steps will
        # most likely get; re-encode under the lock only if another turn landed meanwhile.
        nodes = self._steps(turn, result, self.history(key).next_id())
        pngs = self._pngs(pictures, nodes)
        self.make_room(key, sum(map(len, pngs)))
        with self._lock(key):
            latest = self._load(key)
            # The parent must still be the picture this edit started from: after "start over" or
            # an import, ids restart and the same number can name another image.
            parent = turn.parent
            if parent is not None and (parent not in latest.nodes or latest.nodes[parent].image != turn.parent_image):
                raise UserError("the step this edit started from is gone (the session was cleared "
                                 "meanwhile); nothing was added")
            latest.check_room(len(nodes))
            if latest.next_id() != nodes[0].id:
                nodes = self._steps(turn, result, latest.next_id())
                pngs = self._pngs(pictures, nodes)
            if cancel is not None and cancel.is_set():
                raise Cancelled()  # Stop pressed while the PNG was encoded: still nothing committed
            names, committed = self._add_steps(key, latest, nodes, pngs, parent, pictures)
        for name, x, picture in zip(names, nodes, pictures, strict=True):
            self._after_commit(key, name, x, picture)
        return committed, committed.current_node

    @staticmethod
    def _steps(turn: Turn, result: EditResult, first: int) -> list[Node]:
        """The turn's steps with ids from `first` on: one, or a candidate each (seed + i, knowing its group)."""
        n = len(result.candidates or (result.image,))
        node = Node(
            id=first, parent=turn.parent, kind="edit" if turn.request.context is not None else "text", image="",
            prompt=turn.request.prompt, seed=result.seed, guidance=result.guidance,
            steps=result.steps, width=result.width, height=result.height, model=result.model,
            seconds=round(result.seconds / n, 3), created=time.time(), extra={**result.extra, **turn.extra},
        )
        if n == 1:
            return [node]
        record = {"size": n, "first": first, "batched": turn.request.batched, "seconds": round(result.seconds, 3)}
        if turn.request.batch_note:
            record["note"] = turn.request.batch_note
        return [replace(node, id=first + i, seed=result.seed + i,
                        extra={**node.extra, "variations": {**record, "index": i}}) for i in range(n)]

    def _pngs(self, pictures: tuple[Image.Image, ...], nodes: list[Node]) -> list[bytes]:
        """Each step's PNG, stored uncompressed: the turn waits for this write; compression follows it."""
        return [metadata.stored_png_bytes(p, step_dict(x, self.engine)) for p, x in zip(pictures, nodes, strict=True)]

    def _add_steps(self, key: str, latest: History, nodes: list[Node], pngs: list[bytes],
                   parent: int | None, pictures: list[Image.Image]) -> tuple[list[str], History]:
        """Save the pictures and their thumbnails, and commit the steps (a group's first one current);
        on a failure the pictures saved so far are removed again. Under the session's lock. The
        thumbnails come before the commit, which live viewers redraw at once: they decode nothing."""
        names: list[str] = []
        try:
            h = latest
            for png, x, picture in zip(pngs, nodes, pictures, strict=True):
                names.append(self.store.save_image(key, png))
                self._save_thumbnail(key, names[-1], picture)
                h = h.add(replace(x, image=names[-1]), parent=parent)
            return names, self._commit(key, h.jump(nodes[0].id) if len(nodes) > 1 else h)
        except BaseException:
            self.store.discard_images(key, names)
            raise

    def _save_thumbnail(self, key: str, name: str, image: Image.Image) -> None:
        try:
            self.store.save_thumbnail(key, name, image)
        except OSError:  # a thumbnail is a cache: the timeline makes it from the file if this failed
            log.exception("could not write a step's thumbnail")

    def _after_commit(self, key: str, name: str, node: Node, image: Image.Image) -> None:
        """What the turn's answer needs from the picture in memory (the next edit's starting
        picture), then its compression, after the answer."""
        self.keep_picture(key, name, image)
        step = step_dict(node, self.engine)  # the same text chunks as the stored file

        def compact() -> None:
            png = metadata.png_bytes(image, step)
            with self._lock(key):
                self.store.replace_image(key, name, png)

        if image.width * image.height > KEEP_PIXELS:
            compact()  # a picture this large is not held in memory for later: compress it now
        else:
            self.compactor.submit(compact, name)
