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


def png_bytes(image: Image.Image, step: dict[str, Any]) -> bytes:
    """The PNG of a step with our three chunks and nothing else: no ICC profile, EXIF or other
    metadata an upload brought along (pixels are sRGB by then, see kontext.core.images)."""
    clean = image.copy()
    clean.info = {}
    buf = io.BytesIO()
    # Level 1: the encode is on every turn's path before it is acknowledged. On the examples at 1 MP
    # it takes 0.02-0.07 s against 0.03-0.15 s at level 4, for files at most a quarter larger
    # (scripts/png_levels.py, BENCHMARKS.md).
    clean.save(buf, format="PNG", pnginfo=png_info(step), compress_level=PNG_LEVEL)
    return buf.getvalue()


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
