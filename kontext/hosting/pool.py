"""A pool of model workers on Ray Serve, with one playground in front (`--workers ray`).

The playground process keeps the UI, the sessions and the history store; each turn's GPU work goes
to a Ray Serve deployment of N replicas (kontext/hosting/pool_worker.py), each holding one pipeline on one
GPU (or some CPUs), all in one speed mode. A turn crosses as the same plain values ZeroGPU's worker
takes (`TurnRequest` in, `Progress` / `Done` / `Failed` out, kontext/model/turns.py) over a Ray Serve
streaming handle, so previews arrive while it runs and closing the stream (Stop) cancels it there.

The front plans turns with a `PoolEngine`: the model's rules (profile, speed mode, revision) as the
workers describe them, and no weights, so a 12B model is not loaded a second time in front.

Faults: a replica that dies mid-turn fails that turn with `WorkerLost` (nothing is committed, the
user is told to try again); Ray Serve starts a replacement, which takes no turn before its model is
loaded and warmed up. A turn is never sent twice: the stream is not retried.

Ray is imported only here, and this module only with `--workers ray` (the optional `scale` extra).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kontext.errors import Cancelled, UserError, WorkerLost
from kontext.model.engine import Engine
from kontext.model.turns import Done, Failed, Progress, TurnRequest, take

log = logging.getLogger("kontext.hosting.pool")
APP_NAME = "kontext"



class PoolEngine:
    """The engine as the front sees it with a pool: the rules for planning a turn, no pipeline."""

    model_here = False  # the workers hold the model (kontext.model.speed.batch_plan measures nothing here)
    # Planning uses these three and they read only the profile and the speed mode.
    masked_size = Engine.masked_size
    output_size = Engine.output_size
    validate = Engine.validate

    def __init__(self, info: dict[str, Any], replicas: int):
        self.model_id = info["model_id"]
        self.revision = info["revision"]
        self.profile = info["profile"]
        self.speed = info["speed"]
        self.device = info["device"]  # each worker's device, e.g. "cuda"; recorded with the results
        self.replicas = replicas
        self.aot = None
        dtype = info["dtype"].removeprefix("torch.")
        self.pipe = SimpleNamespace(dtype=dtype, transformer=SimpleNamespace(dtype=dtype))  # for metadata

    def edit(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("with --workers ray the model runs in the pool's workers, not in front")


class RayPool:
    """The GPU runner the sessions call (like kontext.hosting.zerogpu.RemoteGpu), backed by a Ray Serve handle."""

    remote = True
    first_item_s = 600.0  # a turn no worker has started by then is given up (all workers dead or stuck)

    def __init__(self, handle: Any, replicas: int):
        self.handle = handle
        self.replicas = replicas
        self.name, self.owns_ray = APP_NAME, False  # set by start_pool
        self._local = threading.local()

    @property
    def last_worker(self) -> int | None:
        """Pid of the worker that sent this thread's turn its last item (tests, logs)."""
        return getattr(self._local, "pid", None)

    def run(self, req: TurnRequest, report: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None) -> Any:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        gen = self.handle.options(stream=True).turn.remote(req)
        items: queue.Queue = queue.Queue()

        def pump() -> None:  # the handle's iterator blocks; reading it here keeps Stop responsive
            try:
                for item in gen:
                    items.put(("item", item))
                items.put(("end", None))
            except BaseException as e:  # noqa: BLE001 - handed to the turn's thread below
                items.put(("error", e))

        threading.Thread(target=pump, name="kontext-pool-turn", daemon=True).start()
        finished = False
        started = time.monotonic()
        got_any = False
        try:
            while True:
                try:
                    kind, data = items.get(timeout=0.25)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled() from None  # Stop works while the turn waits for a worker too
                    if not got_any and time.monotonic() - started > self.first_item_s:
                        raise WorkerLost(f"no model worker started this edit within {self.first_item_s:.0f} s "
                                         "(they may be restarting); nothing was changed: try again later") from None
                    continue
                if kind == "error":
                    raise _worker_error(data)
                if kind == "end":
                    raise WorkerLost("the model worker ended this edit without a result; nothing was changed: "
                                     "try again")
                pid, item = data
                got_any = True
                self._local.pid = pid
                finished = isinstance(item, (Done, Failed))
                done = take(item, report, cancel)
                if done is not None:
                    done.value.extra["worker"] = pid
                    return done.value
        finally:
            if not finished:
                gen.cancel()  # Stop or a lost stream: the worker stops at its next step


def _worker_error(e: BaseException) -> BaseException:
    """A lost or unavailable worker in plain words (WorkerLost); anything else is a bug, raised as it is."""
    import ray.exceptions
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    if isinstance(e, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
        log.warning("worker lost during a turn: %s", type(e).__name__)
        return WorkerLost("the model worker running this edit stopped (it is being replaced); nothing was "
                          "changed: try again in a moment")
    if isinstance(e, (DeploymentUnavailableError, BackPressureError)):
        log.warning("no worker available: %s", e)
        return WorkerLost("no model worker is available right now; nothing was changed: try again in a moment")
    return e


def start_pool(model: str | None, mode: str, device: str | None, replicas: int, *, address: str | None = None,
               offload: str = "none", preview: str = "estimate", loras: tuple = (), cache_dir: str | None = None,
               cpus_per_replica: float = 1, name: str = APP_NAME,
               say: Callable[[str], None] = print) -> tuple[RayPool, PoolEngine]:
    """Start (or join, with `address`) Ray, deploy N workers named `name` and wait until every one is
    warmed up. One front per pool: a pool of that name already running on the cluster is refused."""
    import ray
    from ray import serve

    from kontext.hosting.pool_worker import deployment
    from kontext.model.engine import REAL_MODEL_ID, TINY_ID

    if not 0 <= replicas <= 64:
        raise UserError(f"--replicas must be from 1 to 64 (0: one per GPU), got {replicas}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise UserError(f"--pool-name must be 1 to 64 letters, digits, - or _; got {name!r}")
    t0 = time.perf_counter()
    owns_ray = not address and not ray.is_initialized()  # this front starts Ray: it owns the whole instance
    gpus, replicas = _join_ray(address, device, replicas, cpus_per_replica, name, say)
    model = model or (REAL_MODEL_ID if gpus else TINY_ID)  # the workers' device decides, not the front's
    ask = f"{gpus} GPU" if gpus else f"{cpus_per_replica:g} CPU"
    say(f"pool: {replicas} worker(s) of {model} in mode {mode}, {ask} each; "
        "each loads and warms up before it takes a turn")
    app = deployment(replicas, gpus, cpus_per_replica).bind(model, mode, "cuda" if gpus else "cpu", preview, loras,
                                                           cache_dir, offload)
    try:
        handle = serve.run(app, name=name, route_prefix=None)
    except RuntimeError:
        reason = _deploy_failure(serve, name)
        stop_pool(name, owns_ray)
        raise RuntimeError(f"the pool's workers could not start: {reason}") from None
    info = handle.describe.remote().result()
    say(f"pool: {replicas} worker(s) ready in {time.perf_counter() - t0:.1f} s")
    pool = RayPool(handle, replicas)
    pool.name, pool.owns_ray = name, owns_ray
    return pool, PoolEngine(info, replicas)


def _join_ray(address: str | None, device: str | None, replicas: int, cpus_per_replica: float, name: str,
              say: Callable[[str], None]) -> tuple[int, int]:
    """Start or join Ray and Serve; return (GPUs per worker, workers). Refuses too few GPUs and a pool
    of this name already running; a refusal leaves a Ray this call started shut down again."""
    import ray
    from ray import serve

    joined_before = ray.is_initialized()  # then a refusal below must not disconnect the caller's Ray
    try:
        if address:
            say(f"pool: joining the Ray cluster at {address}")
            ray.init(address=address, namespace=APP_NAME, ignore_reinit_error=True, log_to_driver=False)
        else:
            cpus = max(os.cpu_count() or 1, int(max(replicas, 1) * cpus_per_replica + 0.999))
            say(f"pool: starting a local Ray instance ({cpus} CPUs)")
            ray.init(num_cpus=cpus, namespace=APP_NAME, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False)
    except (ConnectionError, OSError, RuntimeError) as e:
        raise RuntimeError(f"cannot {'reach the Ray cluster at ' + address if address else 'start Ray'}: "
                           f"{type(e).__name__}: {e}") from None
    try:
        have = int(ray.cluster_resources().get("GPU", 0))
        gpus = 0 if device == "cpu" else 1 if have or str(device).startswith("cuda") else 0
        replicas = replicas or max(1, have if gpus else 1)
        if gpus and replicas > have:
            where = "the cluster has" if address else "this machine has"
            raise UserError(f"--replicas {replicas} needs {replicas} GPUs (one per worker); {where} {have} now")
        serve.start(proxy_location="Disabled")  # the front calls through handles; no HTTP ingress
        if name in serve.status().applications:
            raise UserError(f"a pool named {name!r} is already running on this Ray cluster (another front?): "
                            "stop it first (serve shutdown) or give this one --pool-name")
    except BaseException:
        if not joined_before:
            ray.shutdown()
        raise
    return gpus, replicas


def worker_states(pool: RayPool, tries: int = 40) -> dict[int, dict[str, Any]]:
    """`describe()` of as many distinct workers as answer within `tries` calls (routing picks one each)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        info = pool.handle.describe.remote().result()
        seen[info["pid"]] = info
        if len(seen) >= pool.replicas:
            break
    return seen


def stop_pool(name: str = APP_NAME, owns_ray: bool = False) -> None:
    """Remove this front's pool (its workers) and disconnect from Ray. A Ray instance this front
    started (`owns_ray`) goes down whole with ray.shutdown(), workers and Serve included, so Serve's delete,
    which waits out each worker's graceful stop (2-5 s here), is skipped; on a cluster this front
    joined, the pool is deleted and the cluster keeps running."""
    import ray
    from ray import serve

    try:
        if not owns_ray:
            serve.delete(name)
    finally:
        ray.shutdown()


def _deploy_failure(serve: Any, name: str) -> str:
    """The workers' own words for why they failed to start (the last line of the error their
    constructor raised, e.g. the model load's message), from Ray Serve's status."""
    try:
        deployment = serve.status().applications[name].deployments["KontextWorker"]
        message = str(deployment.message)
    except Exception:  # noqa: BLE001 - the status is a nicety; the plain failure is still reported
        return "see the Ray logs (ray logs, or /tmp/ray/session_latest/logs)"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line or "Exception:" in line]
    last = errors[-1] if errors else lines[-1] if lines else message
    return re.sub(r"^[\w.]*(Error|Exception): ", "", last)[:1000]  # the words, not the class path
