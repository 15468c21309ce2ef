"""Start-up decisions: which speed mode to run, and warming the model up in the background.

Warm-up (compiling, fitting the preview map) runs in a thread so the page is up at once; the
first edit simply waits on the engine's lock until it is done, and the page shows the progress.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from kontext.errors import UserError
from kontext.model.speed import SpeedOptions, choose_low_memory, parse_mode, warm_up

log = logging.getLogger("kontext.hosting.startup")


# aot is allowed: it compiles inside one lent GPU call at start-up and loads in each worker (kontext/model/aot.py).
ZEROGPU_REFUSED = ("compile", "offload", "quantize")


def resolve_speed(mode: str, device: str | None, offload: str = "none",
                  zerogpu: bool = False, gpu_memory_gb: float | None = None) -> tuple[SpeedOptions, str]:
    """The SpeedOptions for `mode` ("auto" or a bench mode name such as "fp8+compile"), and why.

    "auto" keeps everything on the GPU when it fits and picks a low-memory mode when it does not;
    an explicit `offload` replaces only auto's offload choice (int8 weights it would add stay).
    On ZeroGPU the GPU is lent per call in a forked worker: JIT compile is not supported there,
    offload and quantizing would touch CUDA outside it, so those are refused and auto is eager.
    `gpu_memory_gb` (kontext/model/gpumem.py) makes auto plan for a card of that size.
    """
    mode = (mode or "auto").strip()
    if zerogpu:
        opts = SpeedOptions() if mode == "auto" else parse_mode(mode)
        asked = [name for name in ZEROGPU_REFUSED if getattr(opts, name) not in (False, None, "none")]
        if offload != "none":
            asked.append("offload")
        if asked:
            raise UserError(f"speed mode {mode!r} uses {', '.join(sorted(set(asked)))}, which ZeroGPU does not "
                             "support (the GPU is lent per edit in a forked worker): use --mode auto, eager or aot")
        if opts.aot:
            return opts, "speed mode aot (ZeroGPU: compiled ahead of time on a lent GPU, loaded by each worker)"
        return opts, f"speed mode {opts.label} (ZeroGPU: eager bf16, the GPU is lent per edit)"
    if mode != "auto":
        opts = parse_mode(mode)
        if offload != "none":
            opts = dataclasses.replace(opts, offload=offload)
        return opts, f"speed mode {opts.label} (asked for)"
    import torch

    if (device is None or str(device).startswith("cuda")) and torch.cuda.is_available():
        from kontext.model.gpumem import check_cap, usable_bytes

        total = usable_bytes(device or "cuda", check_cap(gpu_memory_gb))
        auto_offload, quantize, reason = choose_low_memory(total)
        if gpu_memory_gb is not None:
            reason += f" (capped at {gpu_memory_gb:g} GiB by --gpu-memory-gb)"
        if offload != "none":
            reason = f"--offload {offload} (asked for) instead of {auto_offload}; {reason}"
        opts = SpeedOptions(offload=offload if offload != "none" else auto_offload, quantize=quantize)
        return opts, f"speed mode {opts.label}, chosen for this GPU: {reason}"
    opts = SpeedOptions(offload=offload)
    return opts, f"speed mode {opts.label} (no CUDA GPU)"


class Startup:
    """What the page shows about the engine while it gets ready."""

    def __init__(self, reason: str = ""):
        self.reason = reason
        self.message = "starting"
        self.done = threading.Event()
        self.error: str | None = None

    def _say(self, message: str) -> None:
        self.message = message

    def run(self, engine) -> None:
        try:
            seconds = warm_up(engine, self._say)
            self.message = f"ready (warm-up {seconds:.1f} s)"
            log.info("%s", self.message)  # a host reads it in the logs; `python -m kontext trial` waits for it
        except Exception as e:  # noqa: BLE001 - shown on the page; edits report their own errors
            log.exception("warm-up failed")
            self.error = f"warm-up failed: {type(e).__name__}: {e}"
            self.message = self.error
        finally:
            self.done.set()

    def start(self, engine) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(engine,), name="kontext-warm-up", daemon=True)
        t.start()
        return t

    def wait(self, timeout: float | None = None) -> bool:
        start = time.monotonic()
        ok = self.done.wait(timeout)
        log.info("waited %.1f s for warm-up", time.monotonic() - start)
        return ok
