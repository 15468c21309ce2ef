"""Generation parameters and the AI disclosure, written into every PNG the app or the CLI saves.

Three text chunks:
- `parameters`: one readable block in the convention most image tools parse
  (prompt on the first line, then "Steps: …, Seed: …, …").
- `kontext`: the step as JSON, for exact replay.
- `XML:com.adobe.xmp`: XMP with the IPTC digital source type, the machine-readable
  "made or modified with AI" disclosure the FLUX.1 [dev] licence asks deployers to give.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from kontext import __version__

IPTC_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
IPTC_EDITED = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
APP_NAME = "kontext-playground"

_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/">
   <Iptc4xmpExt:DigitalSourceType>{source_type}</Iptc4xmpExt:DigitalSourceType>
   <xmp:CreatorTool>{tool}</xmp:CreatorTool>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


PNG_LEVEL = 1

def _xml_escape(s: str) -> str:
    """Text safe inside an XML element: XML 1.0 forbids most control characters even as references,
    so they become spaces; tab and newline stay."""
    s = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", " ", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def parameters_text(step: dict[str, Any]) -> str:
    """The readable `parameters` block: the prompt, then comma-separated key: value pairs."""
    fields = [
        ("Steps", step.get("steps")),
        ("Sampler", "Euler (flow matching)" if step.get("steps") else None),
        ("Guidance", step.get("guidance")),
        ("Seed", step.get("seed")),
        ("Size", f"{step.get('width')}x{step.get('height')}" if step.get("width") else None),
        ("Model", step.get("model")),
        ("Kind", step.get("kind")),
        ("Parent step", step.get("parent")),
        ("Version", f"{APP_NAME} {__version__}"),
    ]
    tail = ", ".join(f"{k}: {v}" for k, v in fields if v is not None and v != "")
    return f"{step.get('prompt', '')}\n{tail}"


def png_info(step: dict[str, Any]) -> PngImagePlugin.PngInfo:
    kind = step.get("kind")
    source_type = IPTC_GENERATED if kind == "text" else IPTC_EDITED
    if kind == "upload":
        source_type = ""  # an uploaded source image is not AI output; say nothing about it
    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", parameters_text(step))
    info.add_itxt("kontext", json.dumps(step, sort_keys=True))
    if source_type:
        what = "Generated" if kind == "text" else "Modified"
        info.add_itxt("XML:com.adobe.xmp", _XMP.format(
            source_type=source_type,
            tool=_xml_escape(f"{APP_NAME} {__version__} ({step.get('model', '')})"),
            description=_xml_escape(f"{what} with AI (FLUX.1 Kontext): {step.get('prompt', '')}"),
        ))
    return info


def png_bytes(image: Image.Image, step: dict[str, Any], level: int = PNG_LEVEL) -> bytes:
    """The PNG of a step with our three chunks and nothing else: no ICC profile, EXIF or other
    metadata an upload brought along (pixels are sRGB by then, see kontext.core.images)."""
    clean = image.copy()
    clean.info = {}
    buf = io.BytesIO()
    # Level 1: the encode is on every turn's path before it is acknowledged. On the examples at 1 MP
    # it takes 0.02-0.07 s against 0.03-0.15 s at level 4, for files at most a quarter larger
    # (scripts/png_levels.py, BENCHMARKS.md).
    clean.save(buf, format="PNG", pnginfo=png_info(step), compress_level=level)
    return buf.getvalue()


# Pixel layouts the stored form writes itself: PNG colour type per 8-bit mode.
_COLOUR_TYPE = {"L": 0, "RGB": 2, "RGBA": 6}
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def stored_png_bytes(image: Image.Image, step: dict[str, Any]) -> bytes:
    """The same PNG as `png_bytes` (pixels and chunks), with its pixels stored, not compressed.

    A turn is acknowledged only once its picture is on disk, and compressing 1 MP costs 0.03-0.11 s
    of that wait (zlib alone, on this project's 2-core machine) where storing costs under 0.01 s; the
    file is then compressed after the acknowledgement (kontext/files/compactor.py). Pillow's own
    level 0 still runs its row filters (0.07 s on noise), so the rows are written here with filter 0.
    Modes without an 8-bit PNG layout of their own go through Pillow.
    """
    colour = _COLOUR_TYPE.get(image.mode)
    if colour is None:
        return png_bytes(image, step, level=0)
    # The text chunks exactly as Pillow writes them: encode a 1x1 picture with the same info and
    # keep what lies between its header and its pixels.
    head = io.BytesIO()
    Image.new(image.mode, (1, 1)).save(head, format="PNG", pnginfo=png_info(step))
    raw = head.getvalue()
    ancillary, pos = [], len(_SIGNATURE)
    while pos < len(raw):
        (length,), kind = struct.unpack(">I", raw[pos:pos + 4]), raw[pos + 4:pos + 8]
        if kind not in (b"IHDR", b"IDAT", b"IEND"):
            ancillary.append(raw[pos:pos + 12 + length])
        pos += 12 + length
    w, h = image.size
    rows = bytearray()
    pixels = image.tobytes()
    stride = len(pixels) // h
    for y in range(h):  # filter type 0 (none) before every row
        rows += b"\x00"
        rows += pixels[y * stride:(y + 1) * stride]
    return b"".join([
        _SIGNATURE,
        _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)),
        *ancillary,
        _chunk(b"IDAT", zlib.compress(bytes(rows), 0)),
        _chunk(b"IEND", b""),
    ])


def read_metadata(source: str | Path | bytes | Image.Image) -> dict[str, Any]:
    """Read back what `png_info` wrote: {'parameters': str, 'step': dict, 'digital_source_type': str}."""
    img = source if isinstance(source, Image.Image) else Image.open(
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    text = dict(getattr(img, "text", {}) or {})
    out: dict[str, Any] = {"parameters": text.get("parameters"), "step": None, "digital_source_type": None}
    if "kontext" in text:
        try:
            out["step"] = json.loads(text["kontext"])
        except json.JSONDecodeError:
            pass
    xmp = text.get("XML:com.adobe.xmp", "")
    for uri in (IPTC_GENERATED, IPTC_EDITED):
        if uri in xmp:
            out["digital_source_type"] = uri
    return out
