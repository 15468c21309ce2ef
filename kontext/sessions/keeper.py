"""Where a session's history is kept: the store on disk, a bounded cache in memory, one lock per
session (striped), the disk budget's sweep, and the moves that need no engine (undo, redo, jump,
branch, clear).

Each session's lock is held only while its history is read-modified-written, never during an edit,
so undo/redo/jump stay instant while an edit runs.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image

from kontext.core.history import History, Node
from kontext.core.lru import BoundedCache
from kontext.errors import UserError
from kontext.files.compactor import Compactor
from kontext.files.sharing import Shares
from kontext.files.store import HISTORY_FILE, Store, new_key
from kontext.model.engine import Engine
from kontext.model.safety import Check
from kontext.model.turns import LocalGpu
from kontext.sessions.admission import TurnQueue
from kontext.sessions.live import Change, Changes
from kontext.showcase.examples import ResultCache

MAX_CACHED = 1000  # session histories kept in memory
# Finished turns' pictures kept decoded: the next edit of the session starts from one without
# decoding its PNG again (0.05 s at 1 MP). Names are unique and files never change their pixels.
MAX_PICTURES = 16
# ...and only pictures up to the model's working size (16 x 4.2 MP x 3 bytes: 200 MB at most); a
# larger one (a 40 MP upload, a masked edit of one) is read from its file when it is needed.
KEEP_PIXELS = 2048 * 2048
LOCK_STRIPES = 256
# Sessions the sweep deleted (expired, or least recently used when the disk was full), remembered by
# folder name so that their keys are told so instead of reading as new, empty sessions. Bounded: about
# 100 bytes each; beyond it the oldest are forgotten (and read as empty again), as after a restart.
MAX_EVICTED = 20_000
REMOVED = ("this session was removed from the server to free space (sessions unused the longest go first): "
           "its steps are gone; start a new session")


class SessionRemoved(UserError):
    """The key names a session the sweep deleted (see MAX_EVICTED)."""


def step_dict(node: Node, engine: Engine | None = None) -> dict[str, Any]:
    """What a PNG and an export record about a step."""
    d = node.to_dict()
    d.pop("image", None)
    if engine is not None and engine.revision:
        d["revision"] = engine.revision
    return d


class Keeper:
    """The sessions' histories, on disk and cached, and the state every other part shares."""

    def __init__(self, engine: Engine, store: Store, max_nodes: int | None = None, *,
                 gpu: Any = None, queue: TurnQueue | None = None, results: ResultCache | None = None,
                 safety: Check | None = None):
        self.engine = engine
        self.safety = safety  # a host's content check on every turn (kontext.model.safety), or None
        self.results = results  # finished turns of example trees (kontext.showcase.examples), or None
        self.shares = Shares(store.root / "shares.jsonl")  # read-only links (kontext.files.sharing)
        self.store = store
        self.max_nodes = max_nodes
        self.gpu = gpu or LocalGpu(engine)  # this process; kontext.hosting.zerogpu.RemoteGpu: ZeroGPU's worker
        # A worker pool runs one turn per worker at once (kontext/hosting/pool.py); else one at a time.
        self.queue = queue or TurnQueue(slots=getattr(self.gpu, "replicas", 1))
        # Striped locks: a fixed set shared by hash, so invented keys cannot grow memory and no lock
        # is ever replaced while a thread is about to take it. Critical sections are milliseconds.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        # Histories of recently used sessions; bounded, since any client can invent keys.
        self._cache = BoundedCache(MAX_CACHED)
        self._references = BoundedCache(MAX_CACHED)  # (key, sha256 of the PNG) -> stored name
        self._drift = BoundedCache(20_000)  # (session folder, original, step image) -> Drift
        self._pictures = BoundedCache(MAX_PICTURES)  # (key, image name) -> decoded picture
        self._evicted = BoundedCache(MAX_EVICTED)  # folder names of sessions the sweep deleted
        self.compactor = Compactor()  # compresses each turn's PNG after the turn is acknowledged
        self.changes = Changes()  # told every change of a followed session (live share links)
        self._last_sweep = 0.0

    def new(self) -> str:
        return new_key()

    def _lock(self, key: str) -> threading.Lock:
        return self._stripe(self.store.folder(key).name)  # validates the key; the folder's name is its hash

    def _stripe(self, folder_name: str) -> threading.Lock:
        """The lock of a session folder: by name, so that Store.sweep locks what an edit locks."""
        return self._locks[int(folder_name[:8], 16) % LOCK_STRIPES]

    def history(self, key: str) -> History:
        with self._lock(key):
            return self._load(key)

    def _load(self, key: str) -> History:
        h = self._cache.get(key)
        if h is not None:
            return h
        h = self.store.load(key, max_nodes=self.max_nodes)
        if not h.empty:  # an unknown key costs nothing to remember
            self._remember(key, h)
        elif self._evicted.get(self.store.folder(key).name):
            raise SessionRemoved(REMOVED)
        return h

    def _remember(self, key: str, h: History) -> None:
        self._cache.put(key, h)  # one cache for all sessions, with its own lock (session locks are striped)

    def _forget(self, key: str) -> None:
        self._cache.pop(key)

    def _commit(self, key: str, new: History) -> History:
        self.store.commit(key, new)
        self._remember(key, new)
        self.changes.publish(key, Change("history"))
        return new

    def sweep(self, keep: str | None = None, every_s: float = 600.0, room: int = 0) -> None:
        """Delete expired sessions and enforce the disk budget, at most every `every_s` seconds.

        Each session is deleted under its own lock, so an edit's commit never races the deletion.
        """
        now = time.time()
        if now - self._last_sweep < every_s:
            return
        self._last_sweep = now
        had_steps: set[str] = set()

        @contextlib.contextmanager
        def lock_for(name: str) -> Iterator[None]:
            with self._stripe(name):  # noted under the lock, where no commit can race the deletion
                if (self.store.root / name / HISTORY_FILE).is_file():
                    had_steps.add(name)
                yield

        removed = {p.name for p in self.store.sweep(now=now, keep=keep, lock_for=lock_for, room=room)}
        self._cache.drop(lambda k: self.store.folder(k).name in removed)
        for name in removed & had_steps:  # a leftover folder with no steps was no session anyone saw
            self._evicted.put(name, True)

    def make_room(self, key: str, nbytes: int, what: str = "the new picture") -> None:
        """Before writing `nbytes` for `key` (outside any session lock: the sweep takes them): refuse
        what would pass the session's share of the disk (`what` names it in the refusal); run the
        periodic sweep, which API traffic thus triggers too; when the write would pass the disk
        budget, sweep now (least recently used first) and refuse in plain words if that is not enough."""
        self.store.check_session_room(key, nbytes, what)
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

    def image(self, key: str, node_id: int | None = None) -> Image.Image:
        h = self.history(key)
        nid = h.current if node_id is None else node_id
        if nid is None:
            raise UserError("this session has no image yet: upload one or describe one in a prompt")
        name = h.node(nid).image
        picture = self._pictures.get((key, name))
        if picture is not None:
            return picture.copy()
        return Image.open(io.BytesIO(self.store.read_image_bytes(key, name)))

    def keep_picture(self, key: str, name: str, picture: Image.Image) -> None:
        """Remember a just-stored picture decoded (see MAX_PICTURES and KEEP_PIXELS)."""
        if picture.width * picture.height <= KEEP_PIXELS:
            self._pictures.put((key, name), picture)

    def image_path(self, key: str, node_id: int | None = None, thumbnail: bool = False) -> str:
        """A path the web server may serve for a step's PNG (or its timeline thumbnail)."""
        h = self.history(key)
        nid = h.current if node_id is None else node_id
        if nid is None:
            raise UserError("this session has no image yet")
        return str(self.store.public_path(key, h.node(nid).image, thumbnail=thumbnail))

    def undo(self, key: str) -> History:
        return self._update(key, History.undo)

    def redo(self, key: str) -> History:
        return self._update(key, History.redo)

    def jump(self, key: str, node_id: int) -> History:
        if isinstance(node_id, bool) or not isinstance(node_id, int):
            raise UserError(f"step must be a step number, got {node_id!r}")
        return self._update(key, lambda h: h.jump(node_id))

    def pick(self, key: str, node_id: int) -> History:
        """Make one candidate of a variations group the current step: the next instruction continues
        from it (the others stay in the tree, as siblings)."""
        if isinstance(node_id, bool) or not isinstance(node_id, int):
            raise UserError(f"step must be a step number, got {node_id!r}")

        def op(h: History) -> History:
            if not h.group(node_id):
                raise UserError(f"step {node_id} is not one of a group of variations: to go to any step, use jump")
            return h.jump(node_id)
        return self._update(key, op)

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
            self._evicted.pop(self.store.folder(key).name)  # starting over: the key is a new, empty session
        self.shares.revoke(key)  # a link to deleted steps must not show a later picture
        self.changes.publish(key, Change("links"))
