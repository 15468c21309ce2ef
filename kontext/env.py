"""What the host's environment says about where the app runs, read in one place below every part."""

from __future__ import annotations

import os


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (the same switch the `spaces` package itself reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")
