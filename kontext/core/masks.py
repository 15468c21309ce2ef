"""Masked edits: where an instruction may change the picture, and pasting the result back.

The model repaints inside the mask (diffusers' FluxKontextInpaintPipeline, sharing the loaded
weights), but a VAE round trip changes every pixel a little, and Kontext's own edits drift. So the
result is pasted onto the parent step through the mask, feathered only *inwards* (the soft edge lies
inside the painted area): every pixel outside the mask is copied from the parent, bit for bit, turn
after turn.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from kontext.errors import UserError

FEATHER_PX = 6  # the soft edge's width inside the mask, at the picture's own resolution


def check_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask as 8-bit L, 255 where the instruction may change the picture, at `size`.

    Accepts a painted layer (its alpha, if it has one) or any picture (non-black is "may change")."""
    if not isinstance(mask, Image.Image):
        raise UserError(f"mask must be a picture, got {type(mask).__name__}")
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        m = mask.convert("RGBA").getchannel("A")
    else:
        m = mask.convert("L")
    if m.size != size:
        m = m.resize(size, Image.NEAREST)
    m = m.point(lambda v: 255 if v >= 128 else 0)
    covered = np.count_nonzero(np.asarray(m)) / (size[0] * size[1])
    if covered == 0:
        raise UserError("the mask is empty: paint over the part of the picture the instruction may change")
    return m


def alpha(mask: Image.Image, feather: int = FEATHER_PX) -> Image.Image:
    """The paste-back weights: 0 outside the mask exactly, ramping to 255 over `feather` px inside."""
    if feather <= 0:
        return mask
    soft = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    # min(blur, mask): zero wherever the mask is zero, so nothing outside is ever touched.
    return Image.fromarray(np.minimum(np.asarray(soft), np.asarray(mask)))


def paste(parent: Image.Image, result: Image.Image, mask: Image.Image, feather: int = FEATHER_PX) -> Image.Image:
    """`result` (any size; scaled to the parent's) inside `mask` over `parent`; outside, the parent's pixels."""
    parent = parent.convert("RGB")
    if result.size != parent.size:
        result = result.convert("RGB").resize(parent.size, Image.LANCZOS)
    return Image.composite(result.convert("RGB"), parent, alpha(mask, feather))


def coverage(mask: Image.Image) -> float:
    """The share of the picture the mask lets change (0..1)."""
    return float(np.count_nonzero(np.asarray(mask))) / (mask.size[0] * mask.size[1])
