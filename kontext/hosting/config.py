"""App settings: everything `app.py` reads from flags and the environment, in one value."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kontext.env import setting
from kontext.errors import UserError
from kontext.files.sharing import MAX_PER_SESSION, PER_ADDRESS
from kontext.files.store import DEFAULT_MAX_BYTES, DEFAULT_MAX_IDLE_S, DEFAULT_MAX_SESSION_BYTES
from kontext.showcase.branding import Branding


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("sessions")
    max_idle_s: float = DEFAULT_MAX_IDLE_S
    max_bytes: int = DEFAULT_MAX_BYTES
    max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES  # one session's share of max_bytes (imports count)
    upload_keep_s: float = 300.0  # uploads gradio holds for us go after this (ui/uploads.py)
    max_steps: int = 200
    mcp: bool = False
    offload: str = "none"
    device: str | None = None
    secret: str | None = None  # for gr.BrowserState: the page gets a value derived from it (browser_secret)
    gpu_slots: int = 1  # edits that run at once
    max_waiting: int = 16  # edits that may wait for a slot
    zerogpu: bool = False  # on a ZeroGPU Space: the GPU is lent per edit
    on_space: bool = False  # running on a Hugging Face Space
    mirror: str | None = None  # a private dataset repo the sessions are mirrored to
    mirror_every_s: float = 60.0
    login: str = "none"  # "hf": editing needs a Hugging Face sign-in (the owner pays for the GPU)
    auth: tuple[tuple[str, str], ...] = ()  # self-hosted: user/password pairs for the whole app
    login_tries: int = 5  # failed sign-ins per address or user before each further try must wait
    login_max_wait_s: float = 900.0  # that wait doubles per failure up to this (ui/access.py)
    branding: Branding = field(default_factory=Branding)  # title, logo, accent, hidden controls, examples
    # Per-visitor limits: one visitor (a session) may not fill what all share; an address (where new
    # sessions cost nothing) gets `per_address` visitors' worth, 0 for no cap per address.
    export_bytes: int = 640 * 2**20  # exports waiting to be downloaded, per visitor: a big session's and extras
    links_per_session: int = MAX_PER_SESSION  # live share links per session
    per_address: float = PER_ADDRESS


def storage_note(settings: Settings) -> str:
    """How long sessions last here, in words for the page and the README's promise."""
    days = settings.max_idle_s / 86400
    idle = f"{days:g} days" if days >= 1 else f"{settings.max_idle_s / 3600:g} hours"
    budget = f"{settings.max_bytes / 2**30:g} GB"
    if settings.mirror:
        return (f"Sessions are mirrored to a private dataset within {settings.mirror_every_s:g} s of each step "
                f"and when the app stops, so a restart keeps them; unused for {idle}, they are deleted "
                f"(the least recently used go first beyond {budget}).")
    data = Path(settings.data_dir).resolve()
    if settings.on_space and not str(data).startswith("/data"):
        return ("Sessions live on this Space's disk until the Space restarts or sleeps (its disk is not "
                "persistent): export a ZIP to keep your work.")
    return (f"Sessions are kept on this server's disk and survive restarts; unused for {idle}, they are "
            f"deleted (the least recently used go first beyond {budget}).")


def check_limits(settings: Settings) -> None:
    """Refuse per-visitor limits that cannot work, naming the flag."""
    if settings.export_bytes <= 0:
        raise UserError(f"--export-mb must be more than 0, got {settings.export_bytes / 2**20:g}")
    if settings.links_per_session < 1:
        raise UserError(f"--links-per-session must be at least 1, got {settings.links_per_session}")
    if not settings.per_address >= 0:
        raise UserError(f"--per-address must be 0 (no cap per address) or more, got {settings.per_address:g}")
    if not 0 < settings.max_session_bytes <= settings.max_bytes:
        raise UserError(f"--max-session-mb must be more than 0 and at most --max-disk-gb, got "
                        f"{settings.max_session_bytes / 2**20:g} MB")
    if not settings.upload_keep_s > 0:
        raise UserError(f"--upload-keep-minutes must be more than 0, got {settings.upload_keep_s / 60:g}")
    if settings.login_tries < 1 or not settings.login_max_wait_s > 0:
        raise UserError(f"--login-tries must be at least 1 and --login-max-wait-minutes more than 0, got "
                        f"{settings.login_tries} and {settings.login_max_wait_s / 60:g}")


def parse_auth(text: str | None) -> tuple[tuple[str, str], ...]:
    """'user:password,other:secret' -> (("user", "password"), ("other", "secret"))."""
    pairs = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise UserError(f"--auth wants user:password pairs separated by commas, got {item.split(':')[0]!r}:…")
        if any(user == known for known, _ in pairs):  # gradio would keep only the last password
            raise UserError(f"--auth names the user {user!r} twice: give each user one password")
        pairs.append((user, password))
    return tuple(pairs)


def browser_secret(settings: Settings) -> str:
    """A stable secret for gr.BrowserState, so keys in browsers survive a server restart.

    It is sent to every page (gradio's /config): the browser reads back the key it keeps with it, so
    it hides nothing from a visitor. A host's own value (settings/$KONTEXT_SECRET) is therefore never
    sent as it is, only a value derived from it (HMAC-SHA256) that tells nothing about it; else a
    value made for the page alone is kept in a file beside the sessions.
    """
    given = settings.secret or setting("SECRET")
    if given:
        return hmac.new(given.encode(), b"kontext gr.BrowserState secret", hashlib.sha256).hexdigest()
    path = Path(settings.data_dir) / ".browser-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
