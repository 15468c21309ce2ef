"""One edit through diffusers' FluxKontextPipeline. Knows nothing about sessions or the UI.

`Engine.load(...)` loads a pipeline with `from_pretrained` (a hub id, a local folder, or the
embedded tiny model, which is saved once and then read back the same way). `Engine.edit(...)` runs
one call: context image (or none, for text-to-image) + prompt + parameters -> image, with a per-step
callback and a cancel flag. The seed is decided before the call, so it is always known.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from kontext.core import params as P
from kontext.core.images import to_rgb
from kontext.core.masks import check_mask, coverage, paste
from kontext.errors import Cancelled, ModelLoadError, UserError
from kontext.model.gpumem import apply_cap, check_cap
from kontext.model.hub import explain_load_error
from kontext.model.loras import LoraSet
from kontext.model.previews import PREVIEW_MODES, EstimateTap, LatentPreviewer
from kontext.model.randomfull import RANDOM_FULL, RANDOM_MODELS, build_for
from kontext.model.speed import (
    OFFLOAD_MODES,
    SpeedOptions,
    apply_speed,
    check_device,
    draft_profile,
    memory_hint,
    speed_context,
)
from kontext.model.tiny import TINY_ID, TINY_REVISION, ensure_tiny_model

REAL_MODEL_ID = "black-forest-labs/FLUX.1-Kontext-dev"




@dataclass(frozen=True)
class StepEvent:
    """What the per-step callback sees: step `step` of `total` has just finished."""

    step: int
    total: int
    latents: Any  # packed latents (torch.Tensor): the state after this step
    width: int
    height: int
    estimate: Any = None  # packed latents of the predicted result (x0 estimate), when kept
    first: int = 0  # candidates run one after another: the candidate these latents belong to
    count: int = 1  # candidates in the group (a batch's latents hold count - first of them)


@dataclass(frozen=True)
class EditResult:
    image: Image.Image
    seed: int
    guidance: float
    steps: int
    width: int
    height: int
    seconds: float
    model: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Variations: every candidate's picture (the first is `image`), seeds seed, seed+1, ...
    candidates: tuple[Image.Image, ...] = ()


def default_model() -> str:
    """The real model when CUDA is available, else the embedded tiny model."""
    try:
        import torch

        return REAL_MODEL_ID if torch.cuda.is_available() else TINY_ID
    except ImportError:
        return TINY_ID


class Engine:
    """A loaded pipeline plus the rules for calling it. One pipeline call runs at a time."""

    def __init__(self, pipe: Any, model_id: str, profile: P.Profile, device: str, revision: str = "",
                 speed: SpeedOptions | None = None):
        self.pipe = pipe
        self.model_id = model_id
        self.speed = speed or SpeedOptions()
        self.profile = draft_profile(profile) if self.speed.draft else profile
        self.device = device
        self.revision = revision
        # The pipeline keeps per-call state (e.g. _interrupt). Re-entrant: compiling ahead of time
        # (kontext.model.aot) holds it across its own sample edit, so user edits wait for the compile.
        self._lock = threading.RLock()
        self.aot: Any = None  # kontext.model.aot.AotTransformer once prepared (speed mode "aot")
        self._previewer: LatentPreviewer | None = None
        self._tap = EstimateTap.attach(pipe)  # None: previews show the noisy state
        self.preview_mode = "estimate"
        self._inpaint: Any = None  # built on the first masked edit (inpaint_pipe)
        self.lora = LoraSet(pipe)  # the host's LoRA presets (set_lora_presets), switched per turn
        pipe.set_progress_bar_config(disable=True)

    def masked_size(self, image: Image.Image) -> tuple[int, int]:
        """The size a masked edit runs at before it is pasted back: the picture's aspect at the
        model's area, or the nearest compiled bucket in aot mode (so it runs compiled)."""
        if self.speed.aot:
            from kontext.core.buckets import nearest

            b = nearest(image.width, image.height, self.profile)
            return b.width, b.height
        return self.output_size(image)

    @property
    def inpaint_pipe(self) -> Any:
        """diffusers' FluxKontextInpaintPipeline over the same components: no second copy of the weights."""
        if self._inpaint is None:
            from diffusers import FluxKontextInpaintPipeline

            self._inpaint = FluxKontextInpaintPipeline(**self.pipe.components)
            self._inpaint.set_progress_bar_config(disable=True)
        return self._inpaint

    def set_lora_presets(self, presets: Any) -> None:
        """The LoRAs this engine offers (kontext.model.loras.Lora); they load on first use."""
        if presets and self.speed.aot:
            raise UserError("LoRAs are not part of the aot package: use --mode eager or compile with LoRAs")
        self.lora = LoraSet(self.pipe, tuple(presets))

    def set_preview_mode(self, mode: str) -> None:
        """Previews show "estimate" (the predicted result, the default) or "noisy" (the state itself)."""
        if mode not in PREVIEW_MODES:
            raise UserError(f"preview must be one of {PREVIEW_MODES}, got {mode!r}")
        self.preview_mode = mode

    def preview(self, ev: StepEvent, max_side: int = 512, index: int = 0) -> Image.Image:
        """A cheap RGB preview of a running edit (a linear projection, no VAE decode): the predicted
        result, or the noisy state in mode "noisy" (and for a scheduler the estimate cannot tap).
        `index`: which picture of a batch (variations made in one call)."""
        if self._previewer is None:
            self._previewer = LatentPreviewer(self.pipe)
        use_estimate = self.preview_mode == "estimate" and ev.estimate is not None
        latents = ev.estimate if use_estimate else ev.latents
        return self._previewer(latents[index:index + 1], ev.width, ev.height, max_side=max_side)

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        offload: str = "none",
        cache_dir: str | Path | None = None,
        speed: SpeedOptions | None = None,
        gpu_memory_gb: float | None = None,
    ) -> Engine:
        """Load `model`: "tiny", "random-full" or "random-small" (built in memory, kontext.model.randomfull), a
        hub id such as black-forest-labs/FLUX.1-Kontext-dev, or a local folder.

        `speed` (kontext.model.speed.SpeedOptions) compiles, quantizes, caches or offloads; `offload` is kept
        for callers that set only that. `gpu_memory_gb` caps this process's GPU memory (kontext/model/gpumem.py).
        Never falls back to another model: if loading fails, ModelLoadError says why and what to do.
        What the speed mode needs (torchao, a GPU for fp8, ...) is checked before anything is downloaded.
        """
        import torch
        from diffusers import FluxKontextPipeline

        model = (model or default_model()).strip()
        if offload not in OFFLOAD_MODES:
            raise UserError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
        speed = _merge_offload(speed, offload)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
        cap = check_cap(gpu_memory_gb)
        if cap is not None and not device.startswith("cuda"):
            raise UserError("gpu_memory_gb caps a CUDA GPU's memory; this device is " + device)
        check_device(speed, device)  # RuntimeError before from_pretrained: a mode that cannot run stops before 33 GB
        if dtype is None:
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if dtype not in ("bfloat16", "float16", "float32"):
            raise UserError(f"dtype must be bfloat16, float16 or float32, got {dtype!r}")
        torch_dtype = getattr(torch, dtype)

        if model in RANDOM_MODELS:
            return cls._build_random(model, device, torch_dtype, speed, cap)
        is_tiny = model == TINY_ID
        source = str(ensure_tiny_model(cache_dir)) if is_tiny else model
        try:
            pipe = FluxKontextPipeline.from_pretrained(source, dtype=torch_dtype)
        except Exception as e:  # noqa: BLE001 - turned into one plain message below
            raise ModelLoadError(explain_load_error(model, e)) from e
        revision = TINY_REVISION if is_tiny else _loaded_revision(source)
        profile = P.TINY_PROFILE if is_tiny else P.REAL_PROFILE
        apply_cap(device, cap)
        return cls.from_pipeline(pipe, model, profile, device, revision=revision, speed=speed)

    @classmethod
    def _build_random(cls, model: str, device: str, dtype: Any, speed: SpeedOptions,
                      cap: float | None = None) -> Engine:
        """random-full / random-small (kontext.model.randomfull): built in memory, with the real model's profile."""
        import torch

        from kontext.env import on_zerogpu

        if model == RANDOM_FULL and not (device.startswith("cuda") or on_zerogpu()):
            raise ModelLoadError(f"{RANDOM_FULL} is FLUX.1 Kontext's full-size architecture (17 B parameters) "
                                 "and needs a CUDA GPU with about 40 GB; on a CPU use random-small or tiny")
        try:
            pipe, revision = build_for(model, device, dtype, capped=cap is not None)
        except torch.OutOfMemoryError as e:
            raise ModelLoadError(f"not enough GPU memory to build {model} on {device}: start with --mode auto, "
                                 f"which fits the GPU's memory ({memory_hint()})") from e
        apply_cap(device, cap)  # after the build: its parts were drawn where the card had room
        return cls.from_pipeline(pipe, model, P.REAL_PROFILE, device, revision=revision, speed=speed)

    @classmethod
    def from_pipeline(cls, pipe: Any, model: str, profile: P.Profile, device: str, *, revision: str = "",
                      speed: SpeedOptions | None = None) -> Engine:
        """Wrap a pipeline built in memory (not yet placed): apply `speed` and place it on `device`."""
        import torch

        speed = speed or SpeedOptions()
        try:
            apply_speed(pipe, speed, device)
        except torch.OutOfMemoryError:
            oom = True
        else:
            oom = False
        if oom:
            del pipe
            gc.collect()
            torch.cuda.empty_cache()
            raise ModelLoadError(
                f"not enough GPU memory to hold {model} on {device}: "
                f"start with --mode auto, which fits the GPU's memory ({memory_hint()})"
            )
        return cls(pipe, model, profile, device, revision, speed=speed)

    # --- one edit ------------------------------------------------------------------------------
    def output_size(self, image: Image.Image | None, area: int | None = None) -> tuple[int, int]:
        """The output size for `image`: its aspect ratio at `area` pixels (default: the model's)."""
        area = area or self.profile.default_area
        if image is None:
            return P.fit_area(1.0, area, self.profile)
        w, h = image.size
        return P.fit_area(w / h, area, self.profile)

    def validate(
        self,
        image: Image.Image | None,
        prompt: str,
        seed: int | None,
        guidance: float | None,
        steps: int | None,
        width: int | None,
        height: int | None,
    ) -> dict[str, Any]:
        """Check every argument; return the call's resolved parameters (the seed drawn if None)."""
        if image is not None and not isinstance(image, Image.Image):
            raise UserError(f"image must be a PIL image or None, got {type(image).__name__}")
        prompt = P.check_prompt(prompt)
        seed = P.new_seed() if seed is None else P.check_seed(seed)
        guidance = self.profile.default_guidance if guidance is None else P.check_guidance(guidance)
        steps = self.profile.default_steps if steps is None else P.check_steps(steps)
        if (width is None) != (height is None):
            raise UserError("width and height must be given together (or neither, to match the input)")
        if width is None:
            width, height = self.output_size(image)
        width, height = P.check_size(width, height, self.profile)
        return dict(prompt=prompt, seed=seed, guidance=guidance, steps=steps, width=width, height=height)

    def edit(
        self,
        image: Image.Image | None,
        prompt: str,
        *,
        seed: int | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
        cancel: threading.Event | None = None,
        fit_context: bool = False,
        mask: Image.Image | None = None,
        loras: Any = (),
        variations: int = 1,
        batched: bool = True,
    ) -> EditResult:
        """Edit `image` (or generate from text when it is None). Raises Cancelled if `cancel` is set.

        `fit_context` scales the context image to the output's area instead of Kontext's trained
        ~1 MP resolutions: fewer tokens, so a small draft is really fast (at some cost in fidelity).
        `mask` (kontext.core.masks.check_mask, the image's size): only that part may change; the result
        keeps the image's size and every pixel outside the mask (kontext.core.masks.paste).
        `loras`: (name, strength) pairs of the host's presets (kontext/model/loras.py), the only LoRAs loaded.
        `variations`: N candidates with seeds seed, seed+1, ...: in one pipeline call (a batch with one
        generator each) when `batched`, else one call after another (what fits a smaller GPU, or
        keeps a compiled transformer on its compiled batch size); all land in `candidates`.
        """
        n = P.check_variations(variations)
        # 1. every value checked (LoRAs, mask, sizes, seed, guidance, steps), before the lock
        lora_items = self.lora.resolve(loras)
        args, mask = self._checked(image, prompt, seed, guidance, steps, width, height, mask, n)
        auto_resize = self.profile.auto_resize and not fit_context
        # 2. the context at the size the pipeline will keep
        context = None if image is None else self._context(image, args["width"], args["height"], mask is not None,
                                                           auto_resize)
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        # 3. one pipeline call at a time (the interrupt flag and the LoRAs live on the shared pipeline)
        with self._lock, speed_context(self.pipe):  # speed_context: a step cache's per-call state
            if cancel is not None and cancel.is_set():
                raise Cancelled()  # stopped while waiting for another edit to finish
            used_loras = self.lora.apply(lora_items)
            if n == 1 or batched:
                run = self._run(context, args, auto_resize, mask, on_step, cancel, count=n)
            else:
                run = self._one_by_one(context, args, auto_resize, mask, on_step, cancel, n)
        return self._result(image, mask, args, run, used_loras, n)

    def _checked(self, image: Image.Image | None, prompt: str, seed: int | None, guidance: float | None,
                 steps: int | None, width: int | None, height: int | None, mask: Image.Image | None,
                 n: int) -> tuple[dict[str, Any], Image.Image | None]:
        """The call's values checked and completed (a masked edit keeps the picture's size; a group of
        n takes seeds seed..seed+n-1), and the mask checked against the picture."""
        if mask is not None:
            if image is None:
                raise UserError("a masked edit needs a picture to edit: upload one first")
            if width is not None:
                raise UserError("a masked edit keeps the picture's size: leave width and height empty")
            mask = check_mask(mask, image.size)
            width, height = self.masked_size(image)
        args = self.validate(image, prompt, seed, guidance, steps, width, height)
        if n > 1:
            args["seed"] = P.check_group_seed(P.new_group_seed(n) if seed is None else args["seed"], n)
        return args, mask

    def _result(self, image: Image.Image | None, mask: Image.Image | None, args: dict[str, Any],
                run: dict[str, Any], used_loras: list, n: int) -> EditResult:
        """The pipeline's pictures as the result, with what the page and the PNG record about how it was made."""
        outs, extra = run["images"], {"speed": self.speed.label, **run["extra"]}
        w, h = args["width"], args["height"]
        if used_loras:
            extra["loras"] = used_loras
        if mask is not None:
            outs = [paste(to_rgb(image), out, mask) for out in outs]  # outside the mask: the parent's pixels
            w, h = outs[0].size
            extra["masked"] = round(coverage(mask), 4)
        return EditResult(
            image=outs[0], seed=args["seed"], guidance=args["guidance"], steps=args["steps"],
            width=w, height=h, seconds=run["seconds"], model=self.model_id, extra=extra,
            candidates=tuple(outs) if n > 1 else (),
        )

    def _one_by_one(self, context: Image.Image | None, args: dict[str, Any], auto_resize: bool,
                    mask: Image.Image | None, on_step: Callable[[StepEvent], None] | None,
                    cancel: threading.Event | None, n: int) -> dict[str, Any]:
        """Candidate after candidate, seeds seed, seed+1, ...: each the call a single edit makes."""
        images, seconds, extra = [], 0.0, {}
        for i in range(n):
            report = None if on_step is None else (
                lambda ev, i=i: on_step(dataclasses.replace(ev, first=i, count=n)))
            run = self._run(context, {**args, "seed": args["seed"] + i}, auto_resize, mask, report, cancel)
            images += run["images"]
            seconds += run["seconds"]
            for k, v in run["extra"].items():  # compiled and eager calls add up; the cause is kept
                extra[k] = extra.get(k, 0) + v if isinstance(v, int) else v
        return {"images": images, "seconds": seconds, "extra": extra}

    def _context(self, image: Image.Image, w: int, h: int, masked: bool, auto_resize: bool) -> Image.Image:
        """The context image as the pipeline should get it for a (w, h) output."""
        context = to_rgb(image)
        if masked:
            return context.resize((w, h), Image.LANCZOS)  # the inpaint pipeline keeps this size
        if auto_resize:
            return context
        # Without auto-resize the pipeline keeps the context at full size: bound its cost by the
        # output's area, keeping the context's own aspect (a side-by-side pair is wider).
        cw, ch = context.size
        target = (w, h) if abs(cw / ch - w / h) < 0.02 else P.fit_area(cw / ch, w * h, self.profile)
        return context if context.size == target else context.resize(target, Image.LANCZOS)

    def _run(self, context: Image.Image | None, args: dict[str, Any], auto_resize: bool, mask: Image.Image | None,
             on_step: Callable[[StepEvent], None] | None, cancel: threading.Event | None,
             count: int = 1) -> dict[str, Any]:
        """The pipeline call itself (under the engine's lock): the `count` images (one per seed from
        args["seed"] on), its seconds, and how the transformer ran (compiled calls, eager fallbacks).
        Out of memory becomes a UserError."""
        import torch

        w, h = args["width"], args["height"]
        start = time.perf_counter()
        aot_before = (self.aot.calls, self.aot.fallbacks) if self.aot is not None else (0, 0)
        if self._tap is not None:  # keep x0 estimates only for a caller who watches the steps
            self._tap.keep = on_step is not None and self.preview_mode == "estimate"
        # Noise drawn on the CPU: the same seed gives the same start on any device. A batch gets one
        # generator per candidate, so candidate i starts from the noise a single call with seed+i does.
        generators = [torch.Generator("cpu").manual_seed(args["seed"] + i) for i in range(count)]
        try:
            masked = {} if mask is None else dict(mask_image=mask.resize((w, h), Image.NEAREST), strength=1.0)
            out = (self.pipe if mask is None else self.inpaint_pipe)(
                image=context,
                prompt=args["prompt"],
                height=h,
                width=w,
                max_area=w * h,  # with height/width this keeps exactly (w, h)
                _auto_resize=auto_resize and mask is None,
                **masked,
                num_inference_steps=args["steps"],
                guidance_scale=args["guidance"],
                max_sequence_length=self.profile.max_sequence_length,
                num_images_per_prompt=count,
                generator=generators[0] if count == 1 else generators,
                callback_on_step_end=self._step_callback(args, on_step, cancel, count),
            ).images
            oom = False
        except torch.OutOfMemoryError:
            oom = True
        finally:
            if self._tap is not None:
                self._tap.keep = False
                self._tap.take()  # drop the last estimate's memory
        if oom:  # recovered outside the except block: the exception holds references to big tensors
            self._out_of_memory(w, h, count)
        extra = self._aot_counts(aot_before)
        return {"images": list(out), "seconds": time.perf_counter() - start, "extra": extra}

    def _step_callback(self, args: dict[str, Any], on_step: Callable[[StepEvent], None] | None,
                       cancel: threading.Event | None, count: int) -> Callable[..., dict]:
        """The pipeline's step-end callback: Stop before the next step, and the step's event."""
        w, h = args["width"], args["height"]

        def callback(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            if cancel is not None and cancel.is_set():
                raise Cancelled()  # before the VAE decode: a half-denoised image never leaves
            if on_step is not None:
                estimate = self._tap.take() if self._tap is not None else None
                on_step(StepEvent(i + 1, args["steps"], kwargs["latents"], w, h, estimate, count=count))
            return {}

        return callback

    @staticmethod
    def _out_of_memory(w: int, h: int, count: int) -> None:
        """Free what the failed call held and say what to change, in words."""
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        many = f" for {count} variations at once: ask for fewer, or" if count > 1 else ":"
        raise UserError(
            f"out of GPU memory at {w}x{h}{many} choose a smaller output size or start the app with --offload model"
        )

    def _aot_counts(self, before: tuple[int, int]) -> dict[str, Any]:
        """Transformer calls that ran the compiled package (kontext/model/aot.py) since `before`, and
        the eager ones with their cause: said on the step, also when it ran in another process
        (ZeroGPU, a pool worker)."""
        if self.aot is None:
            return {}
        extra: dict[str, Any] = {"compiled_calls": self.aot.calls - before[0]}
        eager_calls = self.aot.fallbacks - before[1]
        if eager_calls:
            extra["eager_calls"], extra["eager_cause"] = eager_calls, self.aot.cause
        return extra


def _merge_offload(speed: SpeedOptions | None, offload: str) -> SpeedOptions:
    """The one SpeedOptions to apply, given the older `offload` argument as well."""

    if speed is None:
        return SpeedOptions(offload=offload)
    if offload == "none" or speed.offload == offload:
        return speed
    if speed.offload != "none":
        raise UserError(f"offload={offload!r} and speed.offload={speed.offload!r} disagree; give one of them")
    return dataclasses.replace(speed, offload=offload)


def _loaded_revision(source: str) -> str:
    """The hub commit of the snapshot `from_pretrained` just read: the one the cache's ref points to
    now (a local folder has none, so '')."""
    if os.path.isdir(source):
        return ""
    try:
        from huggingface_hub import snapshot_download

        # Resolves the same ref from_pretrained used, from the cache only: the folder is named by the commit.
        return Path(snapshot_download(source, local_files_only=True, allow_patterns=["model_index.json"])).name
    except Exception:  # noqa: BLE001 - a revision is nice to have, never required
        return ""
