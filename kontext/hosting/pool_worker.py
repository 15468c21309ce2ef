"""One model worker of the Ray Serve pool (kontext/hosting/pool.py): a replica that holds one pipeline.

Each replica loads the model in the pool's speed mode and warms it up in `__init__`, so Ray Serve
routes no turn to it before it can edit at full speed (a replica still compiling is not RUNNING).
`turn(request)` streams what `kontext.hosting.zerogpu.gpu_turn` streams on ZeroGPU: `Progress` with small
previews, then `Done` (or `Failed`, an error carried back as a value), each tagged with the worker's
process id. A cancelled call (the visitor pressed Stop, the front closed the stream) sets the turn's
cancel flag, and the pipeline stops at its next step.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from ray import serve

from kontext.env import setting
from kontext.model.turns import Done, Failed, Progress, TurnRequest, run_turn


class KontextWorker:
    """The Ray Serve deployment's class (wrapped by `serve.deployment` in kontext/hosting/pool.py)."""

    def __init__(self, model: str, mode: str, device: str | None, preview: str, loras: tuple = (),
                 cache_dir: str | None = None, offload: str = "none"):
        import torch

        from kontext.hosting.startup import resolve_speed
        from kontext.model.engine import Engine
        from kontext.model.speed import warm_up

        if device in (None, "cpu"):
            torch.set_num_threads(max(1, int(setting("WORKER_THREADS"))))
        speed, reason = resolve_speed(mode, device, offload)  # "auto" reads this worker's own GPU
        print(f"worker {os.getpid()}: loading {model}: {reason}", flush=True)
        self.engine = Engine.load(model, device=device, speed=speed, cache_dir=cache_dir)
        self.engine.set_preview_mode(preview)
        self.engine.set_lora_presets(loras)
        if setting("WORKER_WARMUP") != "0":
            warm_up(self.engine)  # before the replica reports healthy: no turn waits on a compile
        self.turns = 0
        self.last: dict[str, Any] = {}  # the last turn here: steps run and how it ended (describe)

    def describe(self) -> dict[str, Any]:
        """What the front needs to plan turns without holding the model (kontext/hosting/pool.py PoolEngine)."""
        e = self.engine
        return {"model_id": e.model_id, "revision": e.revision, "profile": e.profile, "speed": e.speed,
                "device": e.device, "dtype": str(e.pipe.transformer.dtype), "pid": os.getpid(),
                "turns": self.turns, "last": dict(self.last)}

    async def turn(self, req: TurnRequest):  # an async generator: Ray Serve streams what it yields
        self.turns += 1
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        pid = os.getpid()

        last = self.last = {"steps": 0, "outcome": "running"}

        def report(p: Progress) -> None:
            last["steps"] = p.step
            loop.call_soon_threadsafe(items.put_nowait, p)

        def work() -> Done | Failed:
            from kontext.errors import Cancelled

            try:
                result = Done(run_turn(self.engine, req, report, cancel))
                last["outcome"] = "done"
                return result
            except Cancelled as e:
                last["outcome"] = "cancelled"
                return Failed(e)
            except Exception as e:  # noqa: BLE001 - carried back to the front as a value
                from kontext.hosting.zerogpu import _picklable

                last["outcome"] = "failed"
                return Failed(_picklable(e))

        job = loop.run_in_executor(None, work)
        getter: asyncio.Future | None = None
        try:
            while True:
                getter = asyncio.ensure_future(items.get())
                done, _ = await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield pid, getter.result()
                    continue
                getter.cancel()
                while not items.empty():  # progress that arrived with the end
                    yield pid, items.get_nowait()
                yield pid, job.result()
                return
        finally:
            cancel.set()  # Stop, a closed stream, or the end: the pipeline stops at its next step
            if getter is not None and not getter.done():
                getter.cancel()


def deployment(replicas: int, gpus: float, cpus: float) -> Any:
    """The deployment: N replicas, one turn at a time each, on one GPU (or `cpus` CPUs) each."""
    actor = {"num_gpus": gpus} if gpus else {"num_cpus": cpus}
    return serve.deployment(
        KontextWorker, name="KontextWorker", num_replicas=replicas, max_ongoing_requests=1,
        ray_actor_options=actor, health_check_period_s=2, health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
        # A model that does not load fails the same way every time: one more try, not three per worker.
        max_constructor_retry_count=replicas + 1,
    )
