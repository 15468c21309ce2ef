"""Export and import on the page: files for download, and a ZIP upload that continues a session."""

from __future__ import annotations

import contextlib
import ipaddress
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradio.utils import get_upload_folder

from kontext.core import History
from kontext.env import on_space
from kontext.errors import UserError
from kontext.files import ANIMATION, CONTACT_SHEET, file_name, select
from kontext.hosting import Settings
from kontext.sessions import Sessions

KEEP_S = 600  # a download starts within seconds of the export; then the files go
MAX_KEPT_BYTES = 2 * 2**30  # all exports waiting to be downloaded, together: the last line
EXTRAS_BYTES = 32 * 2**20  # room for the GIF and contact sheet (and their copies beside the ZIP)


@dataclass(frozen=True)
class ExportLimits:
    """Each visitor's share of the space for exports waiting to be downloaded, so that one visitor
    cannot fill it for everyone. A visitor is a session (or, on the shared view, a share link); an
    address is the client's as gradio sees it (a new session costs nothing, an address does)."""

    per_visitor: int = Settings.export_bytes  # bytes
    per_address: float = Settings.per_address  # one address: this many visitors' worth (0: no cap)


LIMITS = ExportLimits()  # the app's (set by configure)
_lock = threading.Lock()  # the check and the claim of a new export's room happen as one
# Export folder -> (visitor, address, bytes claimed while it is still being written). In memory:
# after a restart the older folders still count towards MAX_KEPT_BYTES until they expire.
_owners: dict[str, tuple[str, str | None, int]] = {}


def configure(per_visitor: int, per_address: float) -> None:
    global LIMITS
    LIMITS = ExportLimits(per_visitor=per_visitor, per_address=per_address)


def client_address(request: Any) -> str | None:
    """The client's address, None outside a request. Locally, as gradio's server (uvicorn) sees it;
    on a Space every request arrives from the Space's proxy (an internal 10.x address), which names
    the visitor in X-Forwarded-For, so there the visitor's address comes from that header."""
    host = getattr(getattr(request, "client", None), "host", None)
    headers = getattr(request, "headers", None)
    forwarded = headers.get("x-forwarded-for") if headers is not None else None
    return visitor_address(host if isinstance(host, str) else None, forwarded, on_space())


def visitor_address(host: str | None, forwarded: str | None, behind_proxy: bool) -> str | None:
    """Behind a proxy: the rightmost public address of X-Forwarded-For. A client may write anything
    into the header, but each proxy appends the address it was reached from, so entries to the right
    of the visitor's are the proxies' own (private); entries to its left are the client's word."""
    if behind_proxy and isinstance(forwarded, str):
        for entry in reversed(forwarded.split(",")):
            try:
                address = ipaddress.ip_address(entry.strip())
            except ValueError:
                break  # not an address: stop at what the client wrote
            if not (address.is_private or address.is_loopback or address.is_link_local):
                return str(address)
    return host or None


def export_dir() -> Path:
    """Inside gradio's own cache folder: gradio serves files there as they are, without a second copy."""
    return Path(get_upload_folder()) / "kontext-exports"


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def _fresh_dir(need: int, visitor: str, address: str | None = None) -> Path:
    """A new folder for one export, after removing exports older than KEEP_S; refuses when the
    exports waiting for download would pass the visitor's share, the address's, or MAX_KEPT_BYTES."""
    root = export_dir()
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_S
    with _lock:
        kept: dict[str, int] = {}
        for old in root.glob("*/*"):
            with contextlib.suppress(OSError):
                st = old.stat()
                if st.st_mtime < cutoff:
                    old.unlink()
                else:
                    kept[old.parent.name] = kept.get(old.parent.name, 0) + st.st_size
        present = set()
        for d in root.iterdir():
            if not _owners.get(d.name, ("", None, 0))[2]:  # one still being written is empty at first
                try:
                    d.rmdir()
                    continue
                except OSError:
                    pass  # it holds files
            present.add(d.name)
        for name in [n for n in _owners if n not in present]:
            del _owners[name]
        for name, (_, _, claimed) in _owners.items():
            kept[name] = max(kept.get(name, 0), claimed)

        def waiting(mine: Any) -> int:
            return sum(kept.get(name, 0) for name, owner in _owners.items() if mine(owner))

        limits = LIMITS
        if need > limits.per_visitor:
            raise UserError(f"this export needs {_mb(need)}, more than the {_mb(limits.per_visitor)} of exports one "
                            "visitor may have waiting to be downloaded: export a smaller part (the current path, "
                            "or this tree)")
        mine = waiting(lambda owner: owner[0] == visitor)
        if mine + need > limits.per_visitor:
            raise UserError(f"exports of {_mb(mine)} are already waiting to be downloaded here, and one visitor may "
                            f"have at most {_mb(limits.per_visitor)} waiting: download them (they are removed "
                            f"{KEEP_S // 60} minutes after they were made), then export again")
        if address is not None and limits.per_address > 0:
            cap = int(limits.per_visitor * limits.per_address)
            ours = waiting(lambda owner: owner[1] == address)
            if ours + need > cap:
                raise UserError(f"exports of {_mb(ours)} made from your network address are waiting to be "
                                f"downloaded, and one address may have at most {_mb(cap)} waiting: try again "
                                f"when they are removed ({KEEP_S // 60} minutes after they were made)")
        if sum(kept.values()) + need > MAX_KEPT_BYTES:
            raise UserError("too many exports are waiting to be downloaded right now: try again in a few minutes")
        folder = Path(tempfile.mkdtemp(dir=root))
        _owners[folder.name] = (visitor, address, need)
        return folder


def _written(folder: Path) -> None:
    """The export in `folder` is complete (or gone): from now on its files on disk count."""
    with _lock:
        owner = _owners.get(folder.name)
        if owner is not None:
            _owners[folder.name] = (owner[0], owner[1], 0)


def export_files(sessions: Sessions, key: str, scope: str, history: History | None = None, *,
                 visitor: str | None = None, address: str | None = None) -> list[str]:
    """The ZIP of `scope` plus, for slides, its animated GIF of the path and its contact sheet.
    `history`: export this view (a shared tree as checked against its token) instead of reading it.
    `visitor` (default: the session) and `address` (the client's) say whose share of the waiting
    exports' space it takes.

    The GIF and sheet are copied out of the ZIP, so all three come from one read of the history
    and are made once (they take most of an export's time at 1 MP).
    """
    h = sessions.history(key) if history is None else history
    need = sum(sessions.store.image_path(key, n.image).stat().st_size for n in select(h, scope)) + EXTRAS_BYTES
    folder = _fresh_dir(need, key if visitor is None else visitor, address)
    zip_path = folder / file_name(scope, "zip")
    gif = folder / file_name("path", "gif")
    sheet = folder / file_name(scope, "png").replace(".png", "-sheet.png")
    try:
        sessions.export(key, zip_path, scope=scope, extras=True, history=h)
        with zipfile.ZipFile(zip_path) as zf:
            gif.write_bytes(zf.read(ANIMATION))
            sheet.write_bytes(zf.read(CONTACT_SHEET))
    except BaseException:
        for f in (zip_path, gif, sheet):
            f.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
        raise
    finally:
        _written(folder)
    return [str(zip_path), str(gif), str(sheet)]
