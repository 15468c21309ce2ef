import io

import numpy as np
import pytest
from hostile_corpus import _jpeg_header
from PIL import Image

from kontext.core.images import open_image


def encode(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    out = open_image(encode(img))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255)


def test_cmyk_and_palette_become_rgb():
    assert open_image(encode(Image.new("CMYK", (40, 40)), "JPEG")).mode == "RGB"
    assert open_image(encode(Image.new("P", (40, 40)))).mode == "RGB"


def test_16_bit_is_scaled_not_clipped():
    arr = np.full((40, 40), 32768, dtype=np.uint16)
    out = open_image(encode(Image.fromarray(arr, "I;16")))
    assert 120 <= out.getpixel((0, 0))[0] <= 135


@pytest.mark.parametrize("data, msg", [
    (b"not an image at all", "not an image"),
    (encode(Image.new("RGB", (8, 8))), "too small"),
    (encode(Image.new("RGB", (400, 40))), "aspect ratio"),
])
def test_bad_images_are_rejected_in_plain_words(data, msg):
    with pytest.raises(ValueError, match=msg):
        open_image(data)


def test_decompression_bomb_is_rejected_fast():
    # 12000x12000 of one colour: tiny on disk, 430 MB decoded.
    data = encode(Image.new("L", (12000, 12000)))
    assert len(data) < 200_000
    with pytest.raises(ValueError, match="too large|pixels"):
        open_image(data)


def test_truncated_file_is_rejected():
    data = encode(Image.effect_noise((200, 200), 50))
    with pytest.raises(ValueError, match="damaged|truncated|not an image"):
        open_image(data[: len(data) // 2])


def test_missing_file_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="--image: file not found"):
        open_image(tmp_path / "nope.png", "--image")


def test_the_xmp_disclosure_stays_well_formed_with_control_characters():
    import io
    import xml.etree.ElementTree as ET

    from kontext.core.metadata import png_bytes

    prompt = "make it \x00blue\x07 & <bold>\x1b[31m \ufffe"
    data = png_bytes(Image.new("RGB", (32, 32)), {"kind": "edit", "prompt": prompt, "model": "tiny"})
    xmp = Image.open(io.BytesIO(data)).text["XML:com.adobe.xmp"]
    body = xmp[xmp.index("<x:xmpmeta"):xmp.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    root = ET.fromstring(body)  # raises on malformed XML
    assert "blue" in "".join(root.itertext()) and "<bold>" in "".join(root.itertext())


def test_source_names_keep_only_the_file_name():
    from kontext.core.images import source_name

    assert source_name("C:\\Users\\ann\\cat photo.png") == "cat photo.png"
    assert source_name("../../etc/passwd") == "passwd"
    assert source_name("a\x00b\nc\u202e.png") == "abc.png"
    assert source_name("x" * 500) == "x" * 120
    assert source_name(None) == "" and source_name("") == ""


@pytest.fixture
def decoded(monkeypatch):
    """The sizes at which Pillow loads pixels while it runs (after any draft; a loaded picture repeats)."""
    from PIL import ImageFile

    seen: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        seen.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


def thumbnailed(data, side):
    """What a caller that keeps a copy at most `side` px got before `fit`: the full decode, thumbnailed."""
    img = open_image(data)
    img.thumbnail((side, side), Image.LANCZOS)
    return img


def test_a_jpeg_kept_smaller_is_decoded_at_a_reduced_scale_and_sized_as_before(decoded):
    photo = Image.linear_gradient("L").resize((2000, 1250)).convert("RGB")
    data = encode(photo, "JPEG", quality=90)
    out = open_image(data, "reference", fit=480)
    assert set(decoded) == {(500, 313)}  # libjpeg's 1/4 scale: still above the 480x300 kept, never the 2.5 MP
    before = thumbnailed(data, 480)
    assert out.size == before.size == (480, 300) and out.mode == "RGB" and out.info == {}
    diff = np.abs(np.asarray(out, np.int16) - np.asarray(before, np.int16))
    assert diff.mean() < 2  # the same picture, resampled from a nearer size


def test_a_turned_jpeg_kept_smaller_has_the_size_it_had(decoded):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 1001 wide, 1999 tall
    data = encode(Image.effect_noise((1999, 1001), 30).convert("RGB"), "JPEG", exif=exif.tobytes())
    out = open_image(data, "reference", fit=333)
    assert set(decoded) == {(500, 251)} and out.size == thumbnailed(data, 333).size == (167, 333)


def test_what_fits_or_is_no_jpeg_is_kept_exactly_as_before(decoded):
    small = encode(Image.effect_noise((300, 200), 30).convert("RGB"), "JPEG")
    assert decoded == [] and open_image(small, fit=512).tobytes() == open_image(small).tobytes()
    png = encode(Image.effect_noise((900, 600), 30).convert("RGB"))
    assert open_image(png, fit=256).tobytes() == thumbnailed(png, 256).tobytes()
    decoded.clear()
    with pytest.raises(ValueError, match="more than 40,000,000 pixels"):  # refused before any pixel
        open_image(_jpeg_header(6400, 6400), "reference", fit=2048)
    assert decoded == []


def test_fit_size_is_the_size_thumbnail_makes():
    from kontext.core.images import fit_size

    for w, h in [(16, 16), (17, 900), (900, 17), (1001, 1999), (640, 480), (333, 334), (1000, 999)]:
        for side in (16, 64, 333, 500, 1000):
            img = Image.new("1", (w, h))
            img.thumbnail((side, side))
            assert fit_size((w, h), side) == (None if img.size == (w, h) else img.size), (w, h, side)
