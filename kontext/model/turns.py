"""One turn's GPU work as plain values, and streaming its progress from a thread.

A `TurnRequest` holds everything the pipeline call needs (the context image as a PIL image, the
prompt, the resolved seed and parameters) and nothing else, so it pickles: on ZeroGPU it crosses
into a forked GPU worker, and `Progress` / `Done` / `Failed` come back the same way
(`kontext/hosting/zerogpu.py`). On a dedicated GPU or the CPU the same request runs in this process.

`stream(run)` runs `run(report, cancel)` in a thread and yields its progress: a generator consumer
(a Gradio handler, the ZeroGPU worker) can then be closed between yields, which sets the cancel flag,
and the engine stops at its next step with nothing committed.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class TurnRequest:
    """A pipeline call with every value resolved (seed drawn, size chosen, context composed)."""

    context: Image.Image | None  # RGB; None for text-to-image
    prompt: str
    seed: int
    guidance: float
    steps: int
    width: int
    height: int
    fit_context: bool = False  # scale the context to the output's area (draft, reference pairs)
    preview_every: int = 0  # steps between live previews; 0 for none
    mask: Image.Image | None = None  # L, the context's size: only there may the picture change
    loras: tuple = ()  # (name, strength) of the host's LoRA presets, a replay's too
    variations: int = 1  # candidates to pick from, seeds seed, seed+1, ...
    batched: bool = True  # ...made in one pipeline call (planned: kontext.model.speed.batch_plan)
    batch_note: str = ""  # why they are not, said on the steps and the page

    @property
    def tokens(self) -> int:
        """Image tokens the transformer sees (output plus context), in 16x16-pixel patches."""
        out = self.width * self.height // 256
        if self.context is None:
            return out
        if self.fit_context:
            return 2 * out
        return out + min(self.context.width * self.context.height, 1024 * 1024) // 256


@dataclass
class Progress:
    step: int
    total: int
    preview: Any = None  # a small PIL image, or None
    waiting: int = 0  # turns ahead of this one in the GPU queue (step 0 while waiting)
    previews: tuple = ()  # variations: one small picture (or None) per candidate; `preview` is the first's


@dataclass
class Done:
    value: Any


@dataclass
class Failed:
    """An error raised where the turn ran, carried back as a value (it pickles; tracebacks do not)."""

    error: BaseException


def plan_step(engine: Any, context: Image.Image | None, prompt: str, *, seed: int, guidance: float | None,
              steps: int | None, width: int | None, height: int | None, reference: Image.Image | None = None,
              draft: bool = False, preview_every: int = 0, mask: Image.Image | None = None,
              loras: tuple = (), more_references: tuple = (), variations: int = 1) -> TurnRequest:
    """The one rule for turning a step into a pipeline call, used by the app and by replay alike.

    A draft without a size gets a quarter of the default area; a reference is placed to the right
    of the context (the output keeps the context's own aspect); both scale the context to the
    output's area instead of Kontext's ~1 MP. The engine checks every value (UserError).
    """
    from kontext.core import params as P
    from kontext.core.compose import side_by_side
    from kontext.errors import UserError

    if more_references and reference is None:
        raise UserError("more references need a first one")
    variations = P.check_variations(variations)
    if variations > 1:
        seed = P.check_group_seed(P.check_seed(seed), variations)
    if getattr(engine, "lora", None) is not None:  # LoRA names and strengths, before the turn queues
        engine.lora.resolve(loras)  # (a pool's workers check theirs again)
    if mask is not None:
        if reference is not None or draft:
            raise UserError("a masked edit works on the current picture alone: no reference and no draft")
        if context is None:
            raise UserError("a masked edit needs a picture to edit: upload one first")
        from kontext.core.masks import check_mask

        mask = check_mask(mask, context.size)
        args = engine.validate(context, prompt, seed, guidance, steps, None, None)
        # The size the pipeline runs at (the result is then pasted back at the picture's own size):
        # what the GPU time (tokens) depends on.
        run_w, run_h = engine.masked_size(context)
        return TurnRequest(context=context, prompt=args["prompt"], seed=args["seed"], guidance=args["guidance"],
                           steps=args["steps"], width=run_w, height=run_h, fit_context=True,
                           preview_every=preview_every, mask=mask, loras=tuple(loras),
                           variations=variations, **_batch(engine, run_w * run_h, variations))
    if width is None and getattr(engine.speed, "aot", False):
        # Compiled ahead of time for the buckets: "match input" is the nearest one (kontext/core/buckets.py).
        from kontext.core.buckets import nearest

        w, h = context.size if context is not None else (1, 1)
        b = nearest(w, h, engine.profile, draft=draft)
        width, height = b.width, b.height
    if draft and width is None:
        width, height = P.draft_size(context.size if context is not None else None, engine.profile)
    if reference is not None:
        if context is None:
            raise UserError("a reference image needs a current image to edit; to use a picture as a "
                            "style reference alone, upload it and say 'Using this style, ...'")
        if width is None:  # the output keeps the current image's aspect, not the pair's
            width, height = engine.output_size(context)
        context = side_by_side(context, reference, *more_references)
    args = engine.validate(context, prompt, seed, guidance, steps, width, height)
    return TurnRequest(context=context, prompt=args["prompt"], seed=args["seed"], guidance=args["guidance"],
                       steps=args["steps"], width=args["width"], height=args["height"],
                       fit_context=draft or reference is not None, preview_every=preview_every,
                       loras=tuple(loras), variations=variations,
                       **_batch(engine, args["width"] * args["height"], variations))


def _batch(engine: Any, pixels: int, n: int) -> dict[str, Any]:
    from kontext.model.speed import batch_plan

    batched, why = batch_plan(engine, pixels, n)
    return {"batched": batched, "batch_note": why}


def run_turn(engine: Any, req: TurnRequest, report: Callable[[Progress], None] | None = None,
             cancel: threading.Event | None = None) -> Any:
    """Run `req` on `engine` (an Engine); report each step, with a preview every `preview_every`."""

    n = req.variations
    shown: list = [None] * n  # each candidate's newest preview (one after another: those done stay)

    def on_step(ev: Any) -> None:
        if report is None:
            return
        batch = ev.count - ev.first if n > 1 and req.batched else 1
        fresh = False
        if req.preview_every and (ev.step == 1 or ev.step % req.preview_every == 0) and ev.step < ev.total:
            fresh = True
            for i in range(batch):
                try:
                    shown[ev.first + i] = engine.preview(ev, index=i)
                except Exception:  # noqa: BLE001 - a preview must never break an edit
                    shown[ev.first + i] = None
        # Candidates one after another count as one run of n x steps.
        step, total = (ev.step, ev.total) if req.batched else (ev.first * ev.total + ev.step, n * ev.total)
        report(Progress(step, total, shown[0] if fresh and ev.first == 0 else None,
                        previews=tuple(shown) if fresh and n > 1 else ()))

    masked = req.mask is not None  # the engine picks a masked edit's size (the picture's own, pasted back)
    return engine.edit(req.context, req.prompt, seed=req.seed, guidance=req.guidance, steps=req.steps,
                       width=None if masked else req.width, height=None if masked else req.height,
                       fit_context=req.fit_context, on_step=on_step, cancel=cancel, mask=req.mask,
                       loras=req.loras, variations=n, batched=req.batched)


def stream(run: Callable[[Callable[[Progress], None], threading.Event], Any],
           poll_s: float = 0.25, join_s: float = 0.0) -> Iterator[Progress | Done]:
    """Call `run(report, cancel)` in a thread; yield Progress while it works, then Done.

    Errors raised by `run` are re-raised here. If the consumer stops iterating, the run is cancelled.
    The thread runs in a copy of the caller's context, so request-scoped values (Gradio's request,
    which ZeroGPU bills the GPU time to) are seen there too. `join_s`: how long closing waits for a
    cancelled run to stop (0 in the app: gradio closes generators on its event loop, so waiting
    there would stall every visitor; the ZeroGPU worker waits, so the GPU is not handed back busy).
    """
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def work() -> None:
        try:
            events.put(Done(run(events.put, cancel)))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            events.put(e)

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(work,), name="kontext-turn", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = events.get(timeout=poll_s)
            except queue.Empty:
                continue
            batch = [item]
            while not events.empty():
                batch.append(events.get_nowait())
            for x in batch:
                if isinstance(x, BaseException):
                    raise x
            done = next((x for x in batch if isinstance(x, Done)), None)
            progress = [x for x in batch if isinstance(x, Progress)]
            if progress:
                # Only the newest progress matters, so the UI never lags behind the run; it is sent
                # before a result that arrived in the same batch, so every turn reports progress.
                last = progress[-1]
                if last.preview is None or not last.previews:  # the newest previews of the batch, if any
                    preview = next((x.preview for x in reversed(progress) if x.preview is not None), None)
                    previews = next((x.previews for x in reversed(progress) if x.previews), ())
                    last = Progress(last.step, last.total, preview, last.waiting, previews)
                yield last
            if done is not None:
                yield done
                return
    finally:
        cancel.set()  # no-op when the run is already done
        if join_s:
            thread.join(timeout=join_s)


def take(item: Progress | Done | Failed, report: Callable[[Progress], None] | None,
         cancel: threading.Event | None) -> Done | None:
    """One item of a turn that runs elsewhere (ZeroGPU's worker, a pool worker), in the runner's
    terms: Cancelled once Stop is set, the worker's error for Failed, progress reported; the Done
    when it has come (else None)."""
    from kontext.errors import Cancelled

    if cancel is not None and cancel.is_set():
        raise Cancelled()
    if isinstance(item, Failed):
        raise item.error
    if isinstance(item, Done):
        return item
    if report is not None:
        report(item)
    return None


class LocalGpu:
    """Run turns in this process (a dedicated GPU, or the CPU)."""

    remote = False

    def __init__(self, engine: Any):
        self.engine = engine

    def run(self, req: TurnRequest, report: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None) -> Any:
        return run_turn(self.engine, req, report, cancel)
