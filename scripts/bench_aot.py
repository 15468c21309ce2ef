"""Ahead-of-time compile on this machine: one artefact with a dynamic token dimension against one
artefact per bucket (compile time, file size), and start-up to the first possible edit, cold (no
package yet: export + compile) and warm (the package loads). Tiny model on CPU by default.

    python scripts/bench_aot.py --static-buckets 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READY = """
import json, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from kontext.model.engine import Engine
from kontext.model.speed import parse_mode, warm_up
e = Engine.load({model!r}, speed=parse_mode("aot"))
warm_up(e, sizes=[], steps=1)
print(json.dumps({{"ready_s": time.perf_counter() - t0}}))
"""


def startup(model: str, cache: str) -> float:
    env = dict(os.environ, KONTEXT_CACHE=cache, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", READY.format(model=model)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--static-buckets", type=int, default=3, help="buckets to compile one by one")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        cold = startup(args.model, cache)
        warm = startup(args.model, cache)
        os.environ["KONTEXT_CACHE"] = cache
        import torch

        from kontext.core.buckets import buckets
        from kontext.model import aot
        from kontext.model.engine import Engine
        from kontext.model.speed import parse_mode

        torch.set_num_threads(1)
        engine = Engine.load(args.model, speed=parse_mode("aot"))
        dyn = next(Path(cache, "aot").glob("*.pt2"))
        rows = [("dynamic tokens, one artefact", "all", cold - warm, dyn.stat().st_size)]
        all_buckets = buckets(engine.profile)
        for b in all_buckets[: args.static_buckets]:
            kw = aot.sample_inputs(engine, b)

            class Positional(torch.nn.Module):
                def __init__(self, t):
                    super().__init__()
                    self.t = t

                def forward(self, *xs):
                    return self.t(**dict(zip(aot.INPUTS, xs, strict=True)), return_dict=False)[0]

            t0 = time.perf_counter()
            ep = torch.export.export(Positional(engine.pipe.transformer), tuple(kw[k] for k in aot.INPUTS))
            path = Path(cache, f"static-{b.width}x{b.height}.pt2")
            torch._inductor.aoti_compile_and_package(ep, package_path=str(path),
                                                     inductor_configs={"aot_inductor.package_constants_in_so": False})
            rows.append((f"static, {b.label}", "1", time.perf_counter() - t0, path.stat().st_size))
    n = len(all_buckets)
    static = rows[1:]
    print(f"model {args.model}, {n} buckets (full size and drafts), torch {torch.__version__}\n")
    print("| artefact | buckets covered | compile s | size MB |")
    print("|---|---|---|---|")
    for name, covered, secs, size in rows:
        print(f"| {name} | {covered} | {secs:.1f} | {size / 2**20:.2f} |")
    if static:
        mean_s = sum(r[2] for r in static) / len(static)
        mean_b = sum(r[3] for r in static) / len(static)
        print(f"| static, all {n} buckets (extrapolated) | {n} | {mean_s * n:.0f} | {mean_b * n / 2**20:.1f} |")
    print(f"\nstart-up to the first possible edit: cold {cold:.1f} s (export + compile), warm {warm:.1f} s "
          "(load the package)")
    print(json.dumps({"cold_s": cold, "warm_s": warm}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
