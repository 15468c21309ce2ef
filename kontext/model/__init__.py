"""Runs a planned turn: the engine around diffusers' FluxKontextPipeline, its speed modes (compile,
fp8, int8, ahead-of-time packages), the tiny and random full-size models, previews, LoRAs, the content
check, GPU memory and CUDA checks, hub errors, and the turn as plain values (`TurnRequest`, `stream`).
It knows nothing of sessions or the UI. May import: kontext.core, kontext.errors, kontext.env.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "engine": "Engine EditResult", "loras": "parse_active public_step", "speed": "memory_hint",
    "turns": "Done Progress TurnRequest stream LocalGpu",
})
