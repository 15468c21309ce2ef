"""Exports of a part, imported on first use: `from kontext.model import Engine` loads the engine (and
torch) only then, so the parts' light modules (settings, the tier table, the ELF check) stay quick to
import and nothing runs at import time."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, modules: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and a module `__getattr__` for `package`. `modules` maps each module (inside the
    package) to the names it exports, space-separated; a module's own name exports the module."""
    where = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f"{package}.{where[name]}")
        return module if name == where[name] else getattr(module, name)

    return list(where), __getattr__
