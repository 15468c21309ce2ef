"""Branding without code: the page's title, description, logo, accent colour, which controls show,
and which examples, from a TOML file (`--branding FILE`) and/or flags (flags win).

    title = "Acme product shots"
    description = "Edit our catalogue pictures step by step."
    logo = "logo.png"            # next to this file, or an absolute path
    accent = "#0e7490"           # #rrggbb, or a colour name: indigo, emerald, rose, ...
    hide = ["advanced", "seed"]  # see CONTROLS
    examples = "examples.toml"   # another catalog (kontext.showcase.examples), or "none"

    [[lora]]                     # LoRA presets (kontext.model.loras), each with a strength slider
    name = "watercolour"
    source = "loras/watercolour.safetensors"   # next to this file, or a hub repository id
    scale = 0.8
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kontext.core.tomlfile import read_toml
from kontext.errors import UserError

# Parts of the page a host may hide (the edit box, canvas, undo/redo and the timeline always show).
CONTROLS = ("examples", "chains", "reference", "mask", "lora", "text", "draft", "advanced", "seed", "export",
            "share", "present", "compare", "start-over")
HUES = ("slate", "gray", "zinc", "neutral", "stone", "red", "orange", "amber", "yellow", "lime", "green",
        "emerald", "teal", "cyan", "sky", "blue", "indigo", "violet", "purple", "fuchsia", "pink", "rose")
LOGO_TYPES = (".png", ".jpg", ".jpeg", ".webp", ".svg")
DEFAULT_TITLE = "Kontext Playground"
DEFAULT_DESCRIPTION = ("Edit a picture step by step with FLUX.1 Kontext [dev]: each instruction edits the "
                       "previous result.")


@dataclass(frozen=True)
class Branding:
    title: str = DEFAULT_TITLE
    description: str = DEFAULT_DESCRIPTION
    logo: Path | None = None
    accent: str = "indigo"  # a hue name or #rrggbb
    hide: frozenset[str] = field(default_factory=frozenset)
    examples: Path | None = None  # None: the shipped catalog
    no_examples: bool = False
    loras: tuple = ()  # kontext.model.loras.Lora presets the page offers

    def shows(self, control: str) -> bool:
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}")  # a typo in our own code, not user input
        return control not in self.hide


def check_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 80:
        raise UserError("title must be 1-80 characters")
    return value.strip()


def check_accent(value: Any) -> str:
    if isinstance(value, str) and (value in HUES or re.fullmatch(r"#[0-9a-fA-F]{6}", value)):
        return value.lower()
    raise UserError(f"accent must be #rrggbb or one of {', '.join(HUES)}; got {value!r}")


def check_hide(value: Any) -> frozenset[str]:
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise UserError("hide must be a list of control names")
    unknown = [v for v in items if v not in CONTROLS]
    if unknown:
        raise UserError(f"hide: unknown control {unknown[0]!r}; the controls are {', '.join(CONTROLS)}")
    return frozenset(items)


def _file(value: Any, base: Path, what: str, types: tuple[str, ...]) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"{what} must be a file name")
    path = (base / value).resolve()
    if not path.is_file():
        raise UserError(f"{what} {value!r} is not a file (relative names are read next to the branding file)")
    if path.suffix.lower() not in types:
        raise UserError(f"{what} must be one of {', '.join(types)}, got {path.name!r}")
    return path


def load_branding(path: str | Path | None = None, **overrides: Any) -> Branding:
    """A Branding from a TOML file (optional) and flag values (None: not given). UserError says
    which setting is wrong and what it allows."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path:
        path = Path(path)
        base = path.resolve().parent
        data = read_toml(path, "branding")
        unknown = set(data) - {"title", "description", "logo", "accent", "hide", "examples", "lora"}
        if unknown:
            raise UserError(f"branding file {path.name}: unknown setting {sorted(unknown)[0]!r}; the settings "
                            "are title, description, logo, accent, hide, examples, [[lora]]")
    data.update({k: v for k, v in overrides.items() if v is not None})
    b = Branding()
    if "title" in data:
        b = replace(b, title=check_title(data["title"]))
    if "description" in data:
        d = data["description"]
        if not isinstance(d, str) or len(d) > 2000:
            raise UserError("description must be text of at most 2000 characters")
        b = replace(b, description=d.strip())
    if "logo" in data:
        b = replace(b, logo=_file(data["logo"], base, "logo", LOGO_TYPES))
    if "accent" in data:
        b = replace(b, accent=check_accent(data["accent"]))
    if "hide" in data:
        b = replace(b, hide=check_hide(data["hide"]))
    if "lora" in data:
        from kontext.model.loras import check_preset

        entries = data["lora"] if isinstance(data["lora"], list) else [data["lora"]]
        presets = []
        for i, entry in enumerate(entries, 1):
            lora = check_preset(entry, f"lora {i}")
            local = base / lora.source
            if local.exists():  # a file or folder next to the branding file; else a hub repository id
                lora = replace(lora, source=str(local.resolve()))
            presets.append(lora)
        if len({p.name for p in presets}) != len(presets):
            raise UserError("lora: each name once")
        b = replace(b, loras=tuple(presets))
    if "examples" in data:
        ex = data["examples"]
        if ex in ("none", False):
            b = replace(b, no_examples=True)
        else:
            b = replace(b, examples=_file(ex, base, "examples", (".toml",)))
    return b
