"""`python -m kontext bench`: load, warm-up and per-edit cost of each speed mode, one mode at a time.

For each mode (a kontext.model.speed mode name such as eager, compile, fp8+compile, fast, offload-model) and
each size it measures: model load time, warm-up (compile) time, per-edit wall time over N runs, time
per denoising step, time to the first live preview, peak GPU memory, and how far the output is from
the eager output of the same seed. It prints a markdown table and can write JSON.

`--variations 1,2,4` also times one instruction that makes N candidates to pick from (issue 27), in
one batched pipeline call and one after another, and prints the cost per candidate against N = 1.

`--model random-full` builds the real FLUX.1 Kontext [dev] architecture with random weights in memory
(no download; weights do not change the arithmetic, so timings are the real ones - but step caches
decide what to skip from the weights' behaviour, so their speed-up on random weights is not the real one).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kontext.core import params as P
from kontext.errors import UserError
from kontext.model.randomfull import RANDOM_FULL, RANDOM_SMALL
from kontext.model.speed import SpeedOptions, parse_mode, warm_up

# Size names at full scale: (side in px, edit?). A model with a smaller default area (the tiny one, or
# draft mode) runs them scaled down by the same factor, so CPU runs take seconds.
SIZES = {"edit1024": (1024, True), "edit512": (512, True), "t2i1024": (1024, False)}
PROMPT = "make the sky stormy and add a red kite"


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny",
                   help=f"tiny, {RANDOM_FULL} (real architecture, random weights, built on the GPU), "
                        f"{RANDOM_SMALL} (the same, narrowed for a CPU), "
                        "a hub id or a local folder (default: tiny)")
    p.add_argument("--modes", default="eager,fast",
                   help="comma-separated modes, e.g. eager,compile,fp8+compile,fast,int8,offload-model,"
                        "offload-group, or auto (what the app picks for this GPU's memory); words join with + "
                        "(default: eager,fast)")
    p.add_argument("--gpu-memory-gb", type=float, default=None, metavar="N",
                   help="behave as on a GPU of N GiB: auto plans for N and allocations are capped at N "
                        "(kontext/model/gpumem.py)")
    p.add_argument("--sizes", default="edit1024", help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, 28 for FLUX)")
    p.add_argument("--runs", type=int, default=3, help="timed edits per mode and size (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--cache-dir", default=None, help="folder for the tiny model (default: $KONTEXT_CACHE/...)")
    p.add_argument("--variations", default=None, metavar="N,N",
                   help="also time one instruction making N candidates (e.g. 1,2,4; 1 is always timed as the "
                        "baseline), in one batch and one after another: seconds per candidate and the ratio to one")
    p.add_argument("--startup", action="store_true",
                   help="also time start-up per mode: a fresh process until the first edit is possible, "
                        "with empty compile caches (cold) and again with the caches it left (warm)")


def run_bench(args: argparse.Namespace) -> int:
    import torch

    names = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not names:
        raise UserError("--modes is empty: name at least one mode, e.g. eager")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        raise UserError(f"--sizes must be from {', '.join(SIZES)}; got {args.sizes!r}")
    if args.steps is not None:
        P.check_steps(args.steps)
    if not 1 <= args.runs <= 100:
        raise UserError(f"--runs must be from 1 to 100, got {args.runs}")
    P.check_seed(args.seed)
    counts = variation_counts(getattr(args, "variations", None))
    if counts:
        P.check_group_seed(args.seed, max(counts))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model == RANDOM_FULL and not device.startswith("cuda"):
        raise UserError(f"--model {RANDOM_FULL} builds the 17 B-parameter model and needs a CUDA GPU with "
                         "about 40 GB; on a CPU use --model tiny")
    modes = [(name, _mode(name, device, getattr(args, "gpu_memory_gb", None))) for name in names]

    _import_models()  # once, so the first mode's load time is not the imports' time
    rows: list[dict[str, Any]] = []
    varied: list[dict[str, Any]] = []  # --variations: one row per mode, size, count and way
    outputs: dict[tuple[str, str], Any] = {}
    meta = _meta(args, device)
    report: dict[str, Any] = {"meta": meta, "results": rows}
    if counts:
        report["variations"] = varied
    for name, opts in modes:
        print(f"[bench] {name}: loading", file=sys.stderr, flush=True)
        rows += bench_mode(args, name, opts, sizes, device, outputs, counts, varied)
        _free(device)
        _fill_diffs(rows, outputs)
        if args.json:  # after every mode: a run stopped by a time limit still leaves its results
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(rows))
    if counts:
        print()
        print(format_variations(varied))
    starts: list[dict[str, Any]] = []
    if args.startup:
        for name, _ in modes:
            print(f"[bench] {name}: start-up, cold then warm", file=sys.stderr, flush=True)
            starts.append(time_startup(args, name, device))
        print()
        print(format_startup(starts))
        if args.json:
            report["startup"] = starts
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r["error"] is None for r in rows + starts + varied) else 1


# --- start-up: a fresh process until an edit is possible --------------------------------------------
READY = "ready"


def ready_main(argv: list[str]) -> None:
    """In the child: load the model in one mode and warm it up (compile, or load the aot package),
    then say READY. Run as `python -m kontext.tools.bench MODEL MODE DEVICE [CACHE_DIR]`."""
    model, mode, device, *rest = argv
    ns = argparse.Namespace(model=model, dtype=None, cache_dir=rest[0] if rest else None)
    engine = _load(ns, parse_mode(mode), device)
    warm_up(engine)  # what the app does before the first edit: compile (or load the package), warm-up edits
    print(READY, flush=True)


def time_startup(args: argparse.Namespace, mode: str, device: str) -> dict[str, Any]:
    """Seconds from process start to the first possible edit, with empty compile caches and then with
    what the first run left there (the aot package, inductor's kernels). The model files are warm."""
    import os
    import subprocess
    import tempfile

    row: dict[str, Any] = {"mode": mode, "error": None}
    with tempfile.TemporaryDirectory(prefix="kontext-startup-") as tmp:
        env = dict(os.environ, KONTEXT_AOT_DIR=str(Path(tmp, "aot")),
                   TORCHINDUCTOR_CACHE_DIR=str(Path(tmp, "inductor")))
        if args.model == "tiny":
            env["HF_HUB_OFFLINE"] = "1"
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        cmd = [sys.executable, "-m", "kontext.tools.bench", args.model, mode, device]
        cmd += [args.cache_dir] if args.cache_dir else []
        packages: dict[str, dict[str, int]] = {}  # aot packages in the cache after each start, with mtimes
        for label in ("cold_s", "warm_s"):
            t0 = time.perf_counter()
            try:
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
            except subprocess.TimeoutExpired:
                row["error"] = f"{label}: no edit possible within 7200 s"
                return row
            if out.returncode or READY not in out.stdout.split():
                row["error"] = " ".join(out.stderr.split()[-40:])[:500] or f"exit {out.returncode}"
                return row
            row[label] = round(time.perf_counter() - t0, 2)
            packages[label] = {p.name: p.stat().st_mtime_ns for p in Path(tmp, "aot").glob("*.pt2")}
        if parse_mode(mode).aot:  # what made the difference: the cold start compiled, the warm one loaded
            row["cold_made_package"] = bool(packages["cold_s"])
            row["warm_reused_package"] = bool(packages["cold_s"]) and packages["warm_s"] == packages["cold_s"]
    return row


def format_startup(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | start-up, cold caches s | start-up, warm caches s |", "|---|---|---|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['mode']} | error: {r['error'][:160].replace('|', '/')} | |")
        else:
            lines.append(f"| {r['mode']} | {_fmt(r['cold_s'], 1)} | {_fmt(r['warm_s'], 1)} |")
    return "\n".join(lines)


def _mode(name: str, device: str, gpu_memory_gb: float | None) -> SpeedOptions:
    """A mode name, or "auto": what the app would pick here (for a GPU of gpu_memory_gb GiB if given)."""
    if name == "auto":
        from kontext.hosting.startup import resolve_speed

        opts, reason = resolve_speed("auto", device, gpu_memory_gb=gpu_memory_gb)
        print(f"[bench] auto: {reason}", file=sys.stderr, flush=True)
        return opts
    return parse_mode(name)


def bench_mode(args: argparse.Namespace, name: str, opts: SpeedOptions, sizes: list[str], device: str,
               outputs: dict, counts: tuple[int, ...] = (), varied: list | None = None) -> list[dict[str, Any]]:
    """Load one mode, warm it up, time every size; rows carry the error instead if something fails.
    With `counts` (--variations), each size's edits making that many candidates go into `varied`."""
    import torch

    cuda = device.startswith("cuda")
    base = {"mode": name, "label": opts.label, "error": None, "gpu_memory_gb": getattr(args, "gpu_memory_gb", None)}
    engine = None
    error = None
    try:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        engine = _load(args, opts, device)
        base["load_s"] = round(time.perf_counter() - t0, 3)
        steps = args.steps or engine.profile.default_steps
        cases = [_case(engine, s) for s in sizes]
        first = cases[0]
        print(f"[bench] {name}: warming up", file=sys.stderr, flush=True)
        # Warm up at the first size only: each later size gets its own short edit before it is timed.
        warm_sizes = [(first["width"], first["height"]) if first["edit"] else None]
        say = lambda message: print(f"[bench] {name}: {message}", file=sys.stderr, flush=True)  # noqa: E731
        base["warmup_s"] = round(warm_up(engine, say, sizes=warm_sizes), 3)  # aot: export, compile, load
        if cuda:  # loading, quantizing, compiling and the warm-up edit: what start-up needs at its peak
            base["load_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    except Exception as e:  # noqa: BLE001 - a failing mode is a result, the next mode still runs
        error = f"{type(e).__name__}: {e}"
    if error is not None:
        del engine
        if counts and varied is not None:
            varied += [{"mode": name, "size": s, "n": 1, "way": "single", "error": error[:500]} for s in sizes]
        return [dict(base, size=s, error=error[:500]) for s in sizes]
    rows = []
    counter = _FullStepCounter(engine)
    for case in cases:
        row = dict(base, size=case["size"], width=case["width"], height=case["height"], steps=steps, runs=args.runs)
        print(f"[bench] {name}: {case['size']} {case['width']}x{case['height']}", file=sys.stderr, flush=True)
        try:
            row.update(_time_case(engine, case, steps, args.runs, args.seed, outputs, name, counter))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        rows.append(row)
        if counts and varied is not None:
            varied += time_variations(engine, name, case, steps, args.runs, args.seed, counts)
    del engine
    return rows


def _import_models() -> None:
    from diffusers import FluxKontextPipeline  # noqa: F401
    from transformers import CLIPTextModel, T5EncoderModel  # noqa: F401


def _load(args: argparse.Namespace, opts: SpeedOptions, device: str) -> Any:
    from kontext.model.engine import Engine

    return Engine.load(args.model, device=device, dtype=args.dtype, cache_dir=args.cache_dir, speed=opts,
                       gpu_memory_gb=getattr(args, "gpu_memory_gb", None))


def _case(engine: Any, size: str) -> dict[str, Any]:
    """A size name at this engine's scale: the tiny model and draft mode have a smaller default area."""
    side, edit = SIZES[size]
    scale = math.sqrt(engine.profile.default_area) / 1024
    px = max(engine.profile.min_side, round(side * scale / P.SIZE_MULTIPLE) * P.SIZE_MULTIPLE)
    return {"size": size, "width": px, "height": px, "edit": edit}


def fixed_picture(width: int, height: int) -> Any:
    """A fixed picture with smooth colour and edges, the same on every machine."""
    import numpy as np
    from PIL import Image, ImageDraw

    low = np.random.default_rng(0).random((8, 8, 3))
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(250, 240, 20))
    draw.rectangle((width // 2, height // 2, width * 7 // 8, height * 7 // 8), fill=(20, 40, 200))
    return img


def _time_case(engine: Any, case: dict, steps: int, runs: int, seed: int, outputs: dict, name: str,
               counter: _FullStepCounter) -> dict:
    import numpy as np
    import torch

    cuda = engine.device.startswith("cuda")
    w, h = case["width"], case["height"]
    image = fixed_picture(w, h) if case["edit"] else None
    # One short edit at this size first, so a recompile for a new shape is not in the timed runs.
    t0 = time.perf_counter()
    engine.edit(image, PROMPT, seed=seed, steps=2, width=w, height=h)
    size_warmup = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats(engine.device)
    walls, step_s, previews, full, preview_errors = [], [], [], [], []
    for run in range(runs):
        counter.reset()
        result, marks = _timed_edit(engine, image, w, h, steps, seed, cuda)
        walls.append(marks["wall"])
        if "preview" in marks:
            previews.append(marks["preview"])
        if "preview_error" in marks:
            preview_errors.append(marks["preview_error"])
        if steps > 1 and "last" in marks:
            step_s.append((marks["last"] - marks["after_step1"]) / (steps - 1))
        full.append(counter.count)
        if run == 0:
            outputs[(name, case["size"])] = np.asarray(result.image, dtype=np.int16)
    preview_error = preview_errors[-1] if preview_errors else None
    peak = torch.cuda.max_memory_allocated(engine.device) / 2**30 if cuda else None
    return {
        "size_warmup_s": round(size_warmup, 3),
        "edit_s_median": round(statistics.median(walls), 4),
        "edit_s_min": round(min(walls), 4),
        "edit_s_max": round(max(walls), 4),
        "step_s": round(statistics.median(step_s), 4) if step_s else None,
        "first_preview_s": round(statistics.median(previews), 4) if previews else None,
        "preview_error": preview_error,
        "peak_gib": round(peak, 2) if peak is not None else None,
        "full_steps": full[0],
        "speed": result.extra.get("speed"),
        # aot: transformer calls of the last timed edit that ran the compiled package, and that ran eagerly
        "compiled_calls": result.extra.get("compiled_calls"),
        "eager_calls": result.extra.get("eager_calls", 0 if "compiled_calls" in result.extra else None),
        "eager_cause": result.extra.get("eager_cause"),
    }


def _timed_edit(engine: Any, image: Any, w: int, h: int, steps: int, seed: int, cuda: bool) -> tuple[Any, dict]:
    """One timed edit; the marks are seconds from its start: "wall", "preview" (the first step's
    preview), "after_step1" and "last" (the GPU synchronised), or "preview_error"."""
    marks: dict[str, Any] = {}
    start = time.perf_counter()

    def on_step(ev: Any) -> None:
        if ev.step == 1:
            try:
                engine.preview(ev)  # reads the latents back, so the GPU has finished step 1
                marks["preview"] = time.perf_counter() - start
            except Exception as e:  # noqa: BLE001 - recorded; the timing goes on
                marks["preview_error"] = f"{type(e).__name__}: {e}"[:300]
            _sync(cuda)
            marks["after_step1"] = time.perf_counter() - start
        if ev.step == ev.total:
            _sync(cuda)
            marks["last"] = time.perf_counter() - start

    result = engine.edit(image, PROMPT, seed=seed, steps=steps, width=w, height=h, on_step=on_step)
    marks["wall"] = time.perf_counter() - start
    return result, marks


# --- variations (issue 27): N candidates from one instruction ------------------------------------
WAYS = (("batch", True), ("one by one", False))  # one pipeline call for all N; a call per candidate


def variation_counts(text: str | None) -> tuple[int, ...]:
    """--variations "2,4" as (1, 2, 4): 1 is always timed, as the baseline each ratio is against."""
    if text is None:
        return ()
    try:
        counts = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise UserError(f"--variations must be candidate counts such as 1,2,4, got {text!r}") from None
    for n in counts:
        try:
            P.check_variations(n)
        except UserError as e:
            raise UserError(f"--variations: {e}") from None
    return tuple(sorted(counts | {1}))


def time_variations(engine: Any, name: str, case: dict, steps: int, runs: int, seed: int,
                    counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per count N: one instruction's N candidates (seeds seed, seed+1, ...) in one batched call and
    one after another; seconds per candidate and the ratios to N = 1. Each shape gets an untimed
    call first (a batch's first call allocates, or compiles, for its size); then the timed runs go
    round all shapes in turn, so a slow spell of a shared machine falls on every row alike and not
    on the baseline alone. "plan" is what the app would do here (kontext.model.speed.batch_plan)."""
    from kontext.model.speed import batch_plan

    w, h = case["width"], case["height"]
    image = fixed_picture(w, h) if case["edit"] else None
    shapes: list[tuple[dict[str, Any], dict[str, Any], list[float]]] = []  # (row, call, walls)
    for n in counts:
        batched_here, why = batch_plan(engine, w * h, n)
        for way, batched in WAYS[:1] if n == 1 else WAYS:
            row: dict[str, Any] = {"mode": name, "size": case["size"], "width": w, "height": h, "steps": steps,
                                   "runs": runs, "n": n, "way": "single" if n == 1 else way, "error": None,
                                   "plan": "" if n == 1 else ("batch" if batched_here else "one by one"),
                                   "plan_note": why}
            shapes.append((row, dict(seed=seed, width=w, height=h, variations=n, batched=batched), []))
    print(f"[bench] {name}: {case['size']} candidates {', '.join(map(str, counts))}", file=sys.stderr, flush=True)
    for run in range(-1, runs):  # run -1: the untimed call of each shape
        for row, call, walls in shapes:
            if row["error"] is not None:
                continue
            try:
                t0 = time.perf_counter()
                engine.edit(image, PROMPT, steps=2 if run < 0 else steps, **call)
                _sync(engine.device.startswith("cuda"))
                if run >= 0:
                    walls.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - a count that fails (out of memory) is a result too
                row["error"] = f"{type(e).__name__}: {e}"[:500]
    base = shapes[0][0] if shapes and shapes[0][0]["n"] == 1 and shapes[0][2] else None
    one = statistics.median(shapes[0][2]) if base is not None and base["error"] is None else None
    for row, _, walls in shapes:
        if row["error"] is not None:
            continue
        med, n = statistics.median(walls), row["n"]
        row.update(edit_s_median=round(med, 4), edit_s_min=round(min(walls), 4), edit_s_max=round(max(walls), 4),
                   per_candidate_s=round(med / n, 4), per_candidate_vs_one=round(med / n / one, 3) if one else None,
                   all_vs_one=round(med / one, 3) if one else None)
    return [row for row, _, _ in shapes]


def format_variations(rows: list[dict[str, Any]]) -> str:
    """The per-candidate table: what one more candidate costs, batched and one after another."""
    lines = ["| mode | size | candidates | how | edit s median (min-max) | s per candidate | per candidate vs one "
             "| all vs one | the app's plan |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = f"{r['size']} {r['width']}x{r['height']}, {r['steps']} steps" if r.get("width") else r["size"]
        if r["error"]:
            error = " ".join(r["error"].split())[:160].replace("|", "/")
            lines.append(f"| {r['mode']} | {size} | {r['n']} | {r['way']} | error: {error} |")
            continue
        edit = f"{_fmt(r['edit_s_median'])} ({_fmt(r['edit_s_min'])}-{_fmt(r['edit_s_max'])})"
        ratio = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
        lines.append(f"| {r['mode']} | {size} | {r['n']} | {r['way']} | {edit} | {_fmt(r['per_candidate_s'], 4)} | "
                     f"{ratio(r['per_candidate_vs_one'])} | {ratio(r['all_vs_one'])} | {r['plan'] or '-'} |")
    return "\n".join(lines)


class _FullStepCounter:
    """Counts steps in which the transformer's last block really ran (First Block Cache skips it).

    Only for an eager fbcache mode: a Python hook inside a compiled block would break its graph."""

    def __init__(self, engine: Any):
        self.count: int | None = None
        self._active = engine.speed.cache == "fbcache" and not engine.speed.compile
        if self._active:
            engine.pipe.transformer.single_transformer_blocks[-1].attn.register_forward_hook(self._hit)

    def _hit(self, *args: Any) -> None:
        self.count = (self.count or 0) + 1

    def reset(self) -> None:
        self.count = 0 if self._active else None


def _fill_diffs(rows: list[dict], outputs: dict) -> None:
    """Max and mean absolute pixel difference (0-255) from the eager output of the same size and seed."""
    refs = {r["size"]: outputs.get((r["mode"], r["size"])) for r in rows if r.get("label") == "eager"}
    for row in rows:
        ref, out = refs.get(row["size"]), outputs.get((row["mode"], row["size"]))
        row["diff_max"] = row["diff_mean"] = None
        if ref is None or out is None or ref.shape != out.shape or row.get("label") == "eager":
            continue
        d = abs(out - ref)
        row["diff_max"], row["diff_mean"] = int(d.max()), round(float(d.mean()), 3)


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _free(device: str) -> None:
    """Give back what the last mode held: compiled graphs, its weights, the allocator's cache."""
    import torch

    torch._dynamo.reset()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _meta(args: argparse.Namespace, device: str) -> dict[str, Any]:
    import diffusers
    import torch

    meta = {
        "model": args.model, "device": device, "steps": args.steps, "runs": args.runs, "seed": args.seed,
        "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.processor() or platform.machine(),
    }
    if device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name(device)
        meta["gpu_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    try:
        import torchao

        meta["torchao"] = torchao.__version__
    except ImportError:
        meta["torchao"] = None
    return meta


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("| mode | size | load s | warm-up s | size warm-up s | edit s median (min-max) | s/step | "
            "first preview s | peak GiB | diff vs eager max/mean | full steps | compiled calls |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        size = f"{r['size']} {r.get('width', '')}x{r.get('height', '')}" if r.get("width") else r["size"]
        if r.get("label") and r["label"] != r["mode"]:
            size = f"{size} ({r['label']})"  # auto: the mode it chose
        if r["error"]:
            error = " ".join(r["error"].split())[:160].replace("|", "/")  # one table row, whatever the message
            lines.append(f"| {r['mode']} | {size} | error: {error} |")
            continue
        edit = f"{_fmt(r['edit_s_median'])} ({_fmt(r['edit_s_min'])}-{_fmt(r['edit_s_max'])})"
        diff = "-" if r.get("diff_max") is None else f"{r['diff_max']} / {r['diff_mean']:.2f}"
        full = "-" if r.get("full_steps") is None else f"{r['full_steps']} of {r['steps']}"
        preview = _fmt(r["first_preview_s"]) if not r.get("preview_error") else "error"
        compiled = "-"
        if r.get("compiled_calls") is not None:  # aot: how the last edit's transformer calls ran
            compiled = f"{r['compiled_calls']}" + (f", eager {r['eager_calls']}" if r.get("eager_calls") else "")
        lines.append(f"| {r['mode']} | {size} | {_fmt(r['load_s'], 2)} | {_fmt(r['warmup_s'], 2)} | "
                     f"{_fmt(r['size_warmup_s'], 2)} | {edit} | "
                     f"{_fmt(r['step_s'], 4)} | {preview} | {_fmt(r['peak_gib'], 2)} | {diff} | {full} | "
                     f"{compiled} |")
    return "\n".join(lines)


if __name__ == "__main__":  # the start-up child (time_startup)
    ready_main(sys.argv[1:])
