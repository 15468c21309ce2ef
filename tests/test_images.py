import io

import numpy as np
import pytest
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
