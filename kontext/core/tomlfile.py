"""Reading the app's TOML settings files (branding, examples) with errors a host can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from kontext.errors import UserError


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The file's tables; UserError "<what> file not found" or "... is not valid TOML: <where>"."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} file {path.name} is not valid TOML: {e}") from None
