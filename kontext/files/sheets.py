"""Pictures of a history for slides: an animated GIF/WebP of a path and a contact-sheet PNG.

Pillow only. Every frame is letterboxed to one size (steps can differ in aspect ratio) with a small
caption strip below it, so a viewer always sees which step and prompt made the picture.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from kontext.core.history import Node
from kontext.errors import UserError

BACKGROUND = (24, 24, 27)
TEXT = (235, 235, 235)
ANIMATION_FORMATS = ("gif", "webp")
MAX_COLUMNS = 6


def caption(node: Node) -> str:
    """'Step 3: make the sky stormy' (one line; uploads have no prompt of their own)."""
    text = " ".join(node.prompt.split()) or ("uploaded image" if node.kind == "upload" else "")
    return f"Step {node.id}: {text}"


@lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text` cut with an ellipsis so it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if draw.textlength(text[:mid] + "…", font=font) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int) -> list[str]:
    """Greedy word wrap into at most `lines` lines; the last one is cut with an ellipsis."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line = f"{line} {words.pop(0)}"
        if len(out) == lines - 1 and words:
            line = f"{line} {' '.join(words)}"
            words = []
        out.append(_fit_text(draw, line, font, width))
    return out


def thumbnail(png: bytes, side: int) -> Image.Image:
    """A stored PNG decoded and shrunk so its longer side is at most `side` (small enough to keep)."""
    with Image.open(io.BytesIO(png)) as im:
        small = im.convert("RGB")
    small.thumbnail((side, side), Image.BICUBIC, reducing_gap=2.0)  # a box reduce first: fast at 1 MP
    return small


def _box_size(images: Sequence[Image.Image], max_side: int) -> tuple[int, int]:
    """The smallest box every image fits in, scaled down so its longer side is at most `max_side`."""
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _captioned(img: Image.Image, box: tuple[int, int], text: str, lines: int = 1) -> Image.Image:
    """`img` fitted (aspect kept, centred) into `box`, with `text` in a strip below it."""
    bw, bh = box
    px = max(10, min(bw // 28, 22))
    font = _font(px)
    strip = int(px * 1.45) * lines + px // 2
    frame = Image.new("RGB", (bw, bh + strip), BACKGROUND)
    fitted = img.convert("RGB")
    fitted.thumbnail(box, Image.BICUBIC, reducing_gap=2.0)
    frame.paste(fitted, ((bw - fitted.width) // 2, (bh - fitted.height) // 2))
    draw = ImageDraw.Draw(frame)
    for i, line in enumerate(_wrap(draw, text, font, bw - px, lines)):
        draw.text((px // 2, bh + px // 4 + i * int(px * 1.45)), line, fill=TEXT, font=font)
    return frame


def animation(frames: Sequence[tuple[Image.Image, str]], *, fmt: str = "gif", max_side: int = 512,
              frame_ms: int = 1000) -> bytes:
    """An animated GIF or WebP, one frame per (image, caption), each shown `frame_ms`, looping."""
    if fmt not in ANIMATION_FORMATS:
        raise UserError(f"animation format must be one of {ANIMATION_FORMATS}, got {fmt!r}")
    if not frames:
        raise UserError("nothing to animate: the path has no steps")
    box = _box_size([im for im, _ in frames], max_side)
    out = [_captioned(im, box, text) for im, text in frames]
    buf = io.BytesIO()
    if fmt == "gif":
        # Pillow's default median-cut palette costs ~0.3 s per 512 px frame; fast octree ~20x less.
        out = [im.quantize(256, method=Image.Quantize.FASTOCTREE) for im in out]
        # Pillow merges identical consecutive frames; captions differ per step, so none are merged.
        out[0].save(buf, format="GIF", save_all=True, append_images=out[1:], duration=frame_ms, loop=0)
    else:
        out[0].save(buf, format="WEBP", save_all=True, append_images=out[1:], duration=frame_ms, loop=0,
                    quality=85)
    return buf.getvalue()


def contact_sheet(items: Sequence[tuple[Image.Image, str]], *, thumb: int = 256,
                  columns: int | None = None) -> bytes:
    """A PNG grid of thumbnails (longer side `thumb`), each with two lines of caption."""
    if not items:
        raise UserError("nothing to show: the history has no steps")
    cols = columns or min(MAX_COLUMNS, math.ceil(math.sqrt(len(items))))
    box = _box_size([im for im, _ in items], thumb)
    cells = [_captioned(im, box, text, lines=2) for im, text in items]
    gap = max(4, thumb // 32)
    cw, ch = cells[0].size
    rows = math.ceil(len(cells) / cols)
    sheet = Image.new("RGB", (cols * cw + (cols + 1) * gap, rows * ch + (rows + 1) * gap), BACKGROUND)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        sheet.paste(cell, (gap + c * (cw + gap), gap + r * (ch + gap)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
