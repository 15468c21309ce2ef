"""Ahead-of-time compiled transformer: export once, compile with AOTInductor, package, load in seconds.

A JIT `torch.compile` recompiles at every start (minutes at 12B) and cannot run on ZeroGPU, where
no process keeps a GPU. Here the transformer is exported with `torch.export` for one dynamic
dimension, the image tokens, over the range every output bucket needs (kontext/core/buckets.py: the
output plus the context beside it), compiled by AOTInductor into a package file and kept in the
cache folder under a key of everything that makes the code valid: model id and revision, torch and
diffusers versions, device (GPU name and compute capability), dtype and speed mode. The next start
loads the package and binds the transformer's own weights to it (`load_constants(user_managed=True)`:
no second copy of 24 GB in memory, and the package holds code only).

The pipeline keeps calling `pipe.transformer(...)`: its forward is replaced by one that runs the
compiled code for calls it was compiled for and the eager module for anything else (counted in
`fallbacks`, which the tests and the bench read: 0 means nothing ran eagerly).

On ZeroGPU the same path runs in two halves: `ensure_package` inside a lent GPU at start-up
(kontext/hosting/zerogpu.py `gpu_aot_package`, the one call that may ask for minutes), then `install(...,
load_now=False)` in the main process, so each forked GPU worker loads the package on its first call.
The package lives in the same cache folder, so a Space with persistent storage compiles once. Unlike
`spaces.aoti_apply`, the module keeps its weights: the package binds to them, and calls outside the
compiled range still run eagerly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kontext.core.buckets import token_range
from kontext.env import setting

log = logging.getLogger("kontext.model.aot")
INPUTS = ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "img_ids", "txt_ids",
          "guidance")
FORMAT = 3  # bump when the way artefacts are made changes (2: fused QKV projections; 3: COMPILE_CONFIGS)
# Inductor settings for a package whose weights are bound at load time from the live module
# (`load_constants(user_managed=True)`): every tensor constant stays one of the module's own, so no
# folded constant exists that the module cannot supply (with folding, a load failed with "Cannot find
# constants constant54"). The `spaces` AoT helpers override the same settings for ZeroGPU. No
# max_autotune: it multiplies the compile time of the 12 B transformer and changed which constants
# the package expects.
COMPILE_CONFIGS: dict[str, Any] = {
    "aot_inductor.package": True,
    "aot_inductor.package_constants_in_so": False,  # code only; weights bind at load
    "always_keep_tensor_constants": True,
    "joint_graph_constant_folding": False,
}


def aot_dir() -> Path:
    """$KONTEXT_AOT_DIR, else <kontext cache>/aot ($KONTEXT_CACHE or ~/.cache/kontext-playground),
    beside the inductor cache."""
    from kontext.model.tiny import default_cache_dir

    if setting("AOT_DIR"):
        return Path(setting("AOT_DIR"))

    return default_cache_dir().parent / "aot"


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        d = torch.device(device)
        cap = torch.cuda.get_device_capability(d)
        return f"{torch.cuda.get_device_name(d)} sm{cap[0]}{cap[1]}"
    import platform

    return f"cpu-{platform.machine()}"


def artefact_key(engine: Any) -> dict[str, Any]:
    """Everything the compiled code depends on; its hash names the package file."""
    import diffusers
    import torch

    tr = engine.pipe.transformer
    return {"format": FORMAT, "model": engine.model_id, "revision": engine.revision, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "device": device_name(engine.device), "dtype": str(tr.dtype),
            "mode": engine.speed.label, "fused_qkv": True, "tokens": list(token_range(engine.profile)),
            "text_tokens": engine.profile.max_sequence_length,
            # A local folder has no revision: its architecture at least must match.
            "config": hashlib.sha256(json.dumps(dict(tr.config), sort_keys=True, default=str).encode()).hexdigest(),
            "shapes": hashlib.sha256(str([(k, tuple(v.shape)) for k, v in tr.state_dict().items()]).encode())
            .hexdigest()}


def artefact_path(engine: Any) -> Path:
    key = artefact_key(engine)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return aot_dir() / f"transformer-{digest}.pt2"


class _Inputs:
    """The keyword arguments of the pipeline's first transformer call, kept to export with."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] | None = None


def sample_inputs(engine: Any, bucket: Any = None) -> dict[str, Any]:
    """The transformer's inputs for a one-step edit at `bucket` (default: the largest), from a real
    pipeline call."""
    from PIL import Image

    from kontext.core.buckets import buckets

    tr = engine.pipe.transformer
    inner, seen = tr.forward, _Inputs()

    def spy(*args: Any, **kwargs: Any) -> Any:
        if seen.kwargs is None:
            seen.kwargs = {k: v for k, v in kwargs.items() if k in INPUTS}
        return inner(*args, **kwargs)

    big = bucket or max(buckets(engine.profile, draft=False), key=lambda b: b.tokens)
    tr.forward = spy
    try:
        engine.edit(Image.new("RGB", (big.width, big.height), (128, 128, 128)), "export", seed=0, steps=1,
                    width=big.width, height=big.height)
    finally:
        tr.forward = inner
    assert seen.kwargs is not None  # noqa: S101 - the pipeline always calls the transformer
    return seen.kwargs


def export_and_compile(engine: Any, path: Path, say: Callable[[str], None]) -> None:
    """torch.export the transformer with a dynamic token dimension, AOTInductor-compile it, package it."""
    import torch

    tr = engine.pipe.transformer
    kwargs = sample_inputs(engine)
    lo, hi = token_range(engine.profile)
    n = kwargs["hidden_states"].shape[1]
    if not lo <= n <= hi:
        raise RuntimeError(f"the sample call has {n} image tokens, outside the buckets' {lo}-{hi}")

    class Positional(torch.nn.Module):  # torch.export wants positional tensors
        def __init__(self, inner: Any):
            super().__init__()
            self.t = inner

        def forward(self, hidden_states: Any, encoder_hidden_states: Any, pooled_projections: Any, timestep: Any,
                    img_ids: Any, txt_ids: Any, guidance: Any) -> Any:
            return self.t(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                          pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids,
                          txt_ids=txt_ids, guidance=guidance, return_dict=False)[0]

    seq = torch.export.Dim("image_tokens", min=max(lo, 2), max=hi)
    dims = {name: None for name in INPUTS}
    dims["hidden_states"], dims["img_ids"] = {1: seq}, {0: seq}
    say(f"exporting the transformer ({lo}-{hi} image tokens)")
    t0 = time.perf_counter()
    with torch.inference_mode(False), torch.no_grad():
        exported = torch.export.export(Positional(tr), tuple(kwargs[k] for k in INPUTS), dynamic_shapes=dims)
    say(f"exported in {time.perf_counter() - t0:.0f} s; compiling ahead of time (minutes at full size)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.pt2")  # AOTInductor wants a .pt2 name
    t0 = time.perf_counter()
    compile_package(exported, tmp)
    os.replace(tmp, path)  # a half-written package is never loaded
    say(f"compiled in {time.perf_counter() - t0:.0f} s ({path.stat().st_size / 2**20:.1f} MB)")


def compile_package(exported: Any, path: Path) -> None:
    """AOTInductor-compile an exported program into a package at `path` that ZeroGPU can load: the
    compiled libraries' executable-stack flag cleared (kontext/model/elf.py) before they are packaged."""
    import torch
    from torch._inductor.package import package_aoti

    from kontext.model.elf import clear_exec_stack

    args, kwargs = exported.example_inputs
    try:  # what aoti_compile_and_package does (torch >= 2.10); torch 2.8-2.9 has no check_guards
        gm = exported.module(check_guards=False)
    except TypeError:
        gm = exported.module()
    files = torch._inductor.aot_compile(gm, args, kwargs, options=dict(COMPILE_CONFIGS))
    for f in files:
        if isinstance(f, str) and f.endswith(".so") and clear_exec_stack(f):
            log.info("cleared the executable-stack flag of %s", os.path.basename(f))
    package_aoti(str(path), files)
    bad = [name for name, exec_stack in package_libraries(path) if exec_stack]
    if bad:
        raise RuntimeError(f"the package still has libraries that ask for an executable stack: {', '.join(bad)}")


def package_libraries(path: Path) -> list[tuple[str, bool]]:
    """(name, asks for an executable stack) for every shared library inside a package file."""
    import zipfile

    from kontext.model.elf import wants_exec_stack

    with zipfile.ZipFile(path) as z:
        return [(n, wants_exec_stack(z.read(n))) for n in z.namelist() if n.endswith(".so")]


class AotTransformer:
    """The compiled package bound to the live transformer's weights, called in its place.

    The package is loaded in the process that calls it, on its first call there: on ZeroGPU the main
    process has no CUDA to load it with, and each forked GPU worker loads it for itself (seconds: it
    holds code only) and binds the weights that worker sees on the GPU."""

    def __init__(self, tr: Any, path: Path, tokens: tuple[int, int], package: Any = None):
        self.tr = tr
        self.path = path
        self.tokens = tokens
        self.package = package
        self._pid = os.getpid() if package is not None else None
        self.calls = 0
        self.fallbacks = 0
        self.cause: str | None = None  # why the last call that ran eagerly did; None while none has
        self._eager = tr.forward

    def describe(self) -> str:
        """One line for the page and the log: whether calls run compiled, and if not, why."""
        if self.cause is not None:
            return f"compiled: no ({self.fallbacks} eager call(s)) — {self.cause}; running eagerly"
        if self._pid != os.getpid():  # ZeroGPU's main process: each GPU worker loads it for itself
            return f"compiled: yes ({self.path.name}, loaded by each GPU worker on its first edit)"
        return f"compiled: yes ({self.path.name}, {self.calls} compiled call(s))"

    def _eager_call(self, cause: str, *args: Any, **kwargs: Any) -> Any:
        """Run a call eagerly and say why: logged the first time a cause appears, kept for the page."""
        self.fallbacks += 1
        if cause != self.cause:
            log.warning("transformer call runs eagerly: %s", cause)
        self.cause = cause
        return self._eager(*args, **kwargs)

    def compiled(self) -> Any:
        """This process's loaded package, loading it on first use; None if it cannot be loaded here
        (a worker on another GPU, a damaged file): then calls run eagerly, and that is logged once."""
        if self._pid != os.getpid():
            t0 = time.perf_counter()
            self._pid = os.getpid()
            try:
                self.package = _load_package(self.tr, self.path)
            except Exception as e:  # noqa: BLE001 - the eager module still works; the log and page say why
                log.exception("cannot load the compiled transformer %s here; running it eagerly", self.path.name)
                self.package = None
                self.cause = f"the package {self.path.name} could not be loaded here ({type(e).__name__}: {e})"[:400]
                return None
            log.info("compiled transformer %s loaded in %.2f s (process %d)", self.path.name,
                     time.perf_counter() - t0, self._pid)
        return self.package

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        hs = kwargs.get("hidden_states")
        # Anything else given (LoRA scales in joint_attention_kwargs, ControlNet residuals) is not in the
        # compiled graph: such calls run eagerly. The pipeline passes an empty dict when there is none.
        extra = {k for k, v in kwargs.items() if k not in INPUTS and k != "return_dict" and v is not None and v != {}}
        if args or extra or hs is None or any(kwargs.get(k) is None for k in INPUTS):
            named = ", ".join(sorted(extra)) or "positional or missing inputs"
            return self._eager_call(f"a call with arguments the package does not take ({named})", *args, **kwargs)
        if not self.tokens[0] <= hs.shape[1] <= self.tokens[1]:
            return self._eager_call(f"{hs.shape[1]} image tokens, outside the compiled range "
                                    f"{self.tokens[0]}-{self.tokens[1]}", *args, **kwargs)
        package = self.compiled()
        if package is None:
            return self._eager_call(self.cause or "the package could not be loaded", *args, **kwargs)
        self.calls += 1
        out = package(*(kwargs[k] for k in INPUTS))
        return Transformer2DModelOutput(sample=out) if kwargs.get("return_dict", True) else (out,)


def _load_package(tr: Any, path: Path) -> Any:
    """Load a package and bind the transformer's weights to it (shared, not copied)."""
    import torch

    package = torch._inductor.aoti_load_package(str(path))
    wanted = set(package.get_constant_fqns())  # an inner tensor the graph never reads is not in it
    weights = {name: v for k, v in plain_state_dict(tr).items() if (name := f"t.{k}") in wanted}
    package.load_constants(weights, check_full_update=True, user_managed=True)  # every one it needs
    return package


def plain_state_dict(module: Any) -> dict[str, Any]:
    """The module's weights as plain tensors, under the names the exported graph gives them.

    Quantized weights (torchao's int8/fp8 tensor subclasses) are flattened by the export into their
    inner tensors ("...weight" becomes "...parametrizations.weight.original0", "...original1"). The
    same flattening is applied to a copy of the module tree that shares every tensor, so the live
    module keeps its quantized weights for eager calls and nothing is copied."""
    from torch._functorch._aot_autograd.subclass_parametrization import unwrap_tensor_subclass_parameters
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if not any(is_traceable_wrapper_subclass(t) for t in module.state_dict().values()):
        return module.state_dict()
    return unwrap_tensor_subclass_parameters(_share_tree(module)).state_dict()


def _share_tree(module: Any) -> Any:
    """A new module object per node, holding the same tensors: parametrizing it leaves `module` as it was."""
    twin = object.__new__(type(module))
    twin.__dict__ = dict(module.__dict__)
    twin._parameters = dict(module._parameters)
    twin._buffers = dict(module._buffers)
    twin._modules = {name: _share_tree(child) for name, child in module._modules.items() if child is not None}
    return twin


def install(engine: Any, path: Path, load_now: bool = True) -> AotTransformer:
    """Put the package at `path` in place of the transformer's forward (loaded now, or at first use)."""
    tr = engine.pipe.transformer
    package = _load_package(tr, path) if load_now else None
    compiled = AotTransformer(tr, path, token_range(engine.profile), package)
    tr.forward = compiled.forward
    return compiled


def ensure_package(engine: Any, say: Callable[[str], None] | None = None) -> Path:
    """The engine's package in the cache, compiled first if there is none (on the device: the GPU).

    Processes sharing the cache (pool workers on one machine, a restart while the old process still
    compiles) take a lock file beside the package: one compiles, the others wait and then load it."""
    say = say or (lambda message: None)
    path = artefact_path(engine)
    with engine._lock:
        if not path.is_file():
            with _compile_lock(path, say):
                if not path.is_file():  # another process may have finished it while this one waited
                    export_and_compile(engine, path, say)
    return path


@contextlib.contextmanager
def _compile_lock(path: Path, say: Callable[[str], None]) -> Any:
    """An exclusive flock on PATH.lock; released when this process ends, however it ends."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process that is compiling {path.name}")
            log.info("waiting for another process compiling %s", path.name)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare(engine: Any, say: Callable[[str], None] | None = None) -> AotTransformer:
    """Load the engine's package from the cache, compiling it first if there is none; install it."""
    say = say or (lambda message: None)
    path = artefact_path(engine)
    with engine._lock:  # edits asked for meanwhile wait, then run compiled
        if path.is_file():
            say(f"loading the compiled transformer ({path.name})")
        ensure_package(engine, say)
        t0 = time.perf_counter()
        compiled = install(engine, path)
    say(f"compiled transformer ready (loaded in {time.perf_counter() - t0:.2f} s)")
    return compiled
