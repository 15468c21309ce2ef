"""Durable per-session storage: image files plus one history.json per session, replaced atomically.

Layout: ROOT/<sha256(key)[:32]>/history.json and ROOT/<...>/images/<uuid>.png. An image is
written and fsynced before the history that names it is committed, and history.json is swapped in
with os.replace, so a crash (even kill -9) leaves either the old history or the new one, never a
half-written turn. Images no committed history names (a crash between the two writes) are removed
when the session is next loaded. Folders are named by a hash of the key, so listing the folder
does not reveal anyone's session key.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kontext.core.atomic import write_atomic
from kontext.core.history import History, attached_images
from kontext.errors import UserError

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
IMAGE_RE = re.compile(r"^[0-9a-f]{32}\.png$")
FOLDER_RE = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_MAX_IDLE_S = 7 * 24 * 3600
DEFAULT_MAX_BYTES = 20 * 2**30
# One session's share of the disk: a 200-step session at 1 MP is about 200 MB (BENCHMARKS.md), so
# a full history fits with room for larger uploads; one visitor cannot fill the whole budget alone.
DEFAULT_MAX_SESSION_BYTES = 512 * 2**20
HISTORY_FILE = "history.json"
PUBLIC = "public"  # not a session folder name (those are 32 hex digits)
THUMB_SIDE = 256  # timeline thumbnails, pixels on the long side
BUSY_S = 600  # the disk budget never deletes a session used this recently


def new_key() -> str:
    """An unguessable session key (256 bits)."""
    return secrets.token_hex(32)


def check_key(key: object) -> str:
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise UserError("session key is missing or malformed; start a new session")
    return key


def referenced_images(history: History) -> list[str]:
    """Reference images and masks that steps were made with (kontext.core.history.attached_images)."""
    return [name for n in history.nodes.values() for name in attached_images(n.extra)]




def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


class Store:
    def __init__(self, root: str | Path, max_idle_s: float = DEFAULT_MAX_IDLE_S,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES):
        if max_idle_s <= 0:
            raise UserError(f"max_idle_s must be positive, got {max_idle_s}")
        if max_bytes <= 0:
            raise UserError(f"max_bytes must be positive, got {max_bytes}")
        if max_session_bytes <= 0:
            raise UserError(f"max_session_bytes must be positive, got {max_session_bytes}")
        self.root = Path(root)
        self.max_idle_s = max_idle_s
        self.max_bytes = max_bytes
        self.max_session_bytes = max_session_bytes
        self._sweep_lock = threading.Lock()
        self._used: int | None = None  # bytes under root; counted once, then kept up to date
        self._used_lock = threading.Lock()

    # --- paths ---------------------------------------------------------------------------------
    def folder(self, key: str) -> Path:
        digest = hashlib.sha256(check_key(key).encode()).hexdigest()[:32]
        return self.root / digest

    def image_path(self, key: str, name: str) -> Path:
        if not isinstance(name, str) or not IMAGE_RE.fullmatch(name):
            raise UserError(f"image reference {name!r} is not one this store wrote")
        return self.folder(key) / "images" / name

    # --- reading -------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return (self.folder(key) / HISTORY_FILE).is_file()

    def load(self, key: str, max_nodes: int | None = None) -> History:
        """The committed history of `key`, or an empty one for a new session."""
        path = self.folder(key) / HISTORY_FILE
        if not path.is_file():
            return History(max_nodes=max_nodes) if max_nodes else History()
        history = History.from_dict(json.loads(path.read_text("utf-8")), max_nodes=max_nodes)
        self._remove_orphans(key, history)
        return history

    def read_image_bytes(self, key: str, name: str) -> bytes:
        return self.image_path(key, name).read_bytes()

    # --- the disk budget ---------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes of everything under root (images, thumbnails, histories, leftovers)."""
        with self._used_lock:
            if self._used is None:
                self._used = sum(r[2] for r in self.usage())
            return self._used

    def _count(self, nbytes: int) -> None:
        with self._used_lock:
            if self._used is not None:
                self._used = max(0, self._used + nbytes)

    def has_room(self, nbytes: int) -> bool:
        return self.used_bytes() + nbytes <= self.max_bytes

    def check_room(self, nbytes: int) -> None:
        """Refuse a write of `nbytes` that would take the store past its budget."""
        if not self.has_room(nbytes):
            raise UserError(f"the server is out of space for sessions ({_size(self.used_bytes())} of "
                            f"{_size(self.max_bytes)} in use): try again later, or export your work and start "
                            "over to free room")

    def session_bytes(self, key: str) -> int:
        """Bytes of one session's folder (images, thumbnails, history): what counts against its share."""
        total, stack = 0, [self.folder(key)]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except FileNotFoundError:
                continue
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    else:
                        total += e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # removed meanwhile (an orphan, an unused reference)
                    continue
        return total

    def check_session_room(self, key: str, nbytes: int, what: str = "the new picture") -> None:
        """Refuse a write of `nbytes` (`what`, in words) that would take the session past its share of the disk."""
        used = self.session_bytes(key)
        if used + nbytes > self.max_session_bytes:
            raise UserError(f"{what} would take {_size(nbytes)}, but a session may keep at most "
                            f"{_size(self.max_session_bytes)} on this server and this one holds {_size(used)}: "
                            "export your work and start over (or continue in a new session) to make room")

    # --- writing -------------------------------------------------------------------------------
    def save_image(self, key: str, png: bytes) -> str:
        """Write one PNG durably; return its name for a node's `image` field. Within the budget only."""
        self.check_room(len(png))
        name = f"{uuid.uuid4().hex}.png"
        path = self.image_path(key, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, png, durable=True)
        self._count(len(png))
        return name

    def replace_image(self, key: str, name: str, png: bytes) -> bool:
        """Put a smaller encoding of the same picture in place of a stored image (and of its public
        link), atomically; False, changing nothing, if the image is gone or `png` is not smaller.
        The caller holds the session's lock, so a deletion cannot interleave."""
        path = self.image_path(key, name)
        try:
            old = path.stat().st_size
        except FileNotFoundError:
            return False
        if len(png) >= old:
            return False
        write_atomic(path, png, durable=True)
        self._count(len(png) - old)
        public = self.public_dir / name
        if public.is_file():  # a hard link still names the old file: point it at the new one
            tmp = public.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, public)
        return True

    def _thumb_file(self, key: str, name: str) -> Path:
        src = self.image_path(key, name)
        return src.parent.parent / "thumbs" / f"{src.stem}.jpg"

    def save_thumbnail(self, key: str, name: str, image: Any, side: int = THUMB_SIDE) -> Path:
        """The timeline's thumbnail of a stored image, made from the picture already in memory (a
        finished turn's), so the redraw after a turn decodes nothing."""
        thumb = self._thumb_file(key, name)
        if not thumb.is_file():
            self._write_thumbnail(thumb, image, side)
        return thumb

    def thumbnail_path(self, key: str, name: str, side: int = THUMB_SIDE) -> Path:
        """A small JPEG of a stored image for the timeline, made on first use and kept beside it
        (the timeline then sends kilobytes per step, not the full picture)."""
        thumb = self._thumb_file(key, name)
        if not thumb.is_file():
            from PIL import Image

            with Image.open(self.image_path(key, name)) as img:
                self._write_thumbnail(thumb, img, side)
        return thumb

    def _write_thumbnail(self, thumb: Path, image: Any, side: int) -> None:
        from PIL import Image

        img = image.convert("RGB")  # a copy: the caller's picture is left as it was
        img.thumbnail((side, side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        thumb.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(thumb, buf.getvalue(), durable=True)
        self._count(buf.tell())

    # --- serving -----------------------------------------------------------------------------
    @property
    def public_dir(self) -> Path:
        """The one folder the web server may serve: links to images, named by their random names.

        Session folders (with their history.json and prompts) are never served: knowing a folder
        name is not enough to read anything, and an image needs its own unguessable name.
        """
        return self.root / PUBLIC

    def public_path(self, key: str, name: str, thumbnail: bool = False) -> Path:
        """A path inside `public_dir` for a stored image (or its thumbnail), to hand to the UI."""
        src = self.thumbnail_path(key, name) if thumbnail else self.image_path(key, name)
        dst = self.public_dir / src.name
        if not dst.is_file():
            self.public_dir.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)  # same file, no extra disk
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                with open(src, "rb") as f:
                    write_atomic(dst, lambda out: shutil.copyfileobj(f, out))
        return dst

    def _unpublish(self, folder: Path) -> None:
        """Remove the public links of every image and thumbnail in a session folder."""
        for sub in ("images", "thumbs"):
            d = folder / sub
            if d.is_dir():
                for p in d.iterdir():
                    (self.public_dir / p.name).unlink(missing_ok=True)

    def discard_images(self, key: str, names: object) -> None:
        """Remove images no history names (a failed import's); drop the folder if that left it empty."""
        for name in names:
            path = self.image_path(key, name)
            for p in (path, path.parent.parent / "thumbs" / f"{path.stem}.jpg"):
                (self.public_dir / p.name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    size = p.stat().st_size
                    p.unlink()
                    self._count(-size)
        folder = self.folder(key)
        with contextlib.suppress(OSError):
            (folder / "thumbs").rmdir()
        for d in (folder / "images", folder):
            try:
                d.rmdir()  # only succeeds when empty: a session with a history keeps its folder
            except OSError:
                break

    def commit(self, key: str, history: History) -> None:
        """Make `history` the session's committed state (every image it names must be saved)."""
        folder = self.folder(key)
        for node in history.nodes.values():
            if not self.image_path(key, node.image).is_file():
                raise UserError(f"step {node.id} names image {node.image}, which is not stored")
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(history.to_dict()).encode("utf-8")
        path = folder / HISTORY_FILE
        old = path.stat().st_size if path.is_file() else 0
        write_atomic(path, data, durable=True)  # never refused: a commit's images were already admitted
        self._count(len(data) - old)

    def touch(self, key: str) -> None:
        path = self.folder(key) / HISTORY_FILE
        if path.is_file():
            os.utime(path)

    def delete(self, key: str) -> None:
        self._remove(self.folder(key))

    def _remove(self, folder: Path) -> None:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        self._unpublish(folder)
        shutil.rmtree(folder, ignore_errors=True)
        self._count(-size)

    def _remove_orphans(self, key: str, history: History) -> None:
        images = self.folder(key) / "images"
        if not images.is_dir():
            return
        named = {n.image for n in history.nodes.values()} | set(referenced_images(history))
        cutoff = time.time() - 3600  # an edit in flight may have written its image a moment ago
        for p in images.iterdir():
            if p.name not in named and p.stat().st_mtime < cutoff:
                self._count(-p.stat().st_size)
                (self.public_dir / p.name).unlink(missing_ok=True)
                p.unlink(missing_ok=True)
        thumbs = images.parent / "thumbs"
        if thumbs.is_dir():
            for p in thumbs.iterdir():
                if not (images / f"{p.stem}.png").is_file():
                    (self.public_dir / p.name).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        self._count(-p.stat().st_size)
                        p.unlink()

    # --- expiry --------------------------------------------------------------------------------
    @staticmethod
    def _last_use(folder: Path) -> float | None:
        """The newest modification time in a session folder (None when it is gone)."""
        try:
            return max([p.stat().st_mtime for p in folder.rglob("*") if p.is_file()] + [folder.stat().st_mtime])
        except OSError:
            return None

    def usage(self) -> list[tuple[Path, float, int]]:
        """(folder, last use, bytes) of every session, oldest first. Last use is the newest file
        (an edit in flight writes its image before its history), so busy sessions look recent."""
        rows = []
        if not self.root.is_dir():
            return rows
        for folder in self.root.iterdir():
            # Only folders this store made: a data dir shared with anything else must stay safe.
            if not folder.is_dir() or not FOLDER_RE.fullmatch(folder.name):
                continue
            try:
                stats = [p.stat() for p in folder.rglob("*") if p.is_file()]
                last = max([st.st_mtime for st in stats] + [folder.stat().st_mtime])
            except OSError:  # files come and go while sessions are used: look again next time
                continue
            rows.append((folder, last, sum(st.st_size for st in stats)))
        return sorted(rows, key=lambda r: r[1])

    def sweep(self, now: float | None = None, keep: str | None = None,
              lock_for: Callable[[str], Any] | None = None, room: int = 0) -> list[Path]:
        """Delete sessions idle longer than max_idle_s, leftovers of failed turns (a folder with no
        history, untouched for BUSY_S), then the least recently used until under max_bytes, sparing
        `keep` (a session key: the one being used) and sessions used in the last few minutes.
        `lock_for(folder name)` gives the lock to hold while a folder is deleted. `room`: bytes about
        to be written, which must fit too.
        """
        now = time.time() if now is None else now
        kept = self.folder(keep) if keep else None
        removed = []
        with self._sweep_lock:
            rows = self.usage()
            total = sum(r[2] for r in rows)
            def doomed(folder: Path, last: float) -> bool:
                if folder == kept:
                    return False
                expired = now - last > self.max_idle_s
                leftover = not (folder / HISTORY_FILE).is_file() and now - last > BUSY_S
                over = total + room > self.max_bytes and now - last > BUSY_S
                return expired or leftover or over

            for folder, last, size in rows:
                if not doomed(folder, last):
                    continue
                with lock_for(folder.name) if lock_for else contextlib.nullcontext():
                    # Look again under the session's lock: it may have been used since the scan.
                    fresh = self._last_use(folder)
                    if fresh is None or not doomed(folder, fresh):
                        continue
                    self._unpublish(folder)
                    shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
                total -= size
            with self._used_lock:
                self._used = total  # the sweep counted everything anyway
        return removed
