"""Page undo/redo time on long chains, in a real browser: Debian's Chromium driven by Playwright
clicks Undo and Redo and waits until the page shows the step it moved to. Tiny model, CPU.

The chain is built directly in the store (a 128x128 picture per step, the tiny model's output
size) for the key the page was given, then the page is reloaded. Prints a markdown table.

    python scripts/bench_undo.py --steps 60,200 --runs 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
CHROMIUM = "/usr/bin/chromium"


def build(store, key: str, n: int, side: int) -> None:
    """Make `key`'s session an upload followed by n - 1 edits in one branch, each with its own PNG."""
    from PIL import Image

    from kontext.core import metadata
    from kontext.core.history import History, Node

    h = History()
    for i in range(1, n + 1):
        img = Image.effect_noise((side, side), 30 + i % 50).convert("RGB")
        node = Node(id=i, parent=None if i == 1 else i - 1, kind="upload" if i == 1 else "edit", image="",
                    width=side, height=side, prompt="" if i == 1 else f"edit number {i}",
                    seed=None if i == 1 else i, guidance=2.5, steps=4, model="tiny", seconds=0.05,
                    created=time.time())
        name = store.save_image(key, metadata.png_bytes(img, node.to_dict()))
        h = h.add(replace(node, image=name), parent=node.parent)
    store.commit(key, h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="60,200")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--side", type=int, default=128)
    args = ap.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from apphelpers import running_app
    from kontext.files.store import Store
    from kontext.model.engine import Engine
    from kontext.sessions.session import Sessions

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    sessions = Sessions(Engine.load("tiny"), Store(tmp / "sessions"))
    made: list[str] = []
    new = sessions.new
    sessions.new = lambda: made.append(new()) or made[-1]  # learn the key the page is given
    rows = []
    with running_app(sessions, tmp) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for n in [int(s) for s in args.steps.split(",")]:
            made.clear()
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function("document.querySelector('#status')?.innerText.includes('Upload an image')")
            key = made[-1]
            build(sessions.store, key, n, args.side)
            sessions._forget(key)
            page.reload()
            page.wait_for_function(f"document.querySelector('#status')?.innerText.includes('Step #{n}')",
                                   timeout=60_000)

            def click(button: str, step: int, page=page) -> float:
                start = time.perf_counter()
                page.click(button)
                page.wait_for_function(f"document.querySelector('#status')?.innerText.includes('Step #{step} ')",
                                       timeout=60_000)
                page.wait_for_function("[...document.querySelectorAll('#canvas img')]"
                                       ".every(i => i.complete)", timeout=60_000)
                return time.perf_counter() - start

            undo, redo = [], []
            for _ in range(args.runs):
                undo.append(click("#undo-btn", n - 1))
                redo.append(click("#redo-btn", n))
            rows.append((n, undo, redo))
            page.close()
        browser.close()
    med = statistics.median
    print(f"tiny model, {args.side}x{args.side} per step, Chromium, {args.runs} undo + {args.runs} redo each "
          "(click until the status shows the step and the canvas image has loaded)\n")
    print("| steps in the chain | page undo median s | max s | page redo median s | max s |\n|---|---|---|---|---|")
    for n, undo, redo in rows:
        print(f"| {n} | {med(undo):.3f} | {max(undo):.3f} | {med(redo):.3f} | {max(redo):.3f} |")


if __name__ == "__main__":
    main()
