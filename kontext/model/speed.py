"""Speed options for the engine: regional compile, attention backend, fp8/int8 weights, step caching,
offloading and a draft resolution. One frozen value (`SpeedOptions`) says what to apply; `apply_speed`
applies it to a freshly loaded pipeline; `speed_context` wraps each pipeline call; `warm_up` runs the
compile before the first user edit.

Compiled kernels are kept on disk (see `compile_cache_dir`), so the second start-up reuses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kontext.errors import UserError

# Backends diffusers' dispatcher knows that make sense for FLUX on one GPU. "native" is PyTorch SDPA
# (it picks flash/cuDNN/efficient itself); the "_hub" ones fetch kernels from the hub at first use.
ATTENTION_BACKENDS = (
    "native", "_native_math", "_native_cudnn", "_native_flash", "_native_efficient",
    "flash_hub", "_flash_3_hub", "sage_hub",
)
CPU_ATTENTION_BACKENDS = ("native", "_native_math")
QUANTIZE_MODES = ("fp8", "int8")
CACHE_METHODS = ("fbcache", "taylorseer")
OFFLOAD_MODES = ("none", "model", "group", "sequential")
# First Block Cache: skip the remaining blocks while the first block's residual changes less than this
# (relative mean). 0.08 is the value published for FLUX.1 [dev] (about 1.7x); Kontext is not calibrated.
DEFAULT_FBCACHE_THRESHOLD = 0.08
FP8_MIN_CAPABILITY = (8, 9)  # Ada / Hopper: the first GPUs with fp8 tensor cores


@dataclass(frozen=True)
class SpeedOptions:
    """What to do to a pipeline to make it faster or smaller. The default changes nothing ("eager")."""

    compile: bool = False  # regional torch.compile of the repeated transformer blocks
    aot: bool = False  # the transformer exported and compiled ahead of time, loaded from the cache (kontext.model.aot)
    attention: str | None = None  # one of ATTENTION_BACKENDS; None keeps diffusers' default
    quantize: str | None = None  # "fp8" (weights + activations) or "int8" (weights only), via torchao
    cache: str | None = None  # step caching through diffusers' cache hooks: "fbcache" or "taylorseer"
    cache_threshold: float | None = None  # fbcache only; default DEFAULT_FBCACHE_THRESHOLD
    offload: str = "none"  # keep parts of the model in CPU memory: "model", "group" or "sequential"
    draft: bool = False  # a quarter of the default output area, for quick previews

    def __post_init__(self) -> None:
        for name in ("compile", "aot", "draft"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_choice("attention", self.attention, ATTENTION_BACKENDS, optional=True)
        _check_choice("quantize", self.quantize, QUANTIZE_MODES, optional=True)
        _check_choice("cache", self.cache, CACHE_METHODS, optional=True)
        _check_choice("offload", self.offload, OFFLOAD_MODES)
        t = self.cache_threshold
        if t is not None:
            if self.cache != "fbcache":
                raise UserError(f"cache_threshold applies to cache='fbcache' only, got cache={self.cache!r}")
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
                raise UserError(f"cache_threshold must be a number above 0 and at most 1, got {t!r}")
        if self.compile and self.offload == "sequential":
            # accelerate's per-layer hooks move weights inside every forward: nothing stable to compile.
            raise UserError("compile cannot be combined with offload='sequential'; use compile+offload-model")
        if self.compile and self.offload == "group":
            # torch.compile refuses to trace group offload's onload hooks ("Skip inlining
            # torch.compiler.disable()d function ModuleGroup.onload_"), checked on the tiny model.
            raise UserError("compile cannot be combined with offload='group' (torch.compile cannot trace its "
                            "hooks); use compile+offload-model, or offload-group without compile")
        if self.aot:
            if self.compile:
                raise UserError("aot already compiles the transformer (ahead of time); drop compile: use aot")
            if self.cache:
                raise UserError("aot cannot be combined with step caching (its per-step choices are Python the "
                                "export cannot keep); use fast or compile+fast")
            if self.offload != "none":
                raise UserError("aot needs the whole transformer on the device; use aot without offload, or "
                                "compile+offload-model for a smaller GPU")

    @property
    def label(self) -> str:
        """A short name, e.g. "eager", "compile+fp8", "fast+offload-model"; `parse_mode` reads it back."""
        parts = []
        if self.compile:
            parts.append("compile")
        if self.aot:
            parts.append("aot")
        if self.quantize:
            parts.append(self.quantize)
        if self.cache == "fbcache":
            parts.append("fast" if self.cache_threshold is None else f"fast@{self.cache_threshold:g}")
        elif self.cache:
            parts.append(self.cache)
        if self.attention:
            parts.append(f"attn-{self.attention}")
        if self.offload != "none":
            parts.append(f"offload-{self.offload}")
        if self.draft:
            parts.append("draft")
        return "+".join(parts) or "eager"


def _check_choice(name: str, value: object, allowed: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        extra = " or None" if optional else ""
        raise UserError(f"{name} must be one of {', '.join(allowed)}{extra}; got {value!r}")


MODE_WORDS = ("eager", "compile", "aot", "fp8", "int8", "fast", "fast@T", "taylorseer", "draft",
              "offload-model", "offload-group", "offload-sequential", "attn-BACKEND")


def parse_mode(name: str) -> SpeedOptions:
    """Read a mode name such as "fp8+compile" or "fast@0.12+offload-model" into SpeedOptions."""
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"mode must be a name such as eager or fp8+compile, got {name!r}")
    kw: dict[str, Any] = {}
    for word in name.strip().split("+"):
        word = word.strip()
        if word == "eager":
            continue
        if word == "compile":
            kw["compile"] = True
        elif word == "aot":
            kw["aot"] = True
        elif word in QUANTIZE_MODES:
            kw["quantize"] = word
        elif word == "fast" or word.startswith("fast@"):
            kw["cache"] = "fbcache"
            if "@" in word:
                try:
                    kw["cache_threshold"] = float(word.split("@", 1)[1])
                except ValueError:
                    raise UserError(f"mode {name!r}: fast@T needs a number T, got {word!r}") from None
        elif word in CACHE_METHODS:
            kw["cache"] = word
        elif word == "draft":
            kw["draft"] = True
        elif word.startswith("offload-"):
            kw["offload"] = word.removeprefix("offload-")
        elif word.startswith("attn-"):
            kw["attention"] = word.removeprefix("attn-")
        else:
            raise UserError(f"mode {name!r}: unknown word {word!r}; words are {', '.join(MODE_WORDS)}")
    try:
        return SpeedOptions(**kw)
    except ValueError as e:
        raise UserError(f"mode {name!r}: {e}") from None


# (at least this many GiB of GPU memory, offload, quantize): what --mode auto picks, largest first.
LOW_MEMORY_TIERS: tuple[tuple[int, str, str | None], ...] = (
    (40, "none", None), (30, "model", None), (20, "model", "int8"), (0, "group", "int8"),
)


def choose_low_memory(total_gpu_bytes: int) -> tuple[str, str | None, str]:
    """Pick (offload, quantize, reason) for a GPU with this much memory.

    In bf16 the transformer is about 22 GiB, T5-XXL about 9 GiB, CLIP and the VAE under 1 GiB, and a
    1 MP edit needs a few GiB of activations on top of the largest part on the GPU.
    """
    if isinstance(total_gpu_bytes, bool) or not isinstance(total_gpu_bytes, int) or total_gpu_bytes <= 0:
        raise UserError(f"total_gpu_bytes must be a positive whole number, got {total_gpu_bytes!r}")
    gib = total_gpu_bytes / 2**30
    offload, quantize = next((o, q) for floor, o, q in LOW_MEMORY_TIERS if gib >= floor)
    reasons = {
        ("none", None): "holds the whole model (about 32 GiB in bf16) and a 1 MP edit",
        ("model", None): ("holds the transformer (about 22 GiB in bf16) but not all parts at once: "
                          "model offload keeps one part on the GPU at a time"),
        ("model", "int8"): ("leaves too little room beside the 22 GiB bf16 transformer: int8 weights halve it "
                            "to about 11 GiB, and model offload keeps one part at a time"),
        ("group", "int8"): ("cannot hold the transformer: group offload streams its layers from CPU memory "
                            "while it runs, and int8 weights halve what has to move"),
    }
    return offload, quantize, f"{gib:.0f} GiB {reasons[offload, quantize]}"


def memory_hint() -> str:
    """What --mode auto does with each amount of GPU memory, in words (the same table it uses)."""
    parts = []
    for floor, offload, quantize in LOW_MEMORY_TIERS:
        what = "everything on the GPU" if offload == "none" else f"{offload} offload"
        if quantize:
            what += f" with {quantize} weights"
        parts.append(f"{what} from {floor} GiB" if floor else f"{what} below that")
    return "; ".join(parts)


# --- applying --------------------------------------------------------------------------------------
def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: $TORCHINDUCTOR_CACHE_DIR, else <kontext cache>/inductor
    (<kontext cache> is $KONTEXT_CACHE or ~/.cache/kontext-playground)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    from kontext.model.tiny import default_cache_dir

    return default_cache_dir().parent / "inductor"


def enable_compile_cache() -> Path:
    """Turn on inductor's on-disk caches so a second start-up loads kernels instead of compiling them."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    folder = compile_cache_dir()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read by inductor when it looks up the cache
    inductor_config.fx_graph_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):
        functorch_config.enable_autograd_cache = True
    return folder


def check_device(opts: SpeedOptions, device: str) -> None:
    """Raise RuntimeError if `device` cannot run `opts` (fp8 tensor cores, GPU attention kernels)."""
    import torch

    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    if opts.quantize == "fp8":
        if not cuda:
            raise RuntimeError(f"quantize='fp8' needs a CUDA GPU with compute capability "
                               f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} or higher (Ada, Hopper); "
                               f"device is {device}. Use quantize='int8' or none")
        cap = torch.cuda.get_device_capability(torch.device(device))
        if cap < FP8_MIN_CAPABILITY:
            raise RuntimeError(f"quantize='fp8' needs compute capability {FP8_MIN_CAPABILITY[0]}."
                               f"{FP8_MIN_CAPABILITY[1]} or higher (Ada, Hopper); this GPU has {cap[0]}.{cap[1]}. "
                               "Use quantize='int8' or none")
    if opts.attention and opts.attention not in CPU_ATTENTION_BACKENDS and not cuda:
        raise RuntimeError(f"attention={opts.attention!r} needs a CUDA GPU; on {device} use one of "
                           f"{', '.join(CPU_ATTENTION_BACKENDS)}")
    if opts.offload == "sequential" and not cuda:
        # accelerate's per-layer hooks fail on a CPU execution device (TypeError in set_module_tensor_to_device).
        raise RuntimeError(f"offload='sequential' needs a CUDA GPU; device is {device}")
    if opts.attention and opts.attention.endswith("_hub"):
        import importlib.util

        if importlib.util.find_spec("kernels") is None:
            raise RuntimeError(f"attention={opts.attention!r} fetches its kernel from the hub with the `kernels` "
                               "package: pip install 'kontext-playground[speed]' (or use attn-native)")
    if opts.quantize:
        try:
            import torchao  # noqa: F401
        except ImportError:
            raise RuntimeError(f"quantize={opts.quantize!r} needs torchao, one of this project's requirements: "
                               "pip install -r requirements.txt (or pip install 'torchao>=0.17')") from None


def apply_speed(pipe: Any, opts: SpeedOptions, device: str) -> None:
    """Apply `opts` to a pipeline that is not yet placed, then place it on `device` (or offload it).

    Order matters: weights are quantized on the GPU (fast) before offloading moves them out, and
    cache hooks go on before compiling so the compiled blocks see them.
    """
    check_device(opts, device)
    tr = pipe.transformer
    if opts.aot:
        fuse_qkv(tr)  # before placing it: on ZeroGPU the main process must not compute on CUDA tensors
    if opts.offload == "none":
        pipe.to(device)
    if opts.quantize:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            PerRow,
            quantize_,
        )

        # int8 version 2 (torchao's Int8Tensor) on every torchao: 0.17 (the Space's pin) defaults to
        # version 1, whose AffineQuantizedTensor failed under model offload on CUDA ("unimplemented
        # operator aten._has_compatible_shallow_copy_type", the 24 GB tier of the H200 run, BENCHMARKS.md);
        # 0.18 (the tests) has only version 2.
        config = (Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()) if opts.quantize == "fp8"
                  else Int8WeightOnlyConfig(version=2))
        quantize_(tr, config, device=device)
        if opts.offload != "none":
            tr.to("cpu")
    if opts.attention:
        tr.set_attention_backend(opts.attention)
    if (opts.compile or opts.aot) and str(device).startswith("cuda"):
        import torch

        # Convolutions of the VAE run faster channels-last on tensor cores (part of the flux-fast recipe).
        pipe.vae.to(memory_format=torch.channels_last)
    if opts.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif opts.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif opts.offload == "group":
        import torch

        # Leaf-level groups with a side stream: the next layer is copied in while this one runs.
        cuda = str(device).startswith("cuda")
        pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=cuda)
    if opts.cache:
        from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

        if opts.cache == "fbcache":
            tr.enable_cache(FirstBlockCacheConfig(threshold=opts.cache_threshold or DEFAULT_FBCACHE_THRESHOLD))
        else:
            tr.enable_cache(TaylorSeerCacheConfig(taylor_factors_dtype=tr.dtype))
    if opts.compile:
        enable_compile_cache()
        # The cache hooks decide per step whether to run the remaining blocks, a graph break that
        # fullgraph=True refuses; without a cache the whole block compiles into one graph.
        tr.compile_repeated_blocks(fullgraph=opts.cache is None)


def fuse_qkv(tr: Any) -> None:
    """One matmul for query, key and value in every attention (part of the flux-fast recipe), with the
    separate projections dropped so the weights are not held twice; eager calls use the fused path too."""
    tr.fuse_qkv_projections()
    for m in tr.modules():
        if not getattr(m, "fused_projections", False):
            continue
        if hasattr(m, "to_qkv"):
            for name in ("to_q", "to_k", "to_v"):
                if hasattr(m, name):
                    delattr(m, name)
        if hasattr(m, "to_added_qkv"):
            for name in ("add_q_proj", "add_k_proj", "add_v_proj"):
                if hasattr(m, name):
                    delattr(m, name)


@contextlib.contextmanager
def speed_context(pipe: Any) -> Iterator[None]:
    """Wrap one pipeline call: fresh cache state, and the cache context the hooks need.

    FluxKontextPipeline (diffusers 0.42.1) never enters `transformer.cache_context`, so without this
    every cache hook fails with "No cache context is set". Resetting first matters after a cancelled
    call, whose half-filled cache would otherwise leak into the next edit.
    """
    tr = getattr(pipe, "transformer", None)
    if tr is None or not getattr(tr, "is_cache_enabled", False):
        yield
        return
    tr._reset_stateful_cache()
    with tr.cache_context("cond"):
        yield


# GPU memory one more picture in a batch takes, per megapixel of output (activations of the
# transformer at ~8.7k tokens per 1 MP edit, and the VAE decode of one more picture, in bf16): an
# estimate from the architecture's sizes, not a measurement; issue 27 asks for the figure on a GPU.
BATCH_BYTES_PER_MP = 3 * 2**30


def batch_plan(engine: Any, pixels: int, n: int) -> tuple[bool, str]:
    """Whether `n` candidates of `pixels` each are made in one pipeline call, and if not, why (said
    on the step and the page): a compiled transformer keeps its one-picture shapes, offloading has
    room for one picture, and a GPU must have the batch's extra memory free."""
    if n <= 1:
        return True, ""
    speed = getattr(engine, "speed", None) or SpeedOptions()
    after = f"the {n} variations run one after another"
    if speed.aot:
        return False, f"the ahead-of-time package is compiled for one picture per call: {after}"
    if speed.compile:
        return False, ("the compiled transformer is traced for one picture per call (a batch would compile "
                       f"again): {after}")
    if speed.offload != "none":
        return False, f"with offloading the GPU holds one picture's work at a time: {after}"
    device = str(getattr(engine, "device", "cpu"))
    # Measured only where the model runs: a pool's front would read its own GPU, not the workers'
    # (their batch is planned as fitting, and an out-of-memory there is told in words).
    if device.startswith("cuda") and getattr(engine, "model_here", True):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index  # the engine's card ("cuda" alone: the current one)
            dev = index if index is not None else torch.cuda.current_device()
            free, total = torch.cuda.mem_get_info(dev)
            allocated = torch.cuda.memory_allocated(dev)
            # What the allocator keeps cached for this process is free to the batch too, up to the
            # process's own cap (--gpu-memory-gb, kontext/model/gpumem.py), which the card's figure ignores.
            free += torch.cuda.memory_reserved(dev) - allocated
            free = min(free, torch.cuda.get_per_process_memory_fraction(dev) * total - allocated)
            need = (n - 1) * BATCH_BYTES_PER_MP * pixels / 2**20
            if need > 0.8 * free:
                return False, (f"a batch of {n} needs about {need / 2**30:.0f} GB more GPU memory and "
                               f"{free / 2**30:.0f} GB are free: {after}")
    return True, ""


def draft_profile(profile: Any) -> Any:
    """The profile for draft mode: a quarter of the default area, and the context image resized to the
    output size instead of snapped to a 1 MP Kontext resolution (else half the tokens would remain)."""
    area = max(profile.default_area // 4, profile.min_side**2)
    return dataclasses.replace(profile, default_area=area, auto_resize=False)


# --- start-up ----------------------------------------------------------------------------------------
def warm_up(engine: Any, on_progress: Callable[[str], None] | None = None, *,
            sizes: list[tuple[int, int] | None] | None = None, steps: int = 2) -> float:
    """Run small edits now so compiling (and fitting the preview map) happens before the first user edit.

    `sizes` are output sizes, None meaning text-to-image at the default size. By default: a square edit
    at the default area, and with compile also a 3:2 one, so the kernels are compiled for changing
    shapes and a user's first edit at another size does not compile again. Returns the seconds taken.
    """
    from PIL import Image

    from kontext.core import params as P

    say = on_progress or (lambda message: None)
    start = time.perf_counter()
    if engine.speed.aot and engine.aot is None:
        from kontext.model import aot

        engine.aot = aot.prepare(engine, say)  # compiles on the first start, loads on later ones
    if sizes is None:
        area = engine.profile.default_area
        sizes = [P.fit_area(1.0, area, engine.profile)]
        if engine.speed.compile:
            sizes.append(P.fit_area(1.5, area, engine.profile))
    for n, size in enumerate(sizes, 1):
        what = "text-to-image" if size is None else f"{size[0]}x{size[1]} edit"
        say(f"warming up ({engine.speed.label}): {what}, {n} of {len(sizes)}")
        image = None
        if size is not None:
            image = Image.linear_gradient("L").convert("RGB").resize(size)
        width, height = size if size is not None else (None, None)

        def preview_once(ev: Any) -> None:
            if ev.step == 1:
                engine.preview(ev)  # fits the preview map once

        engine.edit(image, "warm up", seed=0, steps=steps, width=width, height=height, on_step=preview_once)
    seconds = time.perf_counter() - start
    say(f"warm-up done in {seconds:.1f} s")
    return seconds
