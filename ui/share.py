"""Export and import on the page: files for download, and a ZIP upload that continues a session."""

from __future__ import annotations

import contextlib
import tempfile
import time
import zipfile
from pathlib import Path

from gradio.utils import get_upload_folder

from kontext.core import History
from kontext.errors import UserError
from kontext.files import ANIMATION, CONTACT_SHEET, file_name, select
from kontext.sessions import Sessions

KEEP_S = 600  # a download starts within seconds of the export; then the files go
MAX_KEPT_BYTES = 2 * 2**30  # all exports waiting to be downloaded, together
EXTRAS_BYTES = 32 * 2**20  # room for the GIF and contact sheet (and their copies beside the ZIP)


def export_dir() -> Path:
    """Inside gradio's own cache folder: gradio serves files there as they are, without a second copy."""
    return Path(get_upload_folder()) / "kontext-exports"


def _fresh_dir(need: int) -> Path:
    """A new folder for one export, after removing exports older than KEEP_S; refuses when the
    exports waiting for download would pass MAX_KEPT_BYTES."""
    root = export_dir()
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_S
    kept = 0
    for old in root.glob("*/*"):
        with contextlib.suppress(OSError):
            st = old.stat()
            if st.st_mtime < cutoff:
                old.unlink()
            else:
                kept += st.st_size
    for d in root.iterdir():
        with contextlib.suppress(OSError):
            d.rmdir()
    if kept + need > MAX_KEPT_BYTES:
        raise UserError("too many exports are waiting to be downloaded right now: try again in a few minutes")
    return Path(tempfile.mkdtemp(dir=root))


def export_files(sessions: Sessions, key: str, scope: str, history: History | None = None) -> list[str]:
    """The ZIP of `scope` plus, for slides, its animated GIF of the path and its contact sheet.
    `history`: export this view (a shared tree as checked against its token) instead of reading it.

    The GIF and sheet are copied out of the ZIP, so all three come from one read of the history
    and are made once (they take most of an export's time at 1 MP).
    """
    h = sessions.history(key) if history is None else history
    need = sum(sessions.store.image_path(key, n.image).stat().st_size for n in select(h, scope)) + EXTRAS_BYTES
    folder = _fresh_dir(need)
    zip_path = folder / file_name(scope, "zip")
    try:
        sessions.export(key, zip_path, scope=scope, extras=True, history=h)
    except BaseException:
        zip_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
        raise
    gif = folder / file_name("path", "gif")
    sheet = folder / file_name(scope, "png").replace(".png", "-sheet.png")
    with zipfile.ZipFile(zip_path) as zf:
        gif.write_bytes(zf.read(ANIMATION))
        sheet.write_bytes(zf.read(CONTACT_SHEET))
    return [str(zip_path), str(gif), str(sheet)]
