"""Export and import on the page: files for download, and a ZIP upload that continues a session."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kontext.export import file_name
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
    """The ZIP of `scope` plus, for slides, an animated GIF of the path and a contact sheet."""
    folder = _fresh_dir()
    zip_path = folder / file_name(scope, "zip")
    sessions.export(key, zip_path, scope=scope)
    gif = folder / file_name("path", "gif")
    gif.write_bytes(sessions.animation(key, "gif"))
    sheet = folder / file_name(scope, "png").replace(".png", "-sheet.png")
    sheet.write_bytes(sessions.contact_sheet(key, scope))
    return [str(zip_path), str(gif), str(sheet)]
