"""Where a turn's GPU work runs: in this process, or in ZeroGPU's forked worker.

On a dedicated GPU (or the CPU) `LocalGpu` (kontext/model/turns.py) calls the engine directly. On a ZeroGPU Space
(`kontext.env.on_zerogpu()`: the `spaces` package's own switch, `SPACES_ZERO_GPU`), CUDA exists only inside a
function decorated with `spaces.GPU`, run in a forked worker process whose arguments and results
are pickled. So the GPU work is one module-level generator, `gpu_turn(request)`: it takes a
`TurnRequest` (plain values, images as PIL), yields `Progress` with small previews, then `Done` with
the `EditResult` (or `Failed`). The model was loaded in the main process at start-up and moved to
"cuda" there, as ZeroGPU expects; the worker inherits it through fork. The history commit stays
in the main process, so the session cache and the disk never disagree.

Stop: when the consumer closes the generator, `spaces` sets the worker's stop event; the worker
closes `gpu_turn` at its next yield, whose `stream` sets the cancel flag, and the pipeline stops at
its next step. Visitors' daily ZeroGPU quota is charged by the duration asked for, so
`turn_seconds` asks for what this call needs (steps x tokens, calibrated) and no more.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kontext.errors import UserError
from kontext.model.turns import Done, Failed, Progress, TurnRequest, run_turn, stream, take

# Measured on a full H200 (BENCHMARKS.md, "Earlier probe measurements"): one eager bf16 step costs
# about A*T + B*T^2 seconds for T transformer tokens (image tokens + 512 text tokens); this fits
# 0.358 s at 8704 tokens (1024² edit), 0.172 s at 4608 (1024² text-to-image), 0.094 s at 2560.
STEP_A, STEP_B = 3.305e-5, 9.28e-10
TEXT_TOKENS = 512
FULL_H200_SMS = 132
ZEROGPU_SMS = 60  # what `spaces` reports for ZeroGPU's H200 slice (ZEROGPU_CUDA_MULTI_PROCESSOR_COUNT)
FIXED_S = 10.0  # worker start, weights onto the GPU on a fresh worker, text encoders, VAE
MARGIN = 1.25
MAX_TURN_S = 120  # the most one turn may ask for; longer calls would be cut off by ZeroGPU


def step_seconds(req: TurnRequest, sms: int | None = None) -> float:
    """Estimated seconds of one denoising step of `req` on a ZeroGPU slice with `sms` multiprocessors."""
    sms = sms or int(os.environ.get("ZEROGPU_CUDA_MULTI_PROCESSOR_COUNT") or ZEROGPU_SMS)
    t = req.tokens + TEXT_TOKENS
    return (STEP_A * t + STEP_B * t * t) * FULL_H200_SMS / max(sms, 1)


def needed_seconds(req: TurnRequest) -> int:
    """Whole seconds of GPU time one turn needs on ZeroGPU, with start-up and a margin, uncapped.
    Variations are one GPU call: each candidate adds its steps (a batch costs about as many
    token-steps as the same candidates one after another; what it saves is launch overhead)."""
    return math.ceil((FIXED_S + req.variations * req.steps * step_seconds(req)) * MARGIN)


def turn_seconds(req: TurnRequest) -> int:
    """The GPU time to ask ZeroGPU for one turn (whole seconds, at most MAX_TURN_S)."""
    return min(MAX_TURN_S, needed_seconds(req))


def check_fits(req: TurnRequest) -> None:
    """Refuse a turn that would need more GPU time than one ZeroGPU call may ask for."""
    need = needed_seconds(req)
    if need > MAX_TURN_S:
        raise UserError(
            f"this edit ({req.steps} steps at {req.width}x{req.height}"
            f"{f', {req.variations} variations' if req.variations > 1 else ''}) needs about {need} s of GPU time; "
            f"a ZeroGPU call may ask for at most {MAX_TURN_S} s: use fewer "
            f"{'variations, ' if req.variations > 1 else ''}steps or a smaller output size")


# --- the GPU function ---------------------------------------------------------------------------
_engine: Any = None  # set in the main process at start-up; the forked worker inherits it


def install(engine: Any) -> None:
    """Make `engine` the one `gpu_turn` runs on (call before the app launches)."""
    global _engine
    _engine = engine


def gpu_turn(req: TurnRequest) -> Iterator[Progress | Done | Failed]:
    """The GPU work of one turn, as ZeroGPU runs it: plain values in, plain values out."""
    if _engine is None:
        yield Failed(RuntimeError("no model is installed for the GPU worker"))
        return
    try:
        # Closing waits for the pipeline to stop, so the worker never hands back a busy GPU.
        yield from stream(lambda report, cancel: run_turn(_engine, req, report, cancel), join_s=10)
    except Exception as e:  # noqa: BLE001 - handed back to the main process as a value
        yield Failed(_picklable(e))


def _picklable(e: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return RuntimeError(f"{type(e).__name__}: {e}")


AOT_COMPILE_S = 1500  # what ZeroGPU lets a call made at start-up ask for


def gpu_aot_package() -> str:
    """On a lent GPU: the aot package's path in the cache, compiled first if there is none (kontext/model/aot.py).
    The key names the GPU, so it is computed here, where the GPU is real."""
    from kontext.model import aot

    if _engine is None:
        raise RuntimeError("no model is installed for the GPU worker")
    return str(aot.ensure_package(_engine, aot.log.info))


def zerogpu_aot_function() -> Callable[[], str]:
    """`gpu_aot_package` wrapped with `spaces.GPU` for start-up's long duration."""
    import spaces

    return spaces.GPU(duration=AOT_COMPILE_S)(gpu_aot_package)


def zerogpu_function() -> Callable[[TurnRequest], Iterator[Any]]:
    """`gpu_turn` wrapped with `spaces.GPU(duration=turn_seconds)` (a no-op wrapper off ZeroGPU)."""
    import spaces

    return spaces.GPU(duration=turn_seconds)(gpu_turn)


# --- the runner the session layer calls on ZeroGPU (model/turns.py has LocalGpu) -------------------
class RemoteGpu:
    """Run turns through a generator function in another process: ZeroGPU's worker (`fn` is
    `zerogpu_function()`), or the forked stand-in the tests use."""

    remote = True

    def __init__(self, fn: Callable[[TurnRequest], Iterator[Any]]):
        self.fn = fn

    def run(self, req: TurnRequest, report: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None) -> Any:
        check_fits(req)
        gen = self.fn(req)
        try:
            for item in gen:
                done = take(item, report, cancel)
                if done is not None:
                    return done.value
            raise RuntimeError("the GPU worker ended without a result")
        finally:
            gen.close()  # on ZeroGPU this tells the worker to stop at its next yield
