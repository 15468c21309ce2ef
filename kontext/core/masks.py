"""Masked edits: where an instruction may change the picture, and pasting the result back.

The model repaints inside the mask (diffusers' FluxKontextInpaintPipeline, sharing the loaded
weights), but a VAE round trip changes every pixel a little, and Kontext's own edits drift. So the
result is pasted onto the parent step through the mask, feathered only *inwards* (the soft edge lies
inside the painted area): every pixel outside the mask is copied from the parent, bit for bit, turn
after turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from kontext.core.images import decode_image, to_rgb
from kontext.errors import UserError

FEATHER_PX = 6  # the soft edge's width inside the mask, at the picture's own resolution


MAX_LAYERS = 8  # painted layers one mask may be made of (the page's painter sends one)

RULE = ("a picture with an alpha channel is painted where it is opaque (alpha 128 or more), as the page's "
        "painter makes it; a picture without one is painted where it is light (luminance 128 or more): "
        "white may change, black stays")


def painted(layer: Image.Image) -> Image.Image:
    """The one mask rule (RULE), for the page, the API, MCP and imports alike: 8-bit L, 255 where
    the instruction may change the picture. 16-bit, palette and CMYK layers are read through
    kontext.core.images.to_rgb, so they mean what they show."""
    if not isinstance(layer, Image.Image):
        raise UserError(f"mask must be a picture, got {type(layer).__name__}")
    if layer.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in layer.info:
        m = layer.convert("RGBA").getchannel("A")
    elif layer.mode.startswith("I") or layer.mode == "F":  # 16/32-bit grey: light is half its full range
        top = 1.0 if layer.mode == "F" else 65535.0
        return Image.fromarray(np.where(np.asarray(layer, dtype=np.float64) >= top / 2, 255, 0).astype(np.uint8))
    else:
        m = to_rgb(layer).convert("L")
    return m.point(lambda v: 255 if v >= 128 else 0)


def read_mask(layers: Sequence[Any], size: tuple[int, int], name: str = "mask") -> Image.Image:
    """A mask from painted layers (paths, bytes or pictures; any layer painted = painted), each
    checked like an upload and required to have the picture's `size` before it is decoded."""
    if not layers:
        raise UserError(f"{name}: nothing is painted: paint over the part of the picture the instruction may change")
    if len(layers) > MAX_LAYERS:
        raise UserError(f"{name} has {len(layers)} layers; at most {MAX_LAYERS}")
    union: Image.Image | None = None
    for i, layer in enumerate(layers, 1):
        label = name if len(layers) == 1 else f"{name} layer {i}"
        m = painted(decode_image(layer, label, size))  # one layer decoded at a time
        union = m if union is None else ImageChops.lighter(union, m)
    return check_mask(union, size)


def check_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask (by RULE) that fits a picture of `size` exactly and lets something change, as 0/255 L."""
    if not isinstance(mask, Image.Image):
        raise UserError(f"mask must be a picture, got {type(mask).__name__}")
    if mask.size != tuple(size):
        raise UserError(f"the mask is {mask.size[0]}x{mask.size[1]} but the picture is {size[0]}x{size[1]}: a mask "
                        "must be painted on the picture it is for (same size)")
    # painted() thresholds; an L mask (the stored kind) is thresholded here, once.
    plain_l = mask.mode == "L" and not mask.info.get("transparency")
    m = mask.point(lambda v: 255 if v >= 128 else 0) if plain_l else painted(mask)
    if not np.count_nonzero(np.asarray(m)):
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
