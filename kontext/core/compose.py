"""Several pictures as one context: the current image with up to three references to its right.

FLUX.1 Kontext [dev] takes one context image. References (a style, a character, an object) are given
to it the way the community does: side by side, left to right, and the instruction says which is
which ("restyle the left image in the style of the right one"). The output keeps the current image's
size and aspect.
"""

from __future__ import annotations

from PIL import Image

MAX_REFERENCE_RATIO = 1.0  # each reference may be at most as wide as the current image
MAX_MORE_REFERENCES = 2  # besides the first: three references in all
ROLES = ("style", "character", "object", "background", "other")


def side_by_side(current: Image.Image, reference: Image.Image, *more: Image.Image) -> Image.Image:
    """`current` on the left, then each reference scaled to its height (narrowed if too wide, then
    centred on white), left to right, as one RGB image."""
    w, h = current.size
    refs = []
    for r in (reference, *more):
        rw, rh = r.size
        scale = h / rh
        if rw * scale > w * MAX_REFERENCE_RATIO:
            scale = w * MAX_REFERENCE_RATIO / rw
        size = (max(1, round(rw * scale)), max(1, round(rh * scale)))
        refs.append(r.convert("RGB").resize(size, Image.LANCZOS))
    out = Image.new("RGB", (w + sum(r.width for r in refs), h), (255, 255, 255))
    out.paste(current.convert("RGB"), (0, 0))
    x = w
    for r in refs:
        out.paste(r, (x, (h - r.height) // 2))
        x += r.width
    return out
