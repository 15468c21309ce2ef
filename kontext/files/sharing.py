"""Read-only share links: a token that shows one tree of one session, and nothing else.

The token is not the session key and does not reveal it: it names an entry kept on the server that
holds the key and the tree's first step. Whoever has the token can read that tree (steps, images, an
export), never change it: every endpoint that changes a session takes the key, and a token is not a
key (it has another form, so it is refused as one). The owner revokes a link by deleting its entry;
a revoked or invented token is simply unknown. File names of uploads are the owner's to share: a
link shows them only when made with `names=True` (`nameless_view` hides them otherwise).

The entries live in `<data>/shares.jsonl` (never served), an append-only log: one line per new or
changed link, one per revoked link, each appended and fsynced on its own, so a new link costs one
short write however many links there are. The log is rewritten with only its live links when dead
lines outnumber them. A line cut short by a crash is skipped (logged); so is a damaged one: sharing
and "start over" must keep working. Each process follows the log's growth, and reads it whole again
when another one rewrote it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kontext.core.atomic import write_atomic
from kontext.core.history import History, Node
from kontext.errors import UnknownShare, UserError
from kontext.files.importer import renumbered_png  # swaps a PNG's text chunks, the pixels untouched
from kontext.files.store import Store

# "v_" + 48 random bytes (384 bits) in url-safe base64: 66 characters, longer than any session key
# may be (kontext.files.store.KEY_RE), so a token is refused wherever a key is asked for.
TOKEN_RE = re.compile(r"v_[A-Za-z0-9_-]{64}")
LOG_NAME = "shares.jsonl"
OLD_NAME = "shares.json"  # before the log: every link in one JSON table, rewritten for each link
MAX_SHARES = 10_000  # live links in all: the last line behind the per-visitor caps
MAX_PER_SESSION = 20
# Links one network address may make, in sessions' worth (a new session costs nothing, an address
# does); 0: no cap. Visitors behind one proxy share an address (see README, "Per-visitor limits").
PER_ADDRESS = 2.0
COMPACT_SLACK = 256  # dead lines tolerated beyond the live ones before the log is rewritten
log = logging.getLogger("kontext.files.sharing")


@dataclass(frozen=True)
class Share:
    token: str
    key: str
    root: int  # the shared tree's first step
    image: str  # its stored image: after "start over" the same id can name another picture
    created: float
    names: bool = False  # whether the link shows the uploads' file names
    live: bool = False  # whether its viewers follow the owner's steps as they happen (else frozen)


def address_tag(address: str | None) -> str | None:
    """How a link records the address it was made from: hashed, so the log lists no address."""
    return hashlib.sha256(f"kontext-share:{address}".encode()).hexdigest()[:16] if address else None


def _entry(record: Any) -> dict[str, Any] | None:
    """A log line's link (without its token), or None if it is not a well-formed one."""
    if not (isinstance(record, dict) and isinstance(record.get("token"), str) and isinstance(record.get("key"), str)
            and isinstance(record.get("root"), int) and not isinstance(record.get("root"), bool)):
        return None
    created = record.get("created", 0)
    return {"key": record["key"], "root": record["root"], "image": str(record.get("image", "")),
            "created": float(created) if isinstance(created, (int, float)) else 0.0,
            "names": record.get("names") is True, "live": record.get("live") is True,
            "by": record.get("by") if isinstance(record.get("by"), str) else None}


class Shares:
    """The links, kept in the log at `path`. `per_session`: links one session may have;
    `per_address`: links one address may make, as a multiple of `per_session` (0: no cap)."""

    def __init__(self, path: str | Path, per_session: int = MAX_PER_SESSION, per_address: float = PER_ADDRESS):
        self.path = Path(path)
        self.per_session = per_session
        self.per_address = per_address
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, set[str]] = {}
        self._by_address: dict[str, set[str]] = {}
        self._file: tuple[int, int] | None = None  # (device, inode) of the log as read
        self._pos = 0  # bytes of it applied
        self._lines = 0  # lines in it, live or dead

    # --- the log -----------------------------------------------------------------------------------
    def _put(self, token: str, entry: dict[str, Any]) -> None:
        self._drop(token)
        self._entries[token] = entry
        self._by_key.setdefault(entry["key"], set()).add(token)
        if entry["by"]:
            self._by_address.setdefault(entry["by"], set()).add(token)

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        for index, k in ((self._by_key, entry["key"]), (self._by_address, entry["by"])):
            tokens = index.get(k)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del index[k]

    def _reset(self) -> None:
        self._entries, self._by_key, self._by_address = {}, {}, {}
        self._file, self._pos, self._lines = None, 0, 0

    def _apply(self, line: bytes) -> None:
        self._lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("del"), str):
            self._drop(record["del"])
        elif (entry := _entry(record)) is not None:
            self._put(record["token"], entry)
        elif line.strip():
            log.warning("share links log %s: skipped a damaged line (its link, if any, is lost)", self.path)

    def _sync(self) -> None:
        """Bring the links up to date with the log (the caller holds the lock)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reset()
            self._migrate()
            return
        if (st.st_dev, st.st_ino) != self._file or st.st_size < self._pos:  # rewritten: read it whole
            self._reset()
            self._file = (st.st_dev, st.st_ino)
        if st.st_size > self._pos:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read(st.st_size - self._pos)
            end = chunk.rfind(b"\n") + 1  # a line not ended yet (being written, or cut by a crash) waits
            for line in chunk[:end].splitlines():
                self._apply(line)
            self._pos += end

    def _migrate(self) -> None:
        """The links of the old single table, if there is one, become the log's first lines."""
        old = self.path.with_name(OLD_NAME)
        try:
            data = json.loads(old.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            log.exception("share links file %s is damaged; starting with no links", old)
            data = {}
        for token, record in (data.items() if isinstance(data, dict) else ()):
            entry = _entry({**record, "token": token} if isinstance(record, dict) else None)
            if entry is not None and TOKEN_RE.fullmatch(token):
                self._put(token, entry)
        self._compact()
        old.unlink(missing_ok=True)

    def _compact(self) -> None:
        """Rewrite the log with one line per live link (atomically, durably)."""
        data = b"".join(json.dumps({"token": t, **e}).encode() + b"\n" for t, e in self._entries.items())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, data, durable=True, mode=0o600)
        st = os.stat(self.path)
        self._file, self._pos, self._lines = (st.st_dev, st.st_ino), len(data), len(self._entries)

    def _append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records durably, then read them back (with anything another process appended)."""
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        if not data:
            return
        if not self.path.exists():
            self._compact()  # creates the log owner-only and makes its folder entry durable
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a line cut short, so that it cannot swallow this one
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._sync()
        if self._lines > 2 * len(self._entries) + COMPACT_SLACK:
            self._compact()

    def _record(self, token: str) -> dict[str, Any]:
        return {"token": token, **self._entries[token]}

    def _share(self, token: str) -> Share:
        e = self._entries[token]
        return Share(token, e["key"], e["root"], e["image"], e["created"], e["names"], e.get("live", False))

    def _drop_dead(self, tokens: Iterable[str], alive: Callable[[str], bool]) -> None:
        """Revoke the links among `tokens` whose session is gone (they make room)."""
        self._append({"del": t} for t in [t for t in tokens if not alive(self._entries[t]["key"])])

    # --- links -------------------------------------------------------------------------------------
    def share(self, key: str, root: int, image: str, alive: Callable[[str], bool] = lambda key: True, *,
              names: bool = False, address: str | None = None, live: bool = False) -> Share:
        """The link for `key`'s tree starting at `root`: the existing one (showing file names and
        following live now as `names` and `live` say: the owner's latest choice), else a new token.
        `address`: the client's, for the per-address cap. `alive(key)` says whether a session still
        exists: links of deleted sessions go when room is needed."""
        if not isinstance(names, bool):
            raise UserError(f"names must be true or false, got {names!r}")
        if not isinstance(live, bool):
            raise UserError(f"live must be true or false, got {live!r}")
        by = address_tag(address)
        with self._lock:
            self._sync()
            for token in self._by_key.get(key, ()):
                e = self._entries[token]
                if e["root"] == root and e["image"] == image:
                    if e["names"] != names or e.get("live", False) != live:
                        self._append([{**self._record(token), "names": names, "live": live}])
                    return self._share(token)
            if len(self._by_key.get(key, ())) >= self.per_session:
                raise UserError(f"this session already has {self.per_session} share links: press Stop sharing, "
                                "then share again")
            cap = int(self.per_session * self.per_address)
            if by and self.per_address > 0 and len(self._by_address.get(by, ())) >= cap:
                self._drop_dead(list(self._by_address[by]), alive)
                if len(self._by_address.get(by, ())) >= cap:
                    raise UserError(f"{cap} share links were already made from your network address (at most "
                                    f"{self.per_session} per session, {cap} per address): press Stop sharing in "
                                    "sessions you no longer need to share, then share again")
            if len(self._entries) >= MAX_SHARES:
                self._drop_dead(list(self._entries), alive)
            if len(self._entries) >= MAX_SHARES:
                raise UserError(f"this server already keeps {MAX_SHARES:,} share links: try again later")
            token = "v_" + secrets.token_urlsafe(48)
            self._append([{"token": token, "key": key, "root": root, "image": image, "created": time.time(),
                           "names": names, "live": live, "by": by}])
            return self._share(token)

    def revoke(self, key: str, root: int | None = None) -> int:
        """Remove `key`'s links (only the one for `root`, if given); return how many went."""
        with self._lock:
            self._sync()
            gone = [t for t in self._by_key.get(key, ()) if root is None or self._entries[t]["root"] == root]
            self._append({"del": t} for t in gone)
            return len(gone)

    def of(self, key: str) -> list[Share]:
        with self._lock:
            self._sync()
            return [self._share(t) for t in self._by_key.get(key, ())]

    def resolve(self, token: object) -> Share:
        """The share a token names, or UnknownShare (same words for revoked and invented links)."""
        if isinstance(token, str) and TOKEN_RE.fullmatch(token):
            with self._lock:
                self._sync()
                if token in self._entries:
                    return self._share(token)
        raise UnknownShare("this share link does not work: it was revoked by its owner, or it never existed")


# --- file names ------------------------------------------------------------------------------------
def nameless_name(image: str) -> str:
    """The stored name of an upload's copy without its file name: derived from the image's own
    (unguessable) name, so the copy's address stays the same when it has to be made again."""
    return hashlib.sha256(f"nameless:{image}".encode()).hexdigest()[:32] + ".png"


def nameless_view(store: Store, key: str, h: History) -> History:
    """`h` (a shared view of `key`) without the uploads' file names: an upload step shows as "original"
    (like one uploaded without a name), and its picture is a copy of the stored PNG whose text chunks
    say the same (the stored PNG records the name); only those chunks differ, the pixels are copied as
    they are. The copy lies beside the stored images under a name derived from the original's, made
    when missing: the store's clean-up removes images no history names once they are an hour old, and
    the next look at the link makes it again at the same address."""
    nodes: dict[int, Node] = {}
    for n in h.nodes.values():
        if n.kind == "upload" and ("source" in n.extra or n.prompt != "original"):
            n = replace(n, prompt="original", extra={k: v for k, v in n.extra.items() if k != "source"})
            copy = store.image_path(key, nameless_name(n.image))
            if not copy.is_file():
                png = renumbered_png(store.read_image_bytes(key, n.image), n, {n.id: n.id})
                store.check_room(len(png))  # a stored image like the others: within the disk budget
                write_atomic(copy, png, durable=True)
                store._count(len(png))  # the store's tally (its clean-up takes the copy off again)
            n = replace(n, image=copy.name)
        nodes[n.id] = n
    return replace(h, nodes=MappingProxyType(nodes))
