"""Two pictures as one context: the current image with a reference to its right.

FLUX.1 Kontext [dev] takes one context image. A reference (a style, a character, an object) is given
to it the way the community does: side by side, and the instruction says which is which ("restyle the
left image in the style of the right one"). The output keeps the current image's size and aspect.
"""

from __future__ import annotations

from PIL import Image

MAX_REFERENCE_RATIO = 1.0  # the reference may be at most as wide as the current image


def side_by_side(current: Image.Image, reference: Image.Image) -> Image.Image:
    """`current` on the left, `reference` scaled to its height on the right (narrowed if too wide,
    then centred on white), as one RGB image."""
    w, h = current.size
    rw, rh = reference.size
    scale = h / rh
    if rw * scale > w * MAX_REFERENCE_RATIO:
        scale = w * MAX_REFERENCE_RATIO / rw
    size = (max(1, round(rw * scale)), max(1, round(rh * scale)))
    ref = reference.convert("RGB").resize(size, Image.LANCZOS)
    out = Image.new("RGB", (w + size[0], h), (255, 255, 255))
    out.paste(current.convert("RGB"), (0, 0))
    out.paste(ref, (w, (h - size[1]) // 2))
    return out
