"""A corpus of hostile and odd image files, made here (nothing downloaded).

`corpus()` returns (file name, bytes, expected) with expected "ok" (a valid picture that must be
accepted and turned into RGB) or "refused" (must be answered with a plain message).
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageCms

from kontext.core.images import MAX_FILE_BYTES, MAX_SIDE


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def _png_with_header(width: int, height: int, extra: bytes = b"", bad_crc: bool = False) -> bytes:
    """A PNG whose IHDR declares width x height, with a tiny (wrong-sized) IDAT: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, crc=0 if bad_crc else None) + extra
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def _photo(size=(96, 64), mode="RGB") -> Image.Image:
    return Image.effect_noise(size, 40).convert(mode)


def _bmp_header(width: int, height: int) -> bytes:
    row = ((24 * width + 31) // 32) * 4
    return (b"BM" + struct.pack("<IHHI", 54 + row * abs(height), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * abs(height), 2835, 2835, 0, 0)
            + b"\x00" * 64)


def _gif_header(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b",\x00\x00\x00\x00"
            + struct.pack("<HH", width, height) + b"\x00\x02\x02\x44\x01\x00;")


def _jpeg_header(width: int, height: int) -> bytes:
    good = _save(_photo((32, 32)), "JPEG")
    i = good.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    return good[:i + 5] + struct.pack(">HH", height, width) + good[i + 9:]


def _webp_header(width: int, height: int) -> bytes:
    good = bytearray(_save(_photo((32, 32)), "WEBP", lossless=True))
    i = good.index(b"VP8L") + 8  # signature byte, then 14-bit width-1 and height-1
    bits = (width - 1) | ((height - 1) << 14)
    good[i + 1:i + 5] = struct.pack("<I", bits | (int.from_bytes(good[i + 1:i + 5], "little") & ~0x0FFFFFFF))
    return bytes(good)


def corpus() -> list[tuple[str, bytes, str]]:
    photo = _photo()
    good_png = _png(photo)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out: list[tuple[str, bytes, str]] = [
        # --- not images at all ---
        ("empty.png", b"", "refused"),
        ("one-byte.png", b"\x89", "refused"),
        ("html.png", b"<!doctype html><html><body><script>alert(1)</script></body></html>", "refused"),
        ("svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect/></svg>', "refused"),
        ("pdf.png", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF", "refused"),
        ("zip.png", b"PK\x05\x06" + b"\x00" * 18, "refused"),
        ("garbage.heic", b"\x00\x00\x00\x18ftypheic" + bytes(range(256)) * 4, "refused"),
        ("text.jpg", b"just some words, not a picture\n" * 20, "refused"),
        ("json.webp", b'{"image": "no"}', "refused"),
        ("elf.gif", b"\x7fELF\x02\x01\x01" + b"\x00" * 100, "refused"),
        ("random.bmp", bytes((i * 7919) % 256 for i in range(4096)), "refused"),
        ("nul.tiff", b"\x00" * 4096, "refused"),
        # --- formats this app does not read (Pillow would try them) ---
        ("photo.psd", b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + b"\x00" * 64,
         "refused"),
        ("photo.ico", _save(_photo((32, 32)), "ICO"), "refused"),
        ("photo.tga", _save(_photo((32, 32)), "TGA"), "refused"),
        ("photo.pcx", _save(_photo((32, 32)), "PCX"), "refused"),
        ("photo.ppm", _save(_photo((32, 32)), "PPM"), "refused"),
        ("photo.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "refused"),
        ("photo.fits", b"SIMPLE  =                    T" + b" " * 2850, "refused"),
        # --- damaged PNGs ---
        ("bad-ihdr-crc.png", _png_with_header(64, 64, bad_crc=True), "refused"),
        ("huge-declared-chunk.png", good_png[:33] + struct.pack(">I", 2**31 - 1) + b"tEXt" + b"x" * 100, "refused"),
        ("bytes-before-signature.png", b"JUNK" + good_png, "refused"),
        ("truncated-half.png", good_png[: len(good_png) // 2], "refused"),
        ("truncated-header.png", good_png[:20], "refused"),
        ("signature-only.png", b"\x89PNG\r\n\x1a\n", "refused"),
        ("idat-garbage.png", good_png[:33] + _chunk(b"IDAT", b"not zlib at all" * 10) + _chunk(b"IEND", b""),
         "refused"),
        ("ztxt-bomb.png", _png_with_header(64, 64, _chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 50_000_000))),
         "refused"),
        ("iccp-bomb.png", _png_with_header(64, 64, _chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * 50_000_000))),
         "refused"),
        # --- sizes beyond the limits ---
        ("tiny-1x1.png", _png(Image.new("RGB", (1, 1))), "refused"),
        ("tiny-8x8.png", _png(Image.new("RGB", (8, 8))), "refused"),
        ("side-too-long.png", _png(Image.new("L", (MAX_SIDE + 16, 2100))), "refused"),
        ("aspect-5-to-1.png", _png(Image.new("RGB", (500, 100))), "refused"),
        ("bomb-12000.png", _png_with_header(12000, 12000), "refused"),
        ("bomb-60000.png", _png_with_header(60000, 60000), "refused"),
        ("bomb.gif", _gif_header(30000, 30000), "refused"),
        ("bomb.bmp", _bmp_header(30000, 30000), "refused"),
        ("bomb.jpg", _jpeg_header(30000, 30000), "refused"),
        ("bomb.webp", _webp_header(16000, 16000), "refused"),
        ("bomb-6500x6500.png", _png_with_header(6500, 6500), "refused"),  # sides fine, 42 MP: too many pixels
        ("too-big-file.png", good_png + b"\x00" * (MAX_FILE_BYTES + 1), "refused"),
        # --- odd but valid: accepted as RGB ---
        ("rgb.png", good_png, "ok"),
        ("rgba.png", _png(_photo(mode="RGBA")), "ok"),
        ("la.png", _png(_photo(mode="LA")), "ok"),
        ("gray.png", _png(_photo(mode="L")), "ok"),
        ("1bit.png", _png(_photo(mode="1")), "ok"),
        ("palette.png", _png(_photo(mode="P")), "ok"),
        ("palette-transparent.png", _png(_photo(mode="P"), transparency=0), "ok"),
        ("16bit-gray.png", _png(_photo(mode="L").point(lambda v: v * 257, "I").convert("I;16")), "ok"),
        ("interlaced.png", _png(photo, optimize=False), "ok"),
        ("cmyk.jpg", _save(_photo(mode="CMYK"), "JPEG"), "ok"),
        ("gray.jpg", _save(_photo(mode="L"), "JPEG"), "ok"),
        ("progressive.jpg", _save(photo, "JPEG", progressive=True), "ok"),
        ("exif-rotated.jpg", _save(photo, "JPEG", exif=_rotated_exif()), "ok"),
        ("with-gps-exif.jpg", _save(photo, "JPEG", exif=_gps_exif()), "ok"),
        ("srgb-profile.jpg", _save(photo, "JPEG", icc_profile=srgb), "ok"),
        ("big-icc-profile.jpg", _save(photo, "JPEG", icc_profile=srgb + b"\x00" * 1_200_000), "ok"),
        ("garbage-icc-profile.png", _png(photo, icc_profile=b"not a profile" * 1000), "ok"),
        ("lossless.webp", _save(photo, "WEBP", lossless=True), "ok"),
        ("lossy.webp", _save(photo, "WEBP", quality=50), "ok"),
        ("animated.gif", _animated_gif(), "ok"),
        ("photo.bmp", _save(photo, "BMP"), "ok"),
        ("lzw.tiff", _save(photo, "TIFF", compression="tiff_lzw"), "ok"),
        ("rgba.tiff", _save(_photo(mode="RGBA"), "TIFF"), "ok"),
        ("wrong-extension.jpg", good_png, "ok"),  # a PNG named .jpg is still a PNG
        ("no-extension", good_png, "ok"),
        ("tall-1-to-4.png", _png(Image.new("RGB", (100, 400), "teal")), "ok"),
    ]
    return out


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    return exif.tobytes()


def _gps_exif() -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)}
    return exif.tobytes()


def _animated_gif() -> bytes:
    frames = [_photo(mode="P") for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()
