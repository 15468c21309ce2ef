"""Start-up output a user can act on: drop the library warnings that ask for no action.

transformers warns, on every import of diffusers' Flux pipelines, that its CLIP and SigLIP image
processors fall back to their Pillow versions because torchvision is missing. The playground never
uses those processors (they serve IP-adapter inputs), and installing torchvision would pull a second
CUDA build, so the advice only confuses. The filter drops exactly that message and nothing else.
"""

from __future__ import annotations

import logging

_LOGGER = "transformers.utils.import_utils"


class _NoTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("requires torchvision" in msg and "falling back to" in msg)


def silence_known_warnings() -> None:
    """Install the filter once (the logger exists before transformers is imported, so order is free)."""
    log = logging.getLogger(_LOGGER)
    if not any(isinstance(f, _NoTorchvisionFallback) for f in log.filters):
        log.addFilter(_NoTorchvisionFallback())
