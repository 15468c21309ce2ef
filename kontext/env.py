"""The environment, read in one place below every part: the host's switches, and every `KONTEXT_*`
setting with its default written once (app.py's flags, `python -m kontext` and the pool's workers
take their defaults from here; tests/test_layers.py checks that no other module reads them)."""

from __future__ import annotations

import os

# KONTEXT_<NAME> -> its default when unset or empty (None: no default; the reader decides).
DEFAULTS: dict[str, str | None] = {
    # what runs and where
    "MODEL": None, "MODE": "auto", "DEVICE": None, "OFFLOAD": "none", "GPU_MEMORY_GB": None, "PREVIEW": "estimate",
    "WORKERS": None, "REPLICAS": "0", "RAY_ADDRESS": None, "POOL_NAME": "kontext",
    "WORKER_THREADS": "1", "WORKER_WARMUP": "1",
    # serving
    "HOST": None, "PORT": None, "MCP": None, "GPU_SLOTS": "1", "MAX_WAITING": "16", "LOGIN": "none",
    "AUTH": None, "SECRET": None, "LOGIN_TRIES": "5", "LOGIN_MAX_WAIT_MINUTES": "15", "UPLOAD_KEEP_MINUTES": "5",
    "EXPORT_MB": "640", "LINKS_PER_SESSION": "20", "PER_ADDRESS": "2",  # per-visitor limits (README)
    # storage and caches
    "DATA": None, "MAX_IDLE_HOURS": "168", "MAX_DISK_GB": "20", "MAX_SESSION_MB": "512", "MIRROR": None,
    "MIRROR_EVERY": "60",
    "CACHE": None, "AOT_DIR": None,
    # the page
    "BRANDING": None, "TITLE": None, "ACCENT": None, "HIDE": None, "EXAMPLES": None,
    "SAFETY": None, "SAFETY_WORDS": None,
}


def setting(name: str) -> str | None:
    """$KONTEXT_<name>, or its default. A name without a default entry is a programming error."""
    return os.environ.get(f"KONTEXT_{name}") or DEFAULTS[name]


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (the same switch the `spaces` package itself reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def on_space() -> bool:
    """True on a Hugging Face Space (it sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))
