"""Opening untrusted images safely and turning them into what the pipeline expects (8-bit RGB).

Pillow only warns on decompression bombs and tries dozens of formats; we allow a short list of
formats, treat the bomb warning as an error, and normalise modes the Kontext pipeline mishandles
(RGBA and CMYK crash it, 16-bit images go through mis-scaled).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from kontext.errors import UserError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000  # 40 MP, e.g. 8000x5000
MAX_ASPECT = 4.0
MAX_FILE_BYTES = 50 * 1024 * 1024
# Every Pillow decode in the process (gradio's of an upload too) refuses what ours refuses: the same
# answer whatever was imported first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def source_name(name: object, limit: int = 120) -> str:
    """A client's file name fit to name a step: its last path part, without control characters,
    whitespace collapsed, at most `limit` characters ("" if there is none)."""
    if not isinstance(name, str):
        return ""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    text = " ".join("".join(c for c in last if c.isprintable()).split())
    return text[:limit]


def open_image(source: str | Path | bytes | Image.Image, name: str = "image",
               fit: int | None = None) -> Image.Image:
    """Open and validate an image from a path, bytes or a PIL image; return it as 8-bit RGB.

    `fit`: the caller keeps only a copy scaled down into a fit x fit box, so it is returned at the
    size `Image.thumbnail((fit, fit))` gives the upright picture. A JPEG is then decoded by libjpeg at
    1/2, 1/4 or 1/8 scale (`draft`) where that is still at least that size, and resampled from there:
    an 8000x5000 photo kept at 2048 px is decoded at 4000x2500, not in full.

    Raises UserError naming `name` and the limit it broke.
    """
    img, full, box = _open(source, name, None, fit)
    out, orientation = _upright_rgb(img)
    upright = full[::-1] if orientation in _SWAPS else full
    target = None if fit is None else fit_size(upright, fit)
    if target is None or out.size == target:
        return out
    if out.size == upright:
        out.thumbnail((fit, fit), Image.LANCZOS)  # not drafted: exactly what callers did before
        return out
    # Drafted: the decoded box may end mid-pixel; it maps back exactly only while the picture is unturned.
    return out.resize(target, Image.LANCZOS, box=box if orientation == 1 else None, reducing_gap=2.0)


def fit_size(size: tuple[int, int], fit: int) -> tuple[int, int] | None:
    """The size `Image.thumbnail((fit, fit))` makes of a `size` picture; None when it already fits."""
    w, h = size
    if w <= fit and h <= fit:
        return None
    aspect = w / h

    def rounded(n: float, key) -> int:  # Pillow's rounding: the side whose ratio is closest
        return max(min(math.floor(n), math.ceil(n), key=key), 1)

    if aspect <= 1:
        return rounded(fit * aspect, lambda n: abs(aspect - n / fit)), fit
    return fit, rounded(fit / aspect, lambda n: 0 if n == 0 else abs(aspect - fit / n))


def decode_image(source: str | Path | bytes | Image.Image, name: str = "image",
                 size: tuple[int, int] | None = None) -> Image.Image:
    """Every check an upload gets (file size, format, dimensions and pixel count before any pixel is
    decoded), then the pixels as they are: mode, alpha and profile kept. `size`: the only size
    accepted (a mask for a picture), also checked before decoding."""
    return _open(source, name, size)[0]


def _open(source: str | Path | bytes | Image.Image, name: str, size: tuple[int, int] | None = None,
          fit: int | None = None) -> tuple[Image.Image, tuple[int, int], tuple[float, ...] | None]:
    """The decoded picture, its size before any draft, and the part of it the full picture maps to
    (None unless a JPEG was drafted for `fit`)."""
    if isinstance(source, Image.Image):
        _check_size(source.size, name, size)
        return source, source.size, None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"{name}: file not found: {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MB")
        data = path.read_bytes()
    else:
        data = bytes(source)
        if len(data) > MAX_FILE_BYTES:
            raise UserError(f"{name}: file is larger than {MAX_FILE_BYTES // 2**20} MB")
    return _decode(data, name, size, fit)


def _decode(data: bytes, name: str, size: tuple[int, int] | None = None,
            fit: int | None = None) -> tuple[Image.Image, tuple[int, int], tuple[float, ...] | None]:
    if not data:
        raise UserError(f"{name}: the file is empty")
    box = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            full = img.size
            _check_size(full, name, size)  # before decoding any pixels
            target = fit_size(full, fit) if fit is not None and img.format == "JPEG" else None
            if target is not None:  # the decoder's own downscale, never below the size kept
                drafted = img.draft(None, target)
                box = drafted[1] if drafted is not None and img.size != full else None
            img.load()
        except UserError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise UserError(f"{name}: more than {MAX_PIXELS:,} pixels") from None
        except Image.UnidentifiedImageError:
            raise UserError(
                f"{name}: not an image this app reads (allowed: {', '.join(ALLOWED_FORMATS)})"
            ) from None
        except Exception as e:  # noqa: BLE001 - decoders of damaged files raise all sorts (struct.error, ...)
            why = _chunk_bomb(e) or f"the file is damaged or truncated ({type(e).__name__})"
            raise UserError(f"{name}: {why}") from None
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/WebP: edit the first frame
    return img, full, box


def _chunk_bomb(e: Exception) -> str | None:
    """Plain words for Pillow's refusal of a PNG whose compressed metadata (zTXt/iTXt text, an iCCP
    colour profile) unpacks past its limits (PngImagePlugin._safe_zlib_decompress, check_text_memory)."""
    if not isinstance(e, ValueError):
        return None
    if str(e).startswith("Decompressed data too large"):
        return (f"a compressed text or colour-profile chunk expands to more than "
                f"{_mb(PngImagePlugin.MAX_TEXT_CHUNK)} when unpacked (a decompression bomb)")
    if str(e).startswith("Too much memory used in text chunks"):
        return (f"its text chunks together hold more than {_mb(PngImagePlugin.MAX_TEXT_MEMORY)} "
                "(a decompression bomb)")
    return None


def _mb(n: int) -> str:
    return f"{n / 2**20:g} MB"


def _check_size(size: tuple[int, int], name: str, expected: tuple[int, int] | None = None) -> None:
    w, h = size
    if expected is not None and (w, h) != tuple(expected):
        raise UserError(f"{name} is {w}x{h} but the picture is {expected[0]}x{expected[1]}: a mask must be "
                        "painted on the picture it is for (same size)")
    if w < MIN_SIDE or h < MIN_SIDE:
        raise UserError(f"{name}: {w}x{h} is too small; each side must be at least {MIN_SIDE} px")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise UserError(f"{name}: {w}x{h} is too large; each side must be at most {MAX_SIDE} px")
    if w * h > MAX_PIXELS:
        raise UserError(f"{name}: {w}x{h} has more than {MAX_PIXELS:,} pixels")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise UserError(f"{name}: aspect ratio {w}x{h} is more extreme than {MAX_ASPECT:g}:1")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to 8-bit sRGB: alpha is composited on white, 16-bit is scaled, EXIF rotation applied,
    an embedded colour profile converted to sRGB; the result carries no metadata (`info` is empty)."""
    return _upright_rgb(img)[0]


_SWAPS = (5, 6, 7, 8)  # EXIF orientations that turn the picture a quarter: width and height swap


def _upright_rgb(img: Image.Image) -> tuple[Image.Image, int]:
    """to_rgb's picture and the EXIF orientation it applied (1: none)."""
    orientation = 1
    try:
        turn = img.getexif().get(ExifTags.Base.Orientation, 1)
        img = ImageOps.exif_transpose(img)
        orientation = turn if turn in range(2, 9) else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the picture
        pass
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "RGBA", "CMYK", "L"):
        img = _to_srgb(img, icc)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and arr.max() > 255 else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    out = img.convert("RGB") if img.mode != "RGB" else img.copy()
    out.info = {}  # never carry an upload's profile, EXIF (GPS) or text chunks into our PNGs
    return out, orientation


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Pixels converted from the embedded profile to sRGB; unchanged when the profile is unusable."""
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except Exception:  # noqa: BLE001 - a damaged or foreign profile: keep the pixels as they are
        return img
