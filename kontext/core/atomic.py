"""Writing a file so that a crash (even kill -9) or a full disk leaves the old file or the new one,
never half of one: write a uniquely named temporary file beside it, then rename it into place."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(path: str | Path, data: bytes | Callable[[BinaryIO], Any], *, durable: bool = False,
                 mode: int | None = None, suffix: str = ".tmp") -> Any:
    """Put `data` (bytes, or a function that writes to the open file; its result is returned) at `path`.

    durable: fsync the file and its folder, so the write survives a power cut once this returns.
    mode: create the file with these permissions (e.g. 0o600 for a secret).
    suffix: the temporary file's ending (some writers want a particular one).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            result = data(f) if callable(data) else f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise
    if durable:
        _sync_folder(path.parent)
    return None if not callable(data) else result


def _sync_folder(folder: Path) -> None:
    """Make a rename inside `folder` itself durable (where the file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
