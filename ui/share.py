"""Export and import on the page: files for download, and a ZIP upload that continues a session."""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path

from kontext.export import ANIMATION, CONTACT_SHEET, file_name
from kontext.session import Sessions

EXPORT_DIR = Path(tempfile.gettempdir()) / "kontext-exports"
KEEP_S = 3600  # gradio copies each file into its own cache; ours only need to live until then


def _fresh_dir() -> Path:
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_S
    for old in EXPORT_DIR.glob("*/*"):
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    for d in EXPORT_DIR.iterdir():
        try:
            d.rmdir()
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=EXPORT_DIR))


def export_files(sessions: Sessions, key: str, scope: str) -> list[str]:
    """The ZIP of `scope` plus, for slides, its animated GIF of the path and its contact sheet.

    The GIF and sheet are copied out of the ZIP, so all three come from one read of the history
    and are made once (they take most of an export's time at 1 MP).
    """
    folder = _fresh_dir()
    zip_path = folder / file_name(scope, "zip")
    sessions.export(key, zip_path, scope=scope, extras=True)
    gif = folder / file_name("path", "gif")
    sheet = folder / file_name(scope, "png").replace(".png", "-sheet.png")
    with zipfile.ZipFile(zip_path) as zf:
        gif.write_bytes(zf.read(ANIMATION))
        sheet.write_bytes(zf.read(CONTACT_SHEET))
    return [str(zip_path), str(gif), str(sheet)]
