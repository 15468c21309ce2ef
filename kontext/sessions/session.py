"""Session level: load a session's history, call the engine, commit the turn.

Concurrency rules:
- Each session has a lock held only while its history is read-modified-written, never during the
  edit itself, so undo/redo/jump stay instant while an edit runs.
- An edit remembers its parent when it starts and, when done, is added to the *latest* history
  under the lock: steps added meanwhile (another edit, an upload, an import) are kept, and two edits
  of one session both land. The finished edit becomes the current step, as the user asked for it.
- A turn is committed only after its PNG is durably stored; a cancelled or failed edit commits
  nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from kontext.core import metadata
from kontext.core import params as P
from kontext.core.compose import MAX_MORE_REFERENCES, ROLES
from kontext.core.drift import Drift
from kontext.core.drift import measure as measure_drift
from kontext.core.history import History, Node
from kontext.core.images import open_image, source_name
from kontext.core.masks import check_mask
from kontext.errors import Busy, Cancelled, UnknownShare, UserError
from kontext.files.export import write_export
from kontext.files.importer import (
    ExportReader,
    ImportResult,
    Limits,
    check_room,
    merge,
    open_export,
    plan_ids,
    renumbered_png,
)
from kontext.files.sharing import Share, Shares
from kontext.files.store import Store, check_key, new_key
from kontext.model.engine import EditResult, Engine
from kontext.model.loras import recorded
from kontext.model.safety import Check, enforce
from kontext.model.turns import LocalGpu, Progress, TurnRequest, plan_step
from kontext.sessions.admission import TurnQueue
from kontext.showcase.examples import ResultCache

log = logging.getLogger("kontext.sessions.session")
SEED_MODES = ("random", "fixed", "locked")
MAX_CACHED = 1000  # session histories kept in memory
LOCK_STRIPES = 256
DRIFT_TURNS = 6  # after this many edits in a row, quality tends to drift


@dataclass(frozen=True)
class EditOptions:
    """How to run one turn. None means the model's default."""

    seed_mode: str = "random"  # random: new each turn; fixed: `seed`; locked: the parent's seed
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    reference: str | None = None  # a stored reference image (Sessions.add_reference), right of the context
    draft: bool = False  # a quarter of the area, context scaled down too: a quick look before refining
    mask: str | None = None  # a stored mask (Sessions.add_mask): only there may the picture change
    loras: tuple[tuple[str, float], ...] = ()  # (name, strength) of the engine's LoRA presets
    more_references: tuple[str, ...] = ()  # up to two more stored references, right of the first
    roles: tuple[str, ...] = ()  # what each reference is (kontext.core.compose.ROLES), shown on the page


@dataclass(frozen=True)
class Turn:
    """A planned step: where it goes in the tree, and the pipeline call that makes its image."""

    parent: int | None
    parent_image: str | None  # the parent's stored image, to check the parent is still the same picture
    request: TurnRequest
    extra: dict[str, Any]
    cacheable: bool = False  # a fixed-seed turn in a tree that started from an example


def recorded_loras(node: Node) -> tuple[tuple[str, float], ...]:
    """The (name, strength) pairs a step was made with (its extra["loras"])."""
    return recorded(node.extra.get("loras"))


def recorded_references(node: Node) -> dict[str, tuple[str, ...]]:
    """The extra references and roles a step was made with, as EditOptions fields."""
    return {"more_references": tuple(node.extra.get("more_references") or ()),
            "roles": tuple(node.extra.get("reference_roles") or ())}


def step_dict(node: Node, engine: Engine | None = None) -> dict[str, Any]:
    """What a PNG and an export record about a step."""
    d = node.to_dict()
    d.pop("image", None)
    if engine is not None and engine.revision:
        d["revision"] = engine.revision
    return d


class Sessions:
    """All sessions of one app: a store on disk plus the engine that makes the images."""

    def __init__(self, engine: Engine, store: Store, max_nodes: int | None = None, *,
                 gpu: Any = None, queue: TurnQueue | None = None, results: ResultCache | None = None,
                 safety: Check | None = None):
        self.engine = engine
        self.safety = safety  # a host's content check on every turn (kontext.model.safety), or None
        self.results = results  # finished turns of example trees (kontext.showcase.examples), or None
        self.shares = Shares(store.root / "shares.json")  # read-only links (kontext.files.sharing)
        self.store = store
        self.max_nodes = max_nodes
        self.gpu = gpu or LocalGpu(engine)  # this process; kontext.hosting.zerogpu.RemoteGpu: ZeroGPU's worker
        # A worker pool runs one turn per worker at once (kontext/hosting/pool.py); else one at a time.
        self.queue = queue or TurnQueue(slots=getattr(self.gpu, "replicas", 1))
        # Striped locks: a fixed set shared by hash, so invented keys cannot grow memory and no lock
        # is ever replaced while a thread is about to take it. Critical sections are milliseconds.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        # Histories of recently used sessions; bounded, since any client can invent keys.
        self._cache: OrderedDict[str, History] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._references: dict[tuple[str, str], str] = {}  # (key, sha256 of the PNG) -> stored name
        self._drift: dict[tuple[str, str, str], Drift] = {}  # (session folder, original, step image) -> drift
        self._last_sweep = 0.0

    # --- keys and locks ------------------------------------------------------------------------
    def new(self) -> str:
        return new_key()

    def _lock(self, key: str) -> threading.Lock:
        folder = self.store.folder(key)  # validates the key; its name is a hash of it
        return self._locks[int(folder.name[:8], 16) % LOCK_STRIPES]  # Store.sweep relies on this mapping

    def history(self, key: str) -> History:
        with self._lock(key):
            return self._load(key)

    def _load(self, key: str) -> History:
        with self._cache_lock:
            h = self._cache.get(key)
            if h is not None:
                self._cache.move_to_end(key)
                return h
        h = self.store.load(key, max_nodes=self.max_nodes)
        if not h.empty:  # an unknown key costs nothing to remember
            self._remember(key, h)
        return h

    def _remember(self, key: str, h: History) -> None:
        # One cache for all sessions, but session locks are per key (striped): guard it on its own.
        with self._cache_lock:
            self._cache[key] = h
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)

    def _forget(self, key: str) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    def _commit(self, key: str, new: History) -> History:
        self.store.commit(key, new)
        self._remember(key, new)
        return new

    def sweep(self, keep: str | None = None, every_s: float = 600.0, room: int = 0) -> None:
        """Delete expired sessions and enforce the disk budget, at most every `every_s` seconds.

        Each session is deleted under its own lock, so an edit's commit never races the deletion.
        """
        now = time.time()
        if now - self._last_sweep < every_s:
            return
        self._last_sweep = now

        def lock_for(folder_name: str) -> threading.Lock:
            return self._locks[int(folder_name[:8], 16) % LOCK_STRIPES]

        removed = {p.name for p in self.store.sweep(now=now, keep=keep, lock_for=lock_for, room=room)}
        with self._cache_lock:
            for k in [k for k in self._cache if self.store.folder(k).name in removed]:
                self._cache.pop(k, None)

    def make_room(self, key: str, nbytes: int) -> None:
        """Before writing `nbytes` for `key` (outside any session lock: the sweep takes them): run the
        periodic sweep, which API traffic thus triggers too; when the write would pass the disk
        budget, sweep now (least recently used first) and refuse in plain words if that is not enough."""
        if self.store.has_room(nbytes):
            self.sweep(keep=key)
            return
        self.sweep(keep=key, every_s=0, room=nbytes)
        self.store.check_room(nbytes)

    def _update(self, key: str, op: Callable[[History], History]) -> History:
        with self._lock(key):
            old = self._load(key)
            new = op(old)
            return old if new is old else self._commit(key, new)

    # --- images --------------------------------------------------------------------------------
    def image(self, key: str, node_id: int | None = None) -> Image.Image:
        h = self.history(key)
        nid = h.current if node_id is None else node_id
        if nid is None:
            raise UserError("this session has no image yet: upload one or describe one in a prompt")
        return Image.open(io.BytesIO(self.store.read_image_bytes(key, h.node(nid).image)))

    def image_path(self, key: str, node_id: int | None = None, thumbnail: bool = False) -> str:
        """A path the web server may serve for a step's PNG (or its timeline thumbnail)."""
        h = self.history(key)
        nid = h.current if node_id is None else node_id
        if nid is None:
            raise UserError("this session has no image yet")
        return str(self.store.public_path(key, h.node(nid).image, thumbnail=thumbnail))

    # --- turns ---------------------------------------------------------------------------------
    def upload(self, key: str, source: Any, name: str = "", example: str | None = None) -> History:
        """Start a new tree from an uploaded image (path, bytes or PIL). Earlier trees stay.

        The step is named after the file (`name`, a client's file name: only its last part is kept),
        or "original" without one."""
        img = open_image(source, "image")
        w, h = img.size
        name = source_name(name)
        extra: dict[str, Any] = {"source": name} if name else {}
        if example:
            extra["example"] = example  # this tree's fixed-seed turns may come from the result cache
        node = Node(id=0, parent=None, kind="upload", image="", width=w, height=h,
                    prompt=name or "original", extra=extra)
        # Encode outside the lock (seconds at 40 MP) with the id the step will most likely get.
        node = replace(node, id=self.history(key).next_id())
        png = metadata.png_bytes(img, step_dict(node))
        self.make_room(key, len(png))
        with self._lock(key):
            old = self._load(key)
            old.check_room()
            if old.next_id() != node.id:
                node = replace(node, id=old.next_id())
                png = metadata.png_bytes(img, step_dict(node))
            stored = replace(node, image=self.store.save_image(key, png))
            return self._commit(key, old.add(stored, parent=None))

    def add_reference(self, key: str, source: Any) -> str:
        """Store a reference image (style, character, object) for later edits; return its name.

        It is scaled down to the model's largest side (the pair never uses more) and stored once per
        session: adding the same picture again returns the same name.
        """
        img = open_image(source, "reference")
        side = self.engine.profile.max_side
        if max(img.size) > side:
            img.thumbnail((side, side), Image.LANCZOS)
        png = metadata.png_bytes(img, {"kind": "upload", "prompt": "reference image"})
        digest = hashlib.sha256(png).hexdigest()
        self.make_room(key, len(png))
        with self._lock(key):
            known = self._references.get((key, digest))
            if known and self.store.image_path(key, known).is_file():
                return known
            name = self.store.save_image(key, png)
            if len(self._references) > MAX_CACHED:
                self._references.clear()  # only a shortcut; the files stay
            self._references[(key, digest)] = name
            return name

    def add_mask(self, key: str, source: Any) -> str:
        """Store a mask (a picture: its alpha if it has one, else non-black means "may change") for
        later masked edits; return its name. Kept exactly as given, so replays use the same pixels."""
        if isinstance(source, Image.Image):
            img = source
        else:
            img = open_image(source, "mask")  # every check an upload gets (format, size, bombs)
            raw_src = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(raw_src) as raw:  # open_image flattens alpha: a painted layer is its alpha
                if raw.mode in ("RGBA", "LA", "PA") or "transparency" in raw.info:
                    img = raw.convert("RGBA")
        m = check_mask(img, img.size)
        png = metadata.png_bytes(m.convert("RGB"), {"kind": "upload", "prompt": "mask"})
        self.make_room(key, len(png))
        with self._lock(key):
            return self.store.save_image(key, png)

    def mask_image(self, key: str, name: str) -> Image.Image:
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the mask is no longer stored: paint it again") from None
        return Image.open(io.BytesIO(data)).convert("L")

    def reference_image(self, key: str, name: str) -> Image.Image:
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the reference image is no longer stored (unused references are removed "
                             "after an hour, and start over removes all): add it again") from None
        return Image.open(io.BytesIO(data)).convert("RGB")

    def resolve_seed(self, history: History, parent: int | None, opts: EditOptions) -> int:
        if opts.seed_mode not in SEED_MODES:
            raise UserError(f"seed_mode must be one of {SEED_MODES}, got {opts.seed_mode!r}")
        if opts.seed_mode == "fixed":
            if opts.seed is None:
                raise UserError("seed is empty: type a seed or choose a random seed")
            return P.check_seed(opts.seed)
        if opts.seed_mode == "locked":
            # Keep the seed of the step being edited (its own seed, if it was generated).
            node = None if parent is None else history.node(parent)
            if node is not None and node.seed is not None:
                return node.seed
            return P.check_seed(opts.seed) if opts.seed is not None else P.new_seed()
        return P.new_seed()

    def plan(self, key: str, prompt: str, opts: EditOptions = EditOptions(), *,
             parent: int | None | type[...] = ..., preview_every: int = 0) -> Turn:
        """Every rule for running a step, in one place: the parent, the context image (with a
        reference beside it), the draft size, the seed, and the engine's checks of every value.

        Raises ValueError for bad input before any GPU time is spent.
        """
        snapshot = self.history(key)
        parent_id = snapshot.current if parent is ... else parent
        if self.safety is not None and getattr(self.safety, "checks_images", True):
            preview_every = 0  # a preview would show what the content check has not seen yet
        snapshot.check_room()
        context = None
        if parent_id is not None:
            context = self.image(key, parent_id).convert("RGB")
        extra: dict[str, Any] = {}
        if opts.draft:
            if opts.width is not None:
                raise UserError("a draft picks its own size: choose 'Match input' with draft")
            extra["draft"] = True
        reference, more = None, []
        if opts.reference is not None:
            reference = self.reference_image(key, opts.reference)
            extra["reference"] = opts.reference
        if opts.more_references:
            if len(opts.more_references) > MAX_MORE_REFERENCES:
                raise UserError(f"at most {MAX_MORE_REFERENCES + 1} reference images at once")
            more = [self.reference_image(key, r) for r in opts.more_references]
            extra["more_references"] = list(opts.more_references)
        if opts.roles:
            bad = [r for r in opts.roles if r not in ROLES]
            if bad:
                raise UserError(f"a reference's role must be one of {', '.join(ROLES)}, got {bad[0]!r}")
            extra["reference_roles"] = list(opts.roles)[: 1 + len(more)]
        mask = None
        if opts.mask is not None:
            mask = self.mask_image(key, opts.mask)
            extra["mask"] = opts.mask
        request = plan_step(self.engine, context, prompt, seed=self.resolve_seed(snapshot, parent_id, opts),
                            guidance=opts.guidance, steps=opts.steps, width=opts.width, height=opts.height,
                            reference=reference, draft=opts.draft, preview_every=preview_every, mask=mask,
                            loras=opts.loras, more_references=tuple(more))
        if opts.width is None and self.engine.speed.aot and opts.mask is None:
            extra["bucket"] = f"{request.width}×{request.height}"  # the nearest compiled size, said on the page
        parent_image = None if parent_id is None else snapshot.node(parent_id).image
        from_example = parent_id is not None and bool(snapshot.path(parent_id)[0].extra.get("example"))
        cacheable = (from_example and opts.seed_mode == "fixed" and self.results is not None
                     and self.results.covers(request.prompt))
        return Turn(parent=parent_id, parent_image=parent_image, request=request, extra=extra, cacheable=cacheable)

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

        The turn first takes its place in the GPU queue (one running or waiting turn per session;
        `on_step` hears Progress(step=0, waiting=n) meanwhile), then runs where `self.gpu` says
        (this process, or ZeroGPU's worker) and is committed here. Returns the committed history
        and the new step. On any error or cancel nothing changes.
        """
        def waiting(ahead: int) -> None:
            if on_step is not None:
                on_step(Progress(0, 0, None, ahead))

        is_cancelled = (lambda: cancel.is_set()) if cancel is not None else (lambda: False)
        if self.results is not None and opts.seed_mode == "fixed" and self.results.covers(str(prompt).strip()):
            # A cached example result needs no GPU: it never waits in the queue. (Only catalog
            # instructions can be cached, so other turns are not planned twice.)
            turn = self.plan(key, prompt, opts, parent=parent)
            result = self._cached(turn)
            if result is not None:
                if self.queue.has_turn(key):
                    raise Busy("an edit of this session is already running or waiting: wait for it to finish, "
                               "or press Stop")
                enforce(self.safety, turn.request.prompt, turn.request.context)
                enforce(self.safety, turn.request.prompt, turn.request.context, result.image)
                return self.commit(key, turn, result, cancel)
        with self.queue.turn(key, is_cancelled, waiting):
            turn = self.plan(key, prompt, opts, parent=parent, preview_every=preview_every)
            enforce(self.safety, turn.request.prompt, turn.request.context)  # before any GPU time
            result = self._cached(turn)
            if result is None:
                result = self.gpu.run(turn.request, on_step, cancel)
            # The result, before it is kept (or cached): a refusal leaves the history as it was.
            enforce(self.safety, turn.request.prompt, turn.request.context, result.image)
            if not result.extra.get("cached"):
                if turn.cacheable and not (cancel is not None and cancel.is_set()):
                    try:
                        self.results.put(ResultCache.key(self.engine, turn.request), result.image,
                                         result.seconds, result.extra)
                    except OSError:  # a cache is a shortcut: never lose a finished turn over it
                        log.exception("could not keep an example result in the cache")
            return self.commit(key, turn, result, cancel)

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
        """Store the finished turn's PNG and add its step to the latest history, under the lock."""
        parent_id = turn.parent
        node = Node(
            id=0, parent=parent_id, kind="edit" if turn.request.context is not None else "text", image="",
            prompt=turn.request.prompt, seed=result.seed, guidance=result.guidance,
            steps=result.steps, width=result.width, height=result.height, model=result.model,
            seconds=round(result.seconds, 3), created=time.time(), extra={**result.extra, **turn.extra},
        )
        if cancel is not None and cancel.is_set():
            raise Cancelled()  # stopped after the last step: still never committed
        # Encode the PNG outside the lock (it can take a while at 1 MP) with the id the step will
        # most likely get; re-encode under the lock only if another turn landed meanwhile.
        node = replace(node, id=self.history(key).next_id())
        png = metadata.png_bytes(result.image, step_dict(node, self.engine))
        self.make_room(key, len(png))
        with self._lock(key):
            latest = self._load(key)
            # The parent must still be the picture this edit started from: after "start over" or
            # an import, ids restart and the same number can name another image.
            if parent_id is not None and (parent_id not in latest.nodes
                                          or latest.nodes[parent_id].image != turn.parent_image):
                raise UserError("the step this edit started from is gone (the session was cleared "
                                 "meanwhile); nothing was added")
            latest.check_room()
            if latest.next_id() != node.id:
                node = replace(node, id=latest.next_id())
                png = metadata.png_bytes(result.image, step_dict(node, self.engine))
            if cancel is not None and cancel.is_set():
                raise Cancelled()  # Stop pressed while the PNG was encoded: still nothing committed
            name = self.store.save_image(key, png)
            try:
                committed = self._commit(key, latest.add(replace(node, image=name), parent=parent_id))
            except BaseException:
                self.store.discard_images(key, [name])
                raise
        return committed, committed.current_node

    def reroll(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Repeat the current step's prompt from the same parent with a new random seed (a sibling)."""
        h = self.history(key)
        cur = h.current_node
        if cur is None or cur.kind == "upload":
            raise UserError("nothing to re-roll: the current step is not an edit")
        draft = bool(cur.extra.get("draft"))
        masked = cur.extra.get("mask")
        rolled = EditOptions(seed_mode="random", guidance=cur.guidance, steps=cur.steps,
                             width=None if draft or masked else cur.width,
                             height=None if draft or masked else cur.height,
                             reference=cur.extra.get("reference"), draft=draft, mask=masked,
                             loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, rolled, parent=cur.parent, **kw)

    def refine(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Run the current draft again at full size: same parent, prompt, seed, guidance, steps and
        reference (a sibling branch). `opts` may set the size; the default matches the input."""
        cur = self.history(key).current_node
        if cur is None or not cur.extra.get("draft"):
            raise UserError("nothing to refine: the current step is not a draft")
        full = EditOptions(seed_mode="fixed", seed=cur.seed, guidance=cur.guidance, steps=cur.steps,
                           width=opts.width, height=opts.height, reference=cur.extra.get("reference"),
                           loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, full, parent=cur.parent, **kw)

    def combine(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Redo every instruction of the current path as one edit of its original image.

        Kontext drifts over many turns (each turn re-encodes the previous output); one combined
        instruction from the original often keeps more detail. The result is a new branch from the
        original, so the step-by-step chain stays.
        """
        path = self.history(key).path()
        edits = [n.prompt for n in path[1:] if n.kind == "edit"]
        if len(edits) < 2:
            raise UserError("combine needs at least two edits after the original image")
        prompt = "; ".join(e.rstrip(" .;") for e in edits)
        if len(prompt) > P.MAX_PROMPT_CHARS:
            raise UserError(f"the combined instruction is {len(prompt)} characters; the limit is "
                             f"{P.MAX_PROMPT_CHARS}: combine from a later step or shorten instructions")
        # The combined steps may have used different references or masks (or none): combine without.
        return self.edit(key, prompt, replace(opts, reference=None, more_references=(), roles=(), mask=None),
                         parent=path[0].id, **kw)

    # --- read-only share links -----------------------------------------------------------------
    def share(self, key: str) -> Share:
        """A read-only link to the tree of the current step (the same link if it is shared already)."""
        h = self.history(key)
        if h.current is None:
            raise UserError("nothing to share yet: upload or make a picture first")
        root = h.path()[0]
        return self.shares.share(key, root.id, root.image, alive=self.store.exists)

    def unshare(self, key: str) -> int:
        """Revoke every share link of this session; return how many there were."""
        check_key(key)
        return self.shares.revoke(key)

    def shared(self, token: object, current: int | None = None) -> tuple[Share, History]:
        """What a share link shows: its tree as a read-only History, at `current` (a step the viewer
        chose, if it is in the tree) or else at the owner's step in it or the tree's latest tip."""
        share = self.shares.resolve(token)
        h = self.history(share.key)
        root = h.nodes.get(share.root)
        if root is None or root.parent is not None or root.image != share.image:
            raise UnknownShare("this share link shows nothing any more: its owner deleted that picture's "
                               "steps (or the session expired)")
        view = h.subtree(share.root, h.current)
        return share, (view if current is None else h.subtree(share.root, current))

    # --- navigation (instant, no engine) -------------------------------------------------------
    def undo(self, key: str) -> History:
        return self._update(key, History.undo)

    def redo(self, key: str) -> History:
        return self._update(key, History.redo)

    def jump(self, key: str, node_id: int) -> History:
        if isinstance(node_id, bool) or not isinstance(node_id, int):
            raise UserError(f"step must be a step number, got {node_id!r}")
        return self._update(key, lambda h: h.jump(node_id))

    def switch_branch(self, key: str, offset: int) -> History:
        """Move to the previous (-1) or next (+1) sibling branch, at the tip it was left at."""
        def op(h: History) -> History:
            sibs = h.siblings()
            if len(sibs) < 2:
                return h
            ids = [n.id for n in sibs]
            target = ids[(ids.index(h.current) + offset) % len(ids)]
            return h.jump(h.tip(target))
        return self._update(key, op)

    def clear(self, key: str) -> None:
        with self._lock(key):
            self.store.delete(key)
            self._forget(key)
        self.shares.revoke(key)  # a link to deleted steps must not show a later picture

    def drift_curve(self, key: str, history: History | None = None) -> list[tuple[Node, Drift]]:
        """Each step of the current path (after the original) with its drift from the original
        (kontext.core.drift), remembered per pair of pictures so a redraw costs nothing."""
        h = self.history(key) if history is None else history
        path = h.path() if h.current is not None else []
        if len(path) < 2:
            return []
        out = []
        root_img: Image.Image | None = None
        # The timeline's 256 px thumbnails (made once, kept) are plenty for a 128 px measure and decode
        # in a millisecond, so even a long chain's first curve is quick.
        thumb = lambda n: Image.open(self.store.thumbnail_path(key, n.image))  # noqa: E731
        for n in path[1:]:
            memo = (self.store.folder(key).name, path[0].image, n.image)
            d = self._drift.get(memo)
            if d is None:
                if root_img is None:
                    root_img = thumb(path[0])
                d = measure_drift(root_img, thumb(n))
                if len(self._drift) > 20_000:
                    self._drift.clear()  # only a shortcut
                self._drift[memo] = d
            out.append((n, d))
        return out

    def drift_warning(self, key: str, history: History | None = None) -> str:
        """A hint when the current chain is long, or its picture far from the original, for Kontext's
        quality to have drifted."""
        h = self.history(key) if history is None else history
        edits = sum(1 for n in h.path() if n.kind == "edit")
        curve = self.drift_curve(key, h) if h.current is not None else []
        last = curve[-1][1] if curve else None
        if last is not None and last.high and edits >= 2:
            return (f"The picture has moved far from the original (colour difference ΔE {last.delta_e:.0f}, "
                    f"structure {last.ssim:.2f} of 1). If that was not intended, press \"Redo path as one edit\" "
                    "(all instructions at once, from the original) or re-anchor a step's instruction on the "
                    "original.")
        if edits >= DRIFT_TURNS:
            return (f"{edits} edits in a row: Kontext's quality drifts over many turns. If details soften, "
                    "press \"Redo path as one edit\" (all instructions at once, from the original) or branch "
                    "from an earlier step.")
        return ""

    def reanchor(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """The current step's instruction applied to the chain's original, with its seed and settings:
        a new branch beside the step-by-step one, to compare without the drift of the turns between."""
        h = self.history(key)
        cur = h.current_node
        if cur is None or cur.kind != "edit":
            raise UserError("nothing to re-anchor: the current step is not an edit")
        root = h.path()[0]
        if cur.parent == root.id:
            raise UserError("this step already edits the original: re-roll it for another variant")
        draft, masked = bool(cur.extra.get("draft")), cur.extra.get("mask")
        sized = not (draft or masked)
        again = EditOptions(seed_mode="fixed", seed=cur.seed, guidance=cur.guidance, steps=cur.steps,
                            width=cur.width if sized else None, height=cur.height if sized else None,
                            reference=cur.extra.get("reference"), mask=masked, draft=draft,
                            loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, again, parent=root.id, **kw)

    # --- export and import ---------------------------------------------------------------------
    def export(self, key: str, dest: str | Path | BinaryIO, *, scope: str = "path",
               extras: bool = True, history: History | None = None) -> dict[str, Any]:
        """Write a ZIP of the path ("path"), the current tree ("tree") or every tree ("all") to
        `dest`; return its manifest. `extras` adds an animated GIF, a contact sheet and a README.
        `history`: export this view of the session (a shared tree, as checked) instead of reading it."""
        h = self.history(key) if history is None else history
        return write_export(h, lambda name: self.store.read_image_bytes(key, name), dest, scope=scope,
                            engine=self.engine, extras=extras)

    def import_zip(self, key: str, source: str | Path | bytes | BinaryIO,
                   limits: Limits | None = None) -> ImportResult:
        """Add an exported ZIP's steps to the session as new trees; into an empty session the
        original step ids are kept, otherwise they are renumbered (the result says how).

        Everything is checked; a bad export raises ValueError and changes nothing. Images are
        written outside the lock (like an edit's), then the history is committed once.
        """
        snapshot = self.history(key)
        limits = limits or Limits(max_steps=snapshot.max_nodes)
        names: dict[int, str] = {}  # original id -> stored image, to remove if anything fails
        refs: dict[str, str] = {}  # the export's reference image name -> stored name
        try:
            with open_export(source, limits) as reader:
                check_room(snapshot, reader.export)
                self.make_room(key, reader.unpacked_bytes)
                ids = plan_ids(reader.export, snapshot)
                masks = {n.extra["mask"] for n in reader.export.nodes if isinstance(n.extra.get("mask"), str)}
                for name in reader.export.references:
                    data, img = reader.reference(name)
                    if name in masks:  # stored as the app stores its own: checked, 0/255, no alpha games
                        m = check_mask(img, img.size)
                        data = metadata.png_bytes(m.convert("RGB"), {"kind": "upload", "prompt": "mask"})
                    refs[name] = self.store.save_image(key, data)
                self._store_import(key, reader, ids, names)
                with self._lock(key):
                    latest = self._load(key)
                    if plan_ids(reader.export, latest) != ids:
                        # A turn landed meanwhile: renumber after it (rare, so done under the lock).
                        self.store.discard_images(key, names.values())
                        names.clear()
                        ids = plan_ids(reader.export, latest)
                        self._store_import(key, reader, ids, names)
                    committed = self._commit(key, merge(latest, reader.export, ids, names, refs))
                    names.clear()  # committed: from here on these images belong to the history
                    refs.clear()
        except BaseException:
            # Under the lock: edits save their images under it, so removing the (then empty)
            # session folder cannot race with one.
            with self._lock(key):
                self.store.discard_images(key, [*names.values(), *refs.values()])
            raise
        return ImportResult(committed, ids)

    def _store_import(self, key: str, reader: ExportReader, ids: dict[int, int], names: dict[int, str]) -> None:
        """Check and store every image of the export, recording each stored name in `names`."""
        for node in reader.export.nodes:
            data, image = reader.png(node)
            if node.kind != "upload":  # a host's content check sees imported steps too: words, then picture
                enforce(self.safety, node.prompt, None)
                enforce(self.safety, node.prompt, None, image)
            if ids[node.id] != node.id:
                data = renumbered_png(data, node, ids)
            names[node.id] = self.store.save_image(key, data)
