"""Exports of a part, imported on first use: `from kontext.model import Engine` loads the engine (and
torch) only then, so the parts' light modules (settings, the tier table, the ELF check) stay quick to
import and nothing runs at import time."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: names[name] is the module (inside the package) that
    defines it; a name equal to its module's name exports the module itself."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{names[name]}")
        return module if name == names[name] else getattr(module, name)

    return __getattr__
