"""Uploads gradio holds for us go soon: a refused one at once, any other after `upload_keep_s`.

Gradio writes each upload to its upload folder (`<folder>/<sha256>/<name>`, listed in the app's
`upload_file_set`) and, with `delete_cache`, removes it an hour later; the session store keeps its
own copy of what it accepts, so nothing of ours reads an upload once its event has run. A client
that drops the connection mid-upload leaves gradio's temporary file (`<folder>/tmpXXXXXXXX`) behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradio.context import LocalContext
from gradio.utils import get_upload_folder

log = logging.getLogger("ui.uploads")
PARTIAL = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile's names: an upload being written
SWEEP_EVERY_S = 60.0


def _paths(value: Any) -> Iterable[str]:
    """File paths in an event's arguments: paths, FileData dicts, an image editor's layers, lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for part in ("background", "layers", "composite"):
            if part in value:
                yield from _paths(value[part])
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _paths(v)


def _kept(blocks: Any) -> set[str]:
    """Files gradio keeps in its cache for the app's lifetime (initial values such as example
    pictures), which share the folder and the naming by content with uploads: an upload of the same
    bytes and name is the same file. Gradio's own cache cleanup spares the same set."""
    kept: set[str] = set()
    for block in [blocks, *getattr(blocks, "blocks", {}).values()]:
        kept.update(getattr(block, "keep_in_cache", ()))
    return kept


def _remove(path: str, blocks: Any) -> bool:
    blocks.upload_file_set.discard(path)
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    except OSError as e:  # never in the way of the answer to the event that failed
        log.warning("could not delete the upload %s: %s", path, e)
        return False
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # the <sha256> folder, now empty
    return True


def discard(*values: Any, blocks: Any = None) -> int:
    """Delete the uploads named in an event's arguments (after it failed: nothing keeps them).

    Only files gradio lists as uploads are touched, never the app's own cached files; without an app
    (`blocks`, else the one running this event) nothing is. Returns how many were deleted."""
    blocks = blocks if blocks is not None else LocalContext.blocks.get(None)
    uploads = getattr(blocks, "upload_file_set", None)
    if not uploads:
        return 0
    candidates = {p for v in values for p in _paths(v) if p in uploads}
    if not candidates:
        return 0
    return sum(_remove(p, blocks) for p in candidates - _kept(blocks))


def sweep(blocks: Any, keep_s: float, now: float | None = None, folder: str | Path | None = None) -> int:
    """Delete uploads older than `keep_s` (by their last write) and partial uploads left as long.
    Returns how many files were deleted."""
    now = time.time() if now is None else now
    removed = 0
    kept = _kept(blocks)
    for path in list(blocks.upload_file_set):
        try:
            old = now - os.stat(path).st_mtime > keep_s
        except FileNotFoundError:
            blocks.upload_file_set.discard(path)
            continue
        if old and path not in kept:
            removed += _remove(path, blocks)
    root = Path(folder or get_upload_folder())
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            with contextlib.suppress(FileNotFoundError):
                if (PARTIAL.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
                        and now - entry.stat(follow_symlinks=False).st_mtime > keep_s):
                    os.remove(entry.path)
                    removed += 1
    return removed


def sweeper(keep_s: float, every_s: float | None = None):
    """A lifespan for gradio's app (launch's app_kwargs): sweeps the uploads while the server runs."""
    every = every_s if every_s is not None else min(SWEEP_EVERY_S, keep_s / 2)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        async def run() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    n = await asyncio.to_thread(sweep, app.get_blocks(), keep_s)
                except Exception:  # noqa: BLE001 - housekeeping: try again next time
                    log.exception("upload sweep failed")
                    continue
                if n:
                    log.info("deleted %d upload(s) older than %g s", n, keep_s)

        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()

    return lifespan
