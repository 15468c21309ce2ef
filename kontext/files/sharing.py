"""Read-only share links: a token that shows one tree of one session, and nothing else.

The token is not the session key and does not reveal it: it names an entry kept on the server
(`<data>/shares.json`, never served) that holds the key and the tree's first step. Whoever has the
token can read that tree (steps, images, an export), never change it: every endpoint that changes a
session takes the key, and a token is not a key (it has another form, so it is refused as one).
The owner revokes a link by deleting its entry; a revoked or invented token is simply unknown.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kontext.core.atomic import write_atomic
from kontext.errors import UnknownShare, UserError

# "v_" + 48 random bytes (384 bits) in url-safe base64: 66 characters, longer than any session key
# may be (kontext.files.store.KEY_RE), so a token is refused wherever a key is asked for.
TOKEN_RE = re.compile(r"v_[A-Za-z0-9_-]{64}")
MAX_SHARES = 10_000
MAX_PER_SESSION = 20
log = logging.getLogger("kontext.files.sharing")


@dataclass(frozen=True)
class Share:
    token: str
    key: str
    root: int  # the shared tree's first step
    image: str  # its stored image: after "start over" the same id can name another picture
    created: float



class Shares:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._memo: tuple[float, dict[str, dict]] | None = None  # (file mtime, entries)

    def _read(self) -> dict[str, dict]:
        """The entries (a copy), re-read only when the file changed. A damaged file counts as empty
        (logged): sharing and "start over" must keep working; its links are lost."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._memo is not None and self._memo[0] == mtime:
            return dict(self._memo[1])
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            log.exception("share links file %s is damaged; starting with no links", self.path)
            data = {}
        data = data if isinstance(data, dict) else {}
        self._memo = (mtime, data)
        return dict(data)

    def _write(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data).encode("utf-8"), durable=True, mode=0o600)
        self._memo = None

    def share(self, key: str, root: int, image: str, alive: Callable[[str], bool] = lambda key: True) -> Share:
        """The link for `key`'s tree starting at `root`: the existing one, else a new token. `alive(key)`
        says whether a session still exists: links of deleted sessions go when room is needed."""
        with self._lock:
            data = self._read()
            for token, entry in data.items():
                if entry.get("key") == key and entry.get("root") == root and entry.get("image") == image:
                    return Share(token, key, root, image, float(entry.get("created", 0)))
            if sum(e.get("key") == key for e in data.values()) >= MAX_PER_SESSION:
                raise UserError(f"this session already has {MAX_PER_SESSION} share links: press Stop sharing, "
                                "then share again")
            if len(data) >= MAX_SHARES:
                data = {t: e for t, e in data.items() if alive(str(e.get("key")))}
            if len(data) >= MAX_SHARES:
                raise UserError(f"this server already keeps {MAX_SHARES:,} share links: try again later")
            token = "v_" + secrets.token_urlsafe(48)
            entry = {"key": key, "root": root, "image": image, "created": time.time()}
            data[token] = entry
            self._write(data)
            return Share(token, key, root, image, entry["created"])

    def revoke(self, key: str, root: int | None = None) -> int:
        """Remove `key`'s links (only the one for `root`, if given); return how many went."""
        with self._lock:
            data = self._read()
            gone = [t for t, e in data.items() if e.get("key") == key and (root is None or e.get("root") == root)]
            for t in gone:
                del data[t]
            if gone:
                self._write(data)
            return len(gone)

    def of(self, key: str) -> list[Share]:
        return [Share(t, e["key"], int(e["root"]), str(e.get("image", "")), float(e.get("created", 0)))
                for t, e in self._read().items() if e.get("key") == key]

    def resolve(self, token: object) -> Share:
        """The share a token names, or UnknownShare (same words for revoked and invented links)."""
        if isinstance(token, str) and TOKEN_RE.fullmatch(token):
            entry = self._read().get(token)
            if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("root"), int):
                return Share(token, entry["key"], entry["root"], str(entry.get("image", "")),
                             float(entry.get("created", 0)))
        raise UnknownShare("this share link does not work: it was revoked by its owner, or it never existed")
