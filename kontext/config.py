"""App settings: everything `app.py` reads from flags and the environment, in one value."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .store import DEFAULT_MAX_BYTES, DEFAULT_MAX_IDLE_S


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("sessions")
    max_idle_s: float = DEFAULT_MAX_IDLE_S
    max_bytes: int = DEFAULT_MAX_BYTES
    max_steps: int = 200
    mcp: bool = False
    offload: str = "none"
    device: str | None = None
    secret: str | None = None  # encrypts the session key kept in the browser
    gpu_slots: int = 1  # edits that run at once
    max_waiting: int = 16  # edits that may wait for a slot
    zerogpu: bool = False  # on a ZeroGPU Space: the GPU is lent per edit


def browser_secret(settings: Settings) -> str:
    """A stable secret for gr.BrowserState, so keys in browsers survive a server restart.

    Taken from settings/$KONTEXT_SECRET, else kept in a file beside the sessions (mode 0600).
    """
    if settings.secret:
        return settings.secret
    if os.environ.get("KONTEXT_SECRET"):
        return os.environ["KONTEXT_SECRET"]
    path = Path(settings.data_dir) / ".browser-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
