"""LoRA presets: Kontext LoRAs a host offers (a local file or folder, or a hub repository id), loaded
once each into the pipeline with diffusers' `load_lora_weights` (needs `peft`), and switched per turn
with `set_adapters`: several at once, each with its strength. The base model is never reloaded; a
turn without LoRAs runs with them disabled. Each step records the LoRAs it used by preset name and
strength only: where a preset's weights come from is the host's preset list alone, so no file (an
edited export) can make this server or a replay load anything, and no client sees a server path.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from kontext.errors import UserError

MAX_ACTIVE = 4
MIN_SCALE, MAX_SCALE = 0.0, 2.0
MAX_NAME = 40

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
    if not good_name(name):
        raise UserError(f"{where}: name must be 1-{MAX_NAME} letters, digits, - or _, got {name!r}")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{where} ({name}): source must be a file, a folder or a hub repository id")
    weight = entry.get("weight_name")
    if weight is not None and not isinstance(weight, str):
        raise UserError(f"{where} ({name}): weight_name must be a file name")
    return Lora(name, source.strip(), weight, check_scale(entry.get("scale", 1.0), name))


def good_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in name))


def check_scale(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_SCALE <= value <= MAX_SCALE:
        raise UserError(f"LoRA {name}: strength must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {value!r}")
    return float(value)


def parse_active(text: Any) -> tuple[tuple[str, float], ...]:
    """"name=0.8,other=0.5" (the API's form) -> (("name", 0.8), ("other", 0.5)); "" -> ().
    Each malformed entry is refused in words naming the input `loras` and what is missing."""
    if text is None or text == "":
        return ()
    if not isinstance(text, str):
        raise UserError(f"loras must be text like name=0.8,other=0.5, got {type(text).__name__}")
    out = []
    for item in text.split(","):
        name, sep, scale = (part.strip() for part in item.strip().partition("="))
        shown = f"{item.strip()[:60]!r}"
        if not name and not sep:
            raise UserError(f"loras: {text[:80]!r} has an empty entry (a comma at the start or end, or two in a "
                            "row); write name=strength, separated by commas, e.g. style=0.8,grain=0.5")
        if not name:
            raise UserError(f"loras: {shown} has no LoRA name before '='; write name=strength, e.g. style=0.8")
        if sep and not scale:
            raise UserError(f"loras: {shown} has no strength after '='; write {name[:40]}=0.8, or {name[:40]} "
                            "alone for strength 1")
        try:
            value = float(scale) if sep else 1.0
        except ValueError:
            raise UserError(f"loras: in {shown} the strength {scale[:40]!r} is not a number; write e.g. "
                            f"{name[:40]}=0.8") from None
        out.append((name, value))
    return tuple(out)


def check_records(entries: Any, where: str) -> list[dict[str, Any]]:
    """A step's LoRA record from a file (an import or a replay): at most MAX_ACTIVE entries, each a
    preset name and a strength, each name once. Returns them as {"name", "scale"} alone: exports made
    before records held names only also carry "source" and "weight_name", which are dropped, since
    weights come from the host's presets and never from a file. Anything else is refused in words."""
    if not isinstance(entries, list) or len(entries) > MAX_ACTIVE:
        raise UserError(f"{where}: 'loras' must be a list of at most {MAX_ACTIVE} LoRAs, got {str(entries)[:60]}")
    out = []
    for d in entries:
        if not isinstance(d, dict):
            raise UserError(f"{where}: each of its LoRAs must be an object with name and scale, got {str(d)[:60]}")
        unknown = set(d) - {"name", "scale", "source", "weight_name"}
        if unknown:
            raise UserError(f"{where}: a LoRA record holds name and scale only, not {sorted(unknown)[0][:40]!r}")
        if not good_name(d.get("name")):
            raise UserError(f"{where}: a LoRA's name must be 1-{MAX_NAME} letters, digits, - or _, "
                            f"got {str(d.get('name'))[:60]!r}")
        try:
            scale = check_scale(d.get("scale"), d["name"])
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        out.append({"name": d["name"], "scale": scale})
    if len({d["name"] for d in out}) != len(out):
        raise UserError(f"{where}: its LoRAs must each be named once")
    return out


def recorded(entries: Any) -> tuple[tuple[str, float], ...]:
    """A step's recorded LoRAs (extra["loras"]) as (name, strength) pairs. Anything malformed (an
    edited export) is refused in words."""
    out = []
    for d in entries or ():
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("scale"), (int, float))):
            raise UserError(f"a step's LoRA record is malformed: {str(d)[:80]}")
        out.append((d["name"], float(d["scale"])))
    return tuple(out)


def names_only(entries: Any) -> Any:
    """A stored step's LoRA record as clients and exports may see it: names and strengths, without the
    server paths that steps made before records held names only also stored."""
    if not isinstance(entries, list):
        return entries
    return [{k: v for k, v in d.items() if k in ("name", "scale")} if isinstance(d, dict) else d for d in entries]


def public_step(d: dict[str, Any]) -> dict[str, Any]:
    """A step's dict (Node.to_dict) with its LoRA record by names only (see names_only)."""
    if isinstance(d.get("extra"), dict) and "loras" in d["extra"]:
        d = {**d, "extra": {**d["extra"], "loras": names_only(d["extra"]["loras"])}}
    return d


class LoraSet:
    """The host's presets and the adapters loaded so far into one pipeline."""

    def __init__(self, pipe: Any, presets: tuple[Lora, ...] = ()):
        self.pipe = pipe
        self.presets = {p.name: p for p in presets}
        self._loaded: set[str] = set()
        self._active: tuple[tuple[str, float], ...] = ()
        self._lock = threading.Lock()

    def resolve(self, active: Any) -> tuple[tuple[str, float, Lora], ...]:
        """Check `active` ((name, strength) pairs) against the presets; strength 0 drops a LoRA."""
        items = []
        for entry in active or ():
            name, scale = entry[0], entry[1]
            lora = self.presets.get(name)
            if lora is None:
                offered = ", ".join(self.presets) or "none"
                raise UserError(f"LoRA {str(name)[:60]!r} is not offered here; the LoRAs are: {offered}")
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
                    except Exception as e:  # noqa: BLE001 - every load failure is told in words, below
                        # The host's source and the loader's words (server paths) go to the log; a visitor
                        # or an API client gets the preset's name and the kind of failure only.
                        log.warning("LoRA %s could not be loaded from %s: %s: %s", name, lora.source,
                                    type(e).__name__, e)
                        raise UserError(f"LoRA {name} could not be loaded: {load_failure(lora.source, e)}; "
                                        "this server's log says more") from None
                    self._loaded.add(name)
            wanted = tuple((n, s) for n, s, _ in items)
            if wanted != self._active and self._loaded:
                if items:
                    self.pipe.enable_lora()
                    self.pipe.set_adapters([n for n, _ in wanted], adapter_weights=[s for _, s in wanted])
                else:
                    self.pipe.disable_lora()
                self._active = wanted
        return [{"name": n, "scale": s} for n, s, _ in items]  # names only: no server path reaches a client


def _is_network(e: BaseException) -> bool:
    """A failure to reach the hub. huggingface_hub's HTTP library has changed (requests, httpx, httpx2)
    and its transport errors share no base class with Python's; an error that carries the hub's
    answer (a response) is not one."""
    if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    library = type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")
    return library and getattr(e, "response", None) is None


def load_failure(source: str, e: BaseException) -> str:
    """Why a preset's weights could not be loaded, in words without the source (a server path, or a
    repository the host chose): an unreachable hub, one that refuses the download, or not a LoRA."""
    from kontext.model.hub import exception_chain, is_local

    if is_local(source):
        return "this server's file for it is not a LoRA this model takes"
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    chain = list(exception_chain(e))

    def found(*types: type) -> bool:
        return any(isinstance(x, types) for x in chain)

    # Offline, diffusers refuses a repository without weight_name in a ValueError that says so.
    offline = constants.HF_HUB_OFFLINE and (found(hf.LocalEntryNotFoundError) or "offline" in str(e))
    if offline or found(hf.OfflineModeIsEnabled):
        return "it is not downloaded yet and this server is offline (HF_HUB_OFFLINE)"
    # LocalEntryNotFoundError (not cached, and the hub did not answer) is an EntryNotFoundError too.
    if found(hf.LocalEntryNotFoundError) or any(_is_network(x) for x in chain):
        return "the Hugging Face Hub cannot be reached to download it; try again later"
    if found(hf.RepositoryNotFoundError, hf.RevisionNotFoundError, hf.EntryNotFoundError):  # gated is one too
        return "the Hugging Face Hub refused its download (the repository or file is missing, gated or private)"
    if found(hf.HfHubHTTPError):
        return "the Hugging Face Hub answered its download with an error; try again later"
    return "its download from the Hugging Face Hub is not a LoRA this model takes"
