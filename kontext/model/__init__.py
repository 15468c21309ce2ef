"""Runs a planned turn: the engine around diffusers' FluxKontextPipeline, its speed modes (compile,
fp8, int8, ahead-of-time packages), the tiny and random full-size models, previews, LoRAs, the content
check, GPU memory and CUDA checks, hub errors, and the turn as plain values (`TurnRequest`, `stream`).
It knows nothing of sessions or the UI. May import: kontext.core, kontext.errors, kontext.env.
"""

from kontext.lazy import lazy_exports

_EXPORTS = {
    "Engine": "engine",
    "EditResult": "engine",
    "parse_active": "loras",
    "memory_hint": "speed",
    "Done": "turns",
    "Progress": "turns",
    "TurnRequest": "turns",
    "stream": "turns",
    "LocalGpu": "turns",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
