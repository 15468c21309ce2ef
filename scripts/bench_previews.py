"""How far each live preview is from the final image: the old view (the noisy state after a step)
against the new one (the predicted result, x0 estimate), both through the same linear colour map.

Tiny model on CPU by default (the real model's figures need a GPU). For several seeds, an edit of
`--steps` steps keeps every step's state and estimate; each is turned into a preview and compared
with the final image at the preview's size: mean absolute difference in 8-bit levels (0-255) and
PSNR. "floor" is the map applied to the final latents: the closest any linear preview can get.

    python scripts/bench_previews.py --steps 20 --seeds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def distance(a, b) -> tuple[float, float]:
    import numpy as np

    x = np.asarray(a, np.float64)
    y = np.asarray(b.resize(a.size), np.float64)
    mad = float(np.abs(x - y).mean())
    mse = float(((x - y) ** 2).mean())
    return mad, (99.0 if mse == 0 else 10 * np.log10(255**2 / mse))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--size", type=int, default=128, help="output side in pixels")
    args = p.parse_args()

    import torch
    from PIL import Image

    from kontext.model.engine import Engine, StepEvent

    torch.set_num_threads(1)
    engine = Engine.load(args.model)
    source = Image.effect_noise((args.size, args.size), 60).convert("RGB")
    marks = sorted({1, max(1, args.steps // 4), max(1, args.steps // 2), max(1, 3 * args.steps // 4)})
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        events: list[StepEvent] = []
        out = engine.edit(source, "make it a watercolour painting", seed=seed, steps=args.steps,
                          width=args.size, height=args.size, on_step=events.append)
        final, z_final = out.image, events[-1].latents.float()
        floor = engine.preview(StepEvent(0, 0, z_final, args.size, args.size))
        rows.setdefault(("floor", 0), []).append((*distance(floor, final), 0.0, 0.0))
        for ev in events:
            if ev.step not in marks:
                continue
            for name, z in (("noisy", ev.latents.float()), ("estimate", ev.estimate)):
                shown = engine.preview(StepEvent(ev.step, ev.total, z, ev.width, ev.height))
                latent = float((z - z_final).norm() / z_final.norm())
                rows.setdefault((name, ev.step), []).append(
                    (*distance(shown, final), distance(shown, floor)[0], latent))

    print(f"model {args.model}, {args.size}x{args.size}, {args.steps} steps, {args.seeds} seeds; medians over "
          "seeds. vs image: preview vs the final image (MAD in 8-bit levels, PSNR dB); vs final preview: MAD "
          "against the map of the final latents; latent: relative L2 distance to the final latents\n")
    print("| step | noisy: vs image | vs final preview | latent | estimate: vs image | vs final preview | latent |")
    print("|---|---|---|---|---|---|---|")
    med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
    cell = lambda xs: f"{med(xs, 0):.1f} / {med(xs, 1):.1f} dB | {med(xs, 2):.1f} | {med(xs, 3):.3f}"  # noqa: E731
    for step in marks:
        pct = round(100 * step / args.steps)
        print(f"| {step} ({pct} %) | {cell(rows[('noisy', step)])} | {cell(rows[('estimate', step)])} |")
    f = rows[("floor", 0)]
    print(f"| final latents | {med(f, 0):.1f} / {med(f, 1):.1f} dB | 0 | 0 | | | |")

    # Cost: one preview (estimate -> colour map -> 8-bit image on the host) against one step.
    times: list[float] = []
    stamps: list[float] = []
    engine.edit(source, "cost", seed=0, steps=args.steps, width=args.size, height=args.size,
                on_step=lambda ev: stamps.append(time.perf_counter()) or events.append(ev))
    for ev in events[-args.steps:]:
        t0 = time.perf_counter()
        engine.preview(ev)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    prev_s = statistics.median(times)
    print(f"\none preview: {prev_s * 1e3:.2f} ms; one step: {step_s * 1e3:.1f} ms; "
          f"a preview every 2 steps costs {100 * prev_s / (2 * step_s):.1f} % of the steps' time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
