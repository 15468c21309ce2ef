"""How long the PNG encode of a 1 MP step takes at each zlib level, and how large it is.

The encode runs on every turn's path before the turn is acknowledged (kontext/core/metadata.py
png_bytes, PNG_LEVEL). Pictures: the bundled examples scaled to 1024x1024, and a noise picture like
the random-weight models draw. Prints a markdown table; run `python scripts/png_levels.py`.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 2, 4, 6)
RUNS = 3


def pictures() -> list[tuple[str, Image.Image]]:
    out = [(p.name, Image.open(p).convert("RGB").resize((1024, 1024), Image.LANCZOS))
           for p in sorted((ROOT / "assets" / "examples").glob("*.jpg"))]
    noise = np.random.default_rng(0).integers(90, 170, (1024, 1024, 3), dtype=np.uint8)
    return [*out, ("noise (random weights)", Image.fromarray(noise))]


def encode(img: Image.Image, level: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(RUNS):
        buf = io.BytesIO()
        t0 = time.perf_counter()
        img.save(buf, format="PNG", compress_level=level)
        best, size = min(best, time.perf_counter() - t0), buf.tell()
    return best, size


def main() -> int:
    print("| picture (1024x1024) | " + " | ".join(f"level {lv}: s, KB" for lv in LEVELS) + " |")
    print("|---|" + "---|" * len(LEVELS))
    for name, img in pictures():
        cells = [f"{s:.3f}, {n // 1024}" for s, n in (encode(img, lv) for lv in LEVELS)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
