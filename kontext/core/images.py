"""Opening untrusted images safely and turning them into what the pipeline expects (8-bit RGB).

Pillow only warns on decompression bombs and tries dozens of formats; we allow a short list of
formats, treat the bomb warning as an error, and normalise modes the Kontext pipeline mishandles
(RGBA and CMYK crash it, 16-bit images go through mis-scaled).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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


def open_image(source: str | Path | bytes | Image.Image, name: str = "image") -> Image.Image:
    """Open and validate an image from a path, bytes or a PIL image; return it as 8-bit RGB.

    Raises UserError naming `name` and the limit it broke.
    """
    return to_rgb(decode_image(source, name))


def decode_image(source: str | Path | bytes | Image.Image, name: str = "image",
                 size: tuple[int, int] | None = None) -> Image.Image:
    """Every check an upload gets (file size, format, dimensions and pixel count before any pixel is
    decoded), then the pixels as they are: mode, alpha and profile kept. `size`: the only size
    accepted (a mask for a picture), also checked before decoding."""
    if isinstance(source, Image.Image):
        img = source
        _check_size(img.size, name, size)
    else:
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
        img = _decode(data, name, size)
    return img


def _decode(data: bytes, name: str, size: tuple[int, int] | None = None) -> Image.Image:
    if not data:
        raise UserError(f"{name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            _check_size(img.size, name, size)  # before decoding any pixels
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
            raise UserError(f"{name}: the file is damaged or truncated ({type(e).__name__})") from None
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/WebP: edit the first frame
    return img


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
    try:
        img = ImageOps.exif_transpose(img)
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
    return out


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Pixels converted from the embedded profile to sRGB; unchanged when the profile is unusable."""
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
    except Exception:  # noqa: BLE001 - a damaged or foreign profile: keep the pixels as they are
        return img
