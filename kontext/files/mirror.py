"""Mirror the session folder to a private Hugging Face dataset, so a restarted Space keeps its sessions.

A Space's own disk is empty after every restart (a persistent disk is no longer a default offer).
With `--mirror owner/name` and a token that may write there, the app copies every committed step
to that dataset repo (created private if missing) within `every_s` seconds, and once more when it
shuts down; at start-up it brings back what the dataset holds before anything is read. Off by default.

What is copied is what the store has committed: each session's history.json and the images it
names (images are written before their history and never change their pixels, so a history is never copied
without its images); half-written files, orphans and temp files are not. A session deleted here
(start over, expiry, the disk budget) is deleted there at the next push. `.browser-secret` goes
along, so the keys browsers hold still open their sessions after the restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

from kontext.core.atomic import write_atomic
from kontext.core.history import History
from kontext.errors import UserError
from kontext.files.store import FOLDER_RE, HISTORY_FILE, IMAGE_RE, referenced_images

log = logging.getLogger("kontext.files.mirror")
SECRET_FILE = ".browser-secret"


Content = Path | bytes  # a file to send, or bytes already read (a history, as it was parsed)


class Remote(Protocol):
    def files(self) -> set[str]: ...
    def push(self, adds: dict[str, Content], deletes: list[str], message: str) -> None: ...
    def pull(self, dest: Path) -> None: ...


def _bytes(content: Content) -> bytes:
    return content if isinstance(content, bytes) else content.read_bytes()


class FolderRemote:
    """A local folder standing in for the dataset (tests, or a mounted bucket)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def files(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def push(self, adds: dict[str, Content], deletes: list[str], message: str) -> None:
        for rel, src in adds.items():
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dst, _bytes(src))  # a uniquely named temporary file: two pushes never share one
        for rel in deletes:
            (self.root / rel).unlink(missing_ok=True)
        for d in sorted({p.parent for p in self.root.rglob("*")}, key=lambda p: -len(p.parts)):
            if d != self.root and d.is_dir() and not any(d.iterdir()):
                d.rmdir()

    def pull(self, dest: Path) -> None:
        for rel in self.files():
            dst = dest / rel
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.root / rel, dst)  # keeps the time of last use, which expiry reads


class HubRemote:
    """A private dataset repo on the Hugging Face Hub, written with one commit per push."""

    def __init__(self, repo_id: str, token: str | None):
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.api = HfApi(token=token)
        self.api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)

    def files(self) -> set[str]:
        return set(self.api.list_repo_files(self.repo_id, repo_type="dataset")) - {".gitattributes"}

    def push(self, adds: dict[str, Content], deletes: list[str], message: str) -> None:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        # Paths stream from disk (a first push can be gigabytes); histories go as the bytes read.
        ops: list[Any] = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=src)
                          for rel, src in sorted(adds.items(), key=lambda kv: kv[0].endswith(HISTORY_FILE))]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in deletes]
        self.api.create_commit(self.repo_id, ops, commit_message=message, repo_type="dataset")

    def pull(self, dest: Path) -> None:
        from huggingface_hub import snapshot_download

        have = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} if dest.is_dir() else set()
        missing = sorted(self.files() - have)
        if missing:
            snapshot_download(self.repo_id, repo_type="dataset", local_dir=dest, allow_patterns=missing,
                              token=self.api.token)


def committed_files(root: Path) -> tuple[dict[str, Content], set[str]]:
    """Every file a committed session consists of, keyed by its path relative to `root` (each
    history as the bytes that were parsed, so it never names an image that is not sent with it),
    and the session folders whose history could not be read (left alone on the remote)."""
    out: dict[str, Content] = {}
    unreadable: set[str] = set()
    if not root.is_dir():
        return out, unreadable
    secret = root / SECRET_FILE
    if secret.is_file():
        out[SECRET_FILE] = secret
    for folder in root.iterdir():
        history = folder / HISTORY_FILE
        if not FOLDER_RE.fullmatch(folder.name) or not history.is_file():
            continue
        try:
            data = history.read_bytes()
            h = History.from_dict(json.loads(data))
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.add(folder.name)  # replaced meanwhile, or damaged: never delete the good copy there
            continue
        for name in {n.image for n in h.nodes.values()} | set(referenced_images(h)):
            if IMAGE_RE.fullmatch(name) and (folder / "images" / name).is_file():
                out[f"{folder.name}/images/{name}"] = folder / "images" / name
        out[f"{folder.name}/{HISTORY_FILE}"] = data
    return out, unreadable


def _digest(content: Content) -> str:
    return hashlib.sha256(_bytes(content)).hexdigest()


class Mirror:
    def __init__(self, root: str | Path, remote: Remote, every_s: float = 60.0):
        if every_s <= 0:
            raise UserError(f"every_s must be positive, got {every_s}")
        self.root = Path(root)
        self.remote = remote
        self.every_s = every_s
        self._pushed: dict[str, str] | None = None  # remote path -> sha256 of what we sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> int:
        """Bring back what the remote holds and this disk lacks; return how many sessions it has."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.remote.pull(self.root)
        return sum(1 for p in self.root.iterdir() if FOLDER_RE.fullmatch(p.name) and (p / HISTORY_FILE).is_file())

    def push(self) -> tuple[int, int]:
        """Send what changed since the last push; return (files added, files deleted)."""
        with self._lock:
            if self._pushed is None:
                self._pushed = {rel: "" for rel in self.remote.files()}  # unknown content: compare by name
            local, unreadable = committed_files(self.root)
            adds: dict[str, Content] = {}
            digests: dict[str, str] = {}
            for rel, path in local.items():
                if rel.endswith(".png") and rel in self._pushed:
                    # Images never change their pixels once written. A turn's PNG is compressed a
                    # moment after its answer (kontext/files/compactor.py): a push in that moment
                    # sends the larger, equally complete form, and it is not sent again.
                    continue
                try:
                    digests[rel] = _digest(path)
                except OSError:
                    continue
                if self._pushed.get(rel) != digests[rel]:
                    adds[rel] = path
            deletes = sorted(rel for rel in set(self._pushed) - set(local) if rel.split("/")[0] not in unreadable)
            if not adds and not deletes:
                return 0, 0
            self.remote.push(adds, deletes, f"kontext sessions: {len(adds)} added, {len(deletes)} deleted")
            for rel in deletes:
                self._pushed.pop(rel, None)
            for rel in adds:
                self._pushed[rel] = digests[rel]
            return len(adds), len(deletes)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.push()
            except Exception:  # noqa: BLE001 - a failed push is retried next time; the app goes on
                log.exception("mirroring sessions failed; will retry")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kontext-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background pushes and push once more (on shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.push()
