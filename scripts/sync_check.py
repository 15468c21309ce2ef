"""Host syncs inside the denoising loop, counted on a CUDA GPU (the tiny model; the loop's code is the same).

torch's sync debug mode warns at every host-device synchronisation. An edit of N steps and one of 1
step differ by N-1 steps of the loop, so (syncs(N) - syncs(1)) / (N - 1) is the loop's syncs per
step. Previews are off (the step callback does nothing), so any sync counted is the loop's own; the
target is 0. A second run with a preview every step shows what the callback adds (the copy of a
small image is one sync by design).

    python scripts/sync_check.py --steps 8
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def count_syncs(engine, image, steps: int, preview: bool) -> int:
    import torch

    def on_step(ev) -> None:
        if preview:
            engine.preview(ev)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            engine.edit(image, "make it blue", seed=0, steps=steps, on_step=on_step)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--model", default="tiny")
    args = p.parse_args()
    import torch
    from PIL import Image

    from kontext.model.engine import Engine

    if not torch.cuda.is_available():
        print("sync_check needs a CUDA GPU (sync debug mode is CUDA's)")
        return 2
    engine = Engine.load(args.model, device="cuda")
    image = Image.linear_gradient("L").convert("RGB").resize((128, 128))
    engine.edit(image, "warm up", seed=0, steps=2)
    print("| previews | syncs, 1 step | syncs, N steps | loop syncs per step |")
    print("|---|---|---|---|")
    for preview in (False, True):
        one = count_syncs(engine, image, 1, preview)
        many = count_syncs(engine, image, args.steps, preview)
        print(f"| {'every step' if preview else 'off'} | {one} | {many} ({args.steps}) | "
              f"{(many - one) / (args.steps - 1):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
