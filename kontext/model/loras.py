"""LoRA presets: Kontext LoRAs a host offers (a local file or folder, or a hub repository id), loaded
once each into the pipeline with diffusers' `load_lora_weights` (needs `peft`), and switched per turn
with `set_adapters`: several at once, each with its strength. The base model is never reloaded; a
turn without LoRAs runs with them disabled. Each step records the LoRAs it used (name, source,
strength), so its PNG metadata, the export and a replay say exactly how it was made.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from kontext.errors import UserError

MAX_ACTIVE = 4
MIN_SCALE, MAX_SCALE = 0.0, 2.0

log = logging.getLogger("kontext.model.loras")


@dataclass(frozen=True)
class Lora:
    name: str  # how the page and the API call it (also the adapter's name)
    source: str  # a local .safetensors file or folder, or a hub repository id
    weight_name: str | None = None  # the file inside a folder or repository, if it has several
    scale: float = 1.0  # the strength the page starts at


def check_preset(entry: Any, where: str) -> Lora:
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be a table with name and source")
    name, source = entry.get("name"), entry.get("source")
    if not isinstance(name, str) or not name or len(name) > 40 or not all(c.isalnum() or c in "-_" for c in name):
        raise UserError(f"{where}: name must be 1-40 letters, digits, - or _, got {name!r}")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{where} ({name}): source must be a file, a folder or a hub repository id")
    weight = entry.get("weight_name")
    if weight is not None and not isinstance(weight, str):
        raise UserError(f"{where} ({name}): weight_name must be a file name")
    return Lora(name, source.strip(), weight, check_scale(entry.get("scale", 1.0), name))


def check_scale(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_SCALE <= value <= MAX_SCALE:
        raise UserError(f"LoRA {name}: strength must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {value!r}")
    return float(value)


def parse_active(text: Any) -> tuple[tuple[str, float], ...]:
    """"name=0.8,other=0.5" (the API's form) -> (("name", 0.8), ("other", 0.5)); "" -> ()."""
    if text is None or text == "":
        return ()
    if not isinstance(text, str):
        raise UserError(f"loras must be text like name=0.8,other=0.5, got {type(text).__name__}")
    out = []
    for item in text.split(","):
        name, sep, scale = item.strip().partition("=")
        try:
            value = float(scale) if sep else 1.0
        except ValueError:
            raise UserError(f"loras: {item.strip()!r} must be name=strength, e.g. {name.strip()}=0.8") from None
        out.append((name.strip(), value))
    return tuple(out)


def recorded(entries: Any, with_sources: bool = False) -> tuple:
    """A step's recorded LoRAs (extra["loras"]) as (name, strength) pairs, or with their source and
    weight_name for a replay. Anything malformed (an edited export) is refused in words."""
    out = []
    for d in entries or ():
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("scale"), (int, float))
                and isinstance(d.get("source", ""), str)):
            raise UserError(f"a step's LoRA record is malformed: {str(d)[:80]}")
        out.append((d["name"], float(d["scale"]), d.get("source"), d.get("weight_name")) if with_sources
                   else (d["name"], float(d["scale"])))
    return tuple(out)


class LoraSet:
    """The host's presets and the adapters loaded so far into one pipeline."""

    def __init__(self, pipe: Any, presets: tuple[Lora, ...] = ()):
        self.pipe = pipe
        self.presets = {p.name: p for p in presets}
        self._loaded: set[str] = set()
        self._active: tuple[tuple[str, float], ...] = ()
        self._lock = threading.Lock()

    def resolve(self, active: Any, allow_sources: bool = False) -> tuple[tuple[str, float, Lora], ...]:
        """Check `active` ((name, strength) pairs, or (name, strength, source) from a recorded step when
        `allow_sources`) against the presets; strength 0 drops a LoRA."""
        items = []
        for entry in active or ():
            name, scale = entry[0], entry[1]
            lora = self.presets.get(name)
            if lora is None and allow_sources and len(entry) > 2 and entry[2]:
                lora = Lora(name, entry[2], entry[3] if len(entry) > 3 else None)
            if lora is None:
                offered = ", ".join(self.presets) or "none"
                raise UserError(f"LoRA {name!r} is not offered here; the LoRAs are: {offered}")
            scale = check_scale(scale, name)
            if scale > 0:
                items.append((name, scale, lora))
        if len({n for n, _, _ in items}) != len(items):
            raise UserError("loras: each LoRA once")
        if len(items) > MAX_ACTIVE:
            raise UserError(f"at most {MAX_ACTIVE} LoRAs at once, got {len(items)}")
        return tuple(items)

    def apply(self, items: tuple[tuple[str, float, Lora], ...]) -> list[dict[str, Any]]:
        """Make exactly `items` active (loading any adapter not loaded yet); return what to record."""
        with self._lock:
            for name, _, lora in items:
                if name not in self._loaded:
                    try:
                        self.pipe.load_lora_weights(lora.source, weight_name=lora.weight_name, adapter_name=name)
                    except ImportError as e:
                        raise UserError(f"LoRAs need the peft package: pip install peft ({e})") from None
                    except (OSError, ValueError, KeyError) as e:
                        # The host's file and the loader's words (server paths) go to the log; a visitor
                        # or an API client gets the preset's name only.
                        log.warning("LoRA %s could not be loaded from %s: %s", name, lora.source, e)
                        raise UserError(f"LoRA {name} could not be loaded ({type(e).__name__}): this server's "
                                        "file for it is not a LoRA this model takes; its log says more") from None
                    self._loaded.add(name)
            wanted = tuple((n, s) for n, s, _ in items)
            if wanted != self._active and self._loaded:
                if items:
                    self.pipe.enable_lora()
                    self.pipe.set_adapters([n for n, _ in wanted], adapter_weights=[s for _, s in wanted])
                else:
                    self.pipe.disable_lora()
                self._active = wanted
        return [{"name": n, "source": lora.source, "scale": s, **({"weight_name": lora.weight_name}
                                                                     if lora.weight_name else {})}
                for n, s, lora in items]
