"""Start-up output a user can act on: drop the library warnings that ask for no action.

transformers warns, on every import of diffusers' Flux pipelines, that its CLIP and SigLIP image
processors fall back to their Pillow versions because torchvision is missing. The playground never
uses those processors (they serve IP-adapter inputs), and installing torchvision would pull a second
CUDA build, so the advice only confuses. Loading a Kontext LoRA (transformer only) makes diffusers note
that the text encoder got no LoRA keys. The filters drop exactly those messages and nothing else.
"""

from __future__ import annotations

import logging

_LOGGER = "transformers.utils.import_utils"


class _NoTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("requires torchvision" in msg and "falling back to" in msg)


class _NoTextEncoderLoraNote(logging.Filter):
    """Kontext LoRAs train the transformer only: diffusers' note that the text encoder got none is no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No LoRA keys associated to" not in record.getMessage()


def silence_known_warnings() -> None:
    """Install the filters once (the loggers exist before the libraries are imported, so order is free)."""
    for name, kind in ((_LOGGER, _NoTorchvisionFallback), ("diffusers.loaders.lora_base", _NoTextEncoderLoraNote),
                       ("diffusers.loaders.lora_pipeline", _NoTextEncoderLoraNote),
                       ("diffusers.loaders.peft", _NoTextEncoderLoraNote)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())
