"""Disk per step and export time at full size, without a model: 1024x1024 photo-like steps stored the
way the app stores them (PNG with metadata, fsync, atomic history), then exported.

    python scripts/bench_store.py --steps 20 --photo path/to/photo.jpg

Without --photo it uses a photo that ships with gradio. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--photo", default=None)
    args = ap.parse_args()

    from PIL import Image, ImageEnhance

    from kontext.core import metadata
    from kontext.core.history import History, Node
    from kontext.files.export import write_export
    from kontext.files.store import Store, new_key
    from kontext.sessions.session import step_dict

    if args.photo is None:
        import gradio

        args.photo = str(Path(gradio.__file__).parent / "media_assets" / "images" / "cheetah.jpg")
    base = Image.open(args.photo).convert("RGB").resize((args.side, args.side), Image.LANCZOS)
    store = Store(Path(tempfile.mkdtemp()) / "sessions")
    key = new_key()
    h = History()
    sizes, encode_s = [], []
    for i in range(args.steps):
        # Each step a slightly different picture, as edits are.
        img = ImageEnhance.Color(base.rotate(i * 3, resample=Image.BICUBIC)).enhance(1 + i / 20)
        node = Node(id=h.next_id(), parent=h.current, kind="upload" if i == 0 else "edit", image="",
                    prompt="" if i == 0 else f"edit {i}", seed=i, guidance=2.5, steps=28,
                    width=args.side, height=args.side, model="black-forest-labs/FLUX.1-Kontext-dev")
        t = time.perf_counter()
        png = metadata.png_bytes(img, step_dict(node))
        encode_s.append(time.perf_counter() - t)
        sizes.append(len(png))
        name = store.save_image(key, png)
        h = h.add(replace(node, image=name), parent=None if i == 0 else ...)
        store.commit(key, h)
    folder_bytes = sum(p.stat().st_size for p in store.folder(key).rglob("*") if p.is_file())

    def export(extras: bool) -> tuple[float, int]:
        buf = io.BytesIO()
        t = time.perf_counter()
        write_export(h, lambda n: store.read_image_bytes(key, n), buf, scope="path", extras=extras)
        return time.perf_counter() - t, len(buf.getvalue())

    plain = [export(False) for _ in range(3)]
    extras = [export(True) for _ in range(2)]
    mb = 1e6
    print(f"{args.steps} steps of {args.side}x{args.side}, photo {Path(args.photo).name}\n")
    print("| what | figure |\n|---|---|")
    print(f"| PNG per step (median, min-max) | {statistics.median(sizes) / mb:.2f} MB "
          f"({min(sizes) / mb:.2f}-{max(sizes) / mb:.2f}) |")
    print(f"| session folder per step (PNG + history.json) | {folder_bytes / args.steps / mb:.2f} MB |")
    print(f"| PNG encode per step (median) | {statistics.median(encode_s):.3f} s |")
    print(f"| export ZIP, path of {args.steps} steps (median of 3) | "
          f"{statistics.median(t for t, _ in plain):.2f} s, {plain[0][1] / mb:.1f} MB |")
    print(f"| same with GIF + contact sheet (median of 2) | "
          f"{statistics.median(t for t, _ in extras):.2f} s, {extras[0][1] / mb:.1f} MB |")


if __name__ == "__main__":
    main()
