"""`python -m kontext replay EXPORT.zip --out DIR`: re-run an exported history and compare bit for bit.

Each generated step is run again with its recorded prompt, seed, guidance, steps and size. An edit
starts from its parent's *replayed* image, not the recorded one, so a match at the last step
vouches for the whole chain. A candidate of a group of variations made in one batch is made by that
batch again (its size, seeds from seed - index; once per group, whichever of its candidates the
export holds) and its own picture taken out; one made one after another is the single call with its
own seed, as it was. Uploaded source images are taken as recorded. A step records its
LoRAs by preset name only: their weights come from this replay's presets (--branding, the host's
file), never from the export, and a name they do not offer stops the replay before any step runs.
Exit status: 0 when every step matches, 1 when any differs, 2 on bad input (the CLI turns
ValueError into 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kontext.core.history import Node, attached_images, group_first
from kontext.core.metadata import png_bytes
from kontext.errors import UserError
from kontext.files.export import engine_info, library_versions
from kontext.files.importer import ExportReader, Limits, open_export
from kontext.model.loras import recorded as recorded_loras
from kontext.model.turns import TurnRequest, plan_step, run_turn
from kontext.sessions.session import step_dict

# A replay runs locally on a file the user chose; still read it with the same checks, but allow
# histories from servers configured with more steps than the default.
REPLAY_LIMITS = Limits(max_steps=5000)
PIXEL_LIBRARIES = ("torch", "diffusers", "transformers")  # the ones whose versions change pixels


@dataclass(frozen=True)
class Row:
    step: int
    kind: str
    prompt: str
    seed: int | None
    identical: bool | None  # None for an uploaded source image, which is not generated
    max_diff: int | None  # largest per-channel difference (0-255); None when the sizes differ
    file: str


def compare(a: Image.Image, b: Image.Image) -> tuple[bool, int | None]:
    """(bit-identical, max per-channel difference) of two images; (False, None) if sizes differ."""
    if a.size != b.size:
        return False, None
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    diff = int(np.abs(x - y).max())
    return diff == 0, diff


def version_warnings(manifest: dict[str, Any], engine: Any, nodes: Sequence[Node] = ()) -> list[str]:
    """What differs between the export's setup and this one, each able to change the pixels."""
    now = engine_info(engine)
    was_model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    out = []
    for what, old, new in (("model", was_model.get("id"), now["id"]),
                           ("model revision", was_model.get("revision"), now["revision"]),
                           ("device", manifest.get("device"), now["device"]),
                           ("dtype", manifest.get("dtype"), now["dtype"]),
                           ("speed mode", manifest.get("speed"), now["speed"])):
        if old and old != new:
            out.append(f"the export was made with {what} {old}; this replay uses {new or 'unknown'}")
    threads = manifest.get("cpu_threads")
    if now["device"] == "cpu" and manifest.get("device") == "cpu" and threads and threads != now["cpu_threads"]:
        out.append(f"the export was made with {threads} CPU threads; this replay uses {now['cpu_threads']} "
                   f"(on a CPU the thread count changes the last bits; set OMP_NUM_THREADS={threads})")
    libs = manifest.get("libraries") if isinstance(manifest.get("libraries"), dict) else {}
    current = library_versions()
    for name in PIXEL_LIBRARIES:
        if libs.get(name) and libs[name] != current.get(name):
            out.append(f"the export was made with {name} {libs[name]}; this replay uses "
                       f"{current.get(name, 'none')}")
    # Each step records the speed mode that made it (fp8 or a step cache changes the pixels).
    modes: dict[str, list[int]] = {}
    for n in nodes:
        mode = n.extra.get("speed")
        if n.kind != "upload" and isinstance(mode, str) and mode and mode != now["speed"]:
            modes.setdefault(mode, []).append(n.id)
    for mode, ids in modes.items():
        were = "steps {} were".format(", ".join(map(str, ids))) if len(ids) > 1 else f"step {ids[0]} was"
        out.append(f"{were} made in speed mode {mode}; "
                   f"this replay uses {now['speed'] or 'unknown'}")
    return out


def replay(reader: ExportReader, engine: Any, out_dir: Path,
           on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Re-run every step of the export in id order; write each image to `out_dir`; return the rows."""
    export = reader.export
    check_loras(export.nodes, getattr(getattr(engine, "lora", None), "presets", {}))
    waiting = Counter(n.parent for n in export.nodes)  # children still to run, per step
    remake = _Remaker(reader, engine)
    outputs: dict[int, Image.Image] = {}
    rows = []
    for node in export.nodes:
        data, recorded = reader.png(node)
        file = out_dir / f"{node.id:04d}.png"
        if node.kind == "upload":
            image, identical, diff = recorded, None, None
            file.write_bytes(data)  # the source as recorded, so the folder holds the whole chain
        else:
            image, seconds = remake(node, None if node.parent is None else outputs[node.parent])
            again = replace(node, model=engine.model_id, seconds=round(seconds, 3), created=time.time(),
                            extra={**node.extra, "replay_of_sha256": export.sha256[node.id]})
            file.write_bytes(png_bytes(image, step_dict(again, engine)))
            identical, diff = compare(image, recorded)
        if waiting[node.id]:
            outputs[node.id] = image
        if node.parent is not None:
            waiting[node.parent] -= 1
            if not waiting[node.parent]:
                outputs.pop(node.parent, None)  # no child left to start from it: free the memory
        row = Row(node.id, node.kind, node.prompt, node.seed, identical, diff, str(file))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


class _Remaker:
    """Makes a recorded step again from its parent's picture: its references and mask read once per
    export, and a batch of variations run once for all of its candidates the export holds."""

    def __init__(self, reader: ExportReader, engine: Any):
        self.reader, self.engine = reader, engine
        self.references: dict[str, Image.Image] = {}
        self.batches = Counter(b for b in map(_batch_key, reader.export.nodes) if b is not None)  # still to take
        # a batch's pictures and seconds, until the last of its candidates in the export is taken
        self.made: dict[tuple, tuple[tuple[Image.Image, ...], float]] = {}

    def __call__(self, node: Node, context: Image.Image | None) -> tuple[Image.Image, float]:
        batch = _batch_key(node)
        group = node.extra["variations"] if batch is not None else {"size": 1, "index": 0}
        try:
            req = self._request(node, context, group["size"], group["index"])
            if batch is None:
                result = run_turn(self.engine, req)
                return result.image, result.seconds
            if batch not in self.made:
                result = run_turn(self.engine, _as_recorded(req))
                self.made[batch] = result.candidates, result.seconds
            pictures, seconds = self.made[batch]
            self.batches[batch] -= 1
            if not self.batches[batch]:
                del self.made[batch]  # every candidate of it the export holds is taken
            return pictures[group["index"]], seconds / group["size"]  # each candidate's share, as the app records
        except UserError as e:
            raise UserError(f"step {node.id} cannot be replayed with this model: {e}") from None

    def _request(self, node: Node, context: Image.Image | None, size: int, index: int) -> TurnRequest:
        """The app's own rule for a step (kontext.model.turns.plan_step), with the recorded values; a
        candidate's call is its group's (the first seed, all of them)."""
        ref = node.extra.get("reference")
        mask_name = node.extra.get("mask")
        for name in attached_images(node.extra):  # the references and the mask
            if name not in self.references:
                self.references[name] = self.reader.reference(name)[1]  # read (and counted) once per export
        more = tuple(self.references[r] for r in node.extra.get("more_references") or ())
        return plan_step(self.engine, context, node.prompt, seed=node.seed - index, guidance=node.guidance,
                         steps=node.steps, width=node.width, height=node.height,
                         reference=self.references.get(ref) if context is not None else None,
                         draft=bool(node.extra.get("draft")),
                         mask=self.references[mask_name].convert("L") if mask_name is not None else None,
                         loras=recorded_loras(node.extra.get("loras")),
                         more_references=more if context is not None else (), variations=size)


def _batch_key(node: Node) -> tuple[int | None, int] | None:
    """For a candidate made in one batch with others (its record, checked by the import): its group
    (parent, first step), else None (a single step, or a candidate made on its own)."""
    first = group_first(node) if node.kind != "upload" else None
    if first is None or not node.extra["variations"].get("batched"):
        return None
    return node.parent, first


def _as_recorded(req: TurnRequest) -> TurnRequest:
    """The batch as it was made: one pipeline call, whatever this replay's own plan would pick
    (kontext.model.speed.batch_plan), since one after another the pictures differ in the last bits."""
    return replace(req, batched=True, batch_note="")


def check_loras(nodes: Sequence[Node], offered: Collection[str]) -> None:
    """Every LoRA the steps name must be one of the `offered` preset names; else say which, and where."""
    unknown: dict[str, list[int]] = {}
    for n in nodes:
        for name, _ in recorded_loras(n.extra.get("loras")) if n.kind != "upload" else ():
            if name not in offered:
                unknown.setdefault(name, []).append(n.id)
    if unknown:
        named = "; ".join(f"{name[:40]} (step{'s' * (len(ids) > 1)} {', '.join(map(str, ids[:10]))}"
                          f"{', ...' if len(ids) > 10 else ''})" for name, ids in list(unknown.items())[:10])
        raise UserError(f"the export's steps use LoRAs that this replay does not offer: {named}. A step records a "
                        "LoRA's name only; give the presets with --branding FILE (its [[lora]] tables, as the "
                        f"server had them); offered now: {', '.join(offered) or 'none'}")


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_row(r: Row) -> str:
    same = "source" if r.identical is None else ("yes" if r.identical else "NO")
    diff = "-" if r.identical is None else ("size" if r.max_diff is None else str(r.max_diff))
    seed = "-" if r.seed is None else str(r.seed)
    return f"{r.step:>5}  {r.kind:<6}  {seed:>10}  {same:>6}  {diff:>8}  {_one_line(r.prompt, 60)}"


HEADER = f"{'step':>5}  {'kind':<6}  {'seed':>10}  {'same':>6}  {'max diff':>8}  prompt"


def _recorded_model(manifest: Any) -> str:
    """The export's model, when it is one this app knows; a file must not make us load anything else."""
    from kontext.model.engine import REAL_MODEL_ID
    from kontext.model.randomfull import RANDOM_MODELS
    from kontext.model.tiny import TINY_ID

    info = manifest.get("model")
    recorded = info.get("id") if isinstance(info, dict) else None
    if recorded in (TINY_ID, REAL_MODEL_ID, *RANDOM_MODELS):
        return recorded
    raise UserError(f"the export names model {str(recorded)[:80]!r}; choose the model to replay it with --model")


def run_replay(args: argparse.Namespace) -> int:
    from kontext.model.engine import Engine
    from kontext.showcase.branding import load_branding

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a folder, but {out} is a file")
    with open_export(args.export, REPLAY_LIMITS) as reader:
        export = reader.export
        model = args.model or _recorded_model(export.manifest)
        print(f"replaying {len(export.nodes)} steps ({export.manifest.get('scope', 'path')}) of "
              f"{args.export} with model {model}")
        presets = load_branding(args.branding).loras if args.branding else ()
        check_loras(export.nodes, [p.name for p in presets])  # before loading the model
        engine = Engine.load(model, device=args.device, dtype=args.dtype, offload=args.offload)
        engine.set_lora_presets(presets)
        for w in version_warnings(dict(export.manifest), engine, export.nodes):
            print(f"warning: {w}: images may differ", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        print(HEADER)
        rows = replay(reader, engine, out, on_row=lambda r: print(format_row(r), flush=True))
    generated = [r for r in rows if r.identical is not None]
    bad = [r.step for r in generated if not r.identical]
    if not bad:
        print(f"all {len(generated)} generated steps reproduced bit-exactly; images in {out}")
        return 0
    print(f"MISMATCH at step{'s' * (len(bad) > 1)} {', '.join(map(str, bad))} "
          f"({len(bad)} of {len(generated)} generated steps); the first is step {bad[0]}. "
          "A step edited from a mismatched one starts from a different image, so it differs as well.")
    return 1
