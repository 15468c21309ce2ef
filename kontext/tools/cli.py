"""Command line: `python -m kontext edit|replay|bench|loadtest|trial|doctor ...`.

Errors are one plain line and exit 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kontext.env import setting
from kontext.errors import UserError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="'tiny', a hub id (black-forest-labs/FLUX.1-Kontext-dev), a local folder, or random-full / "
                        "random-small (the real architecture with random weights) "
                        "(default: $KONTEXT_MODEL, else the real model with CUDA, tiny without)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    p.add_argument("--offload", default="none", choices=["none", "model", "sequential"],
                   help="move idle parts of the model to CPU memory to fit smaller GPUs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kontext", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("edit", help="one edit (or text-to-image without --image); writes a PNG")
    _add_model_args(e)
    e.add_argument("--image", help="the image to edit; leave out for text-to-image")
    e.add_argument("--prompt", required=True)
    e.add_argument("--seed", type=int, default=None, help="default: a random seed, printed")
    e.add_argument("--steps", type=int, default=None)
    e.add_argument("--guidance", type=float, default=None)
    e.add_argument("--width", type=int, default=None, help="with --height; default: the input's aspect ratio")
    e.add_argument("--height", type=int, default=None)
    e.add_argument("--out", required=True, help="output PNG path")

    r = sub.add_parser("replay", help="re-run an exported chain and compare with the recorded images")
    _add_model_args(r)
    r.add_argument("export", help="a ZIP exported by the app")
    r.add_argument("--out", required=True, help="folder for the replayed PNGs")
    r.add_argument("--branding", default=setting("BRANDING"),
                   help="the server's branding TOML, whose [[lora]] presets give the weights of the LoRAs the "
                        "steps name (default: $KONTEXT_BRANDING); an export never says where weights come from")

    b = sub.add_parser("bench", help="measure load, warm-up and per-edit time of each speed mode")
    from kontext.tools.bench import add_bench_args

    add_bench_args(b)
    lt = sub.add_parser("loadtest", help="many visitors at once against app.py, local or with a pool of workers")
    from kontext.tools.loadtest import add_loadtest_args

    add_loadtest_args(lt)
    tr = sub.add_parser("trial", help="one visitor's session against app.py (3 edits, undo, re-roll), timed")
    from kontext.tools.trial import add_trial_args

    add_trial_args(tr)
    sub.add_parser("doctor", add_help=False, help="check a checkout and this machine the way a Hugging Face Space "
                                                  "meets them (doctor --help for its options)")
    return parser


def main(argv: list[str] | None = None) -> int:

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:
        from kontext.tools.doctor import run

        return run(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "model", None) is None:
        args.model = setting("MODEL")
    try:
        if args.command == "edit":
            return _edit(args)
        if args.command == "replay":
            from kontext.tools.replay import run_replay

            return run_replay(args)
        if args.command == "bench":
            from kontext.tools.bench import run_bench

            return run_bench(args)
        if args.command == "trial":
            from kontext.tools.trial import run_trial

            return run_trial(args)
        if args.command == "loadtest":
            from kontext.tools.loadtest import run_loadtest

            return run_loadtest(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 2


def _edit(args: argparse.Namespace) -> int:
    from kontext.core import metadata
    from kontext.core.history import Node
    from kontext.core.images import open_image
    from kontext.model.engine import Engine
    from kontext.sessions.session import step_dict

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must end in .png (PNG keeps the metadata), got {out.name}")
    if not out.parent.is_dir():
        raise UserError(f"--out folder does not exist: {out.parent}")
    image = open_image(args.image, "--image") if args.image else None
    engine = Engine.load(args.model, device=args.device, dtype=args.dtype, offload=args.offload)
    t0 = time.perf_counter()
    result = engine.edit(image, args.prompt, seed=args.seed, guidance=args.guidance, steps=args.steps,
                         width=args.width, height=args.height)
    node = Node(id=1, parent=None, kind="edit" if image is not None else "text", image="",
                prompt=args.prompt.strip(), seed=result.seed, guidance=result.guidance, steps=result.steps,
                width=result.width, height=result.height, model=result.model,
                seconds=round(result.seconds, 3), created=time.time(),
                extra={"source": Path(args.image).name} if args.image else {})
    out.write_bytes(metadata.png_bytes(result.image, step_dict(node, engine)))
    print(f"wrote {out} ({result.width}x{result.height}, seed {result.seed}, {result.steps} steps, "
          f"guidance {result.guidance:g}, {time.perf_counter() - t0:.2f} s)")
    return 0
