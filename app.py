"""Start the Kontext Playground: read flags and environment, load the model, build the UI, launch."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from kontext.env import on_space, setting  # imports nothing heavy (no torch)


def default_data_dir() -> str:
    """sessions/ here, or on a Space with a persistent disk attached /data/sessions, which survives restarts."""
    if on_space() and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return "/data/sessions"
    return "sessions"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get  # gradio's own variables; ours come from kontext.env.setting
    p = argparse.ArgumentParser(description="Kontext Playground: multi-turn image editing with FLUX.1 Kontext [dev]")
    p.add_argument("--model", default=setting("MODEL"),
                   help="'tiny' (embedded demo model), black-forest-labs/FLUX.1-Kontext-dev, a local folder, or "
                        "random-full / random-small (the real architecture with random weights, full-size or "
                        "narrowed for a CPU) "
                        "(default: the real model when CUDA is available, else tiny)")
    # On Hugging Face Spaces gradio's own variables say where to listen (0.0.0.0:7860).
    p.add_argument("--host", default=setting("HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1")
    p.add_argument("--port", type=int, default=int(setting("PORT") or env("GRADIO_SERVER_PORT") or "7860"))
    p.add_argument("--device", default=setting("DEVICE"))
    p.add_argument("--offload", default=setting("OFFLOAD"),
                   choices=["none", "model", "group", "sequential"], help="keep idle parts in CPU memory")
    p.add_argument("--data-dir", default=setting("DATA") or default_data_dir(), help="where sessions are kept")
    p.add_argument("--max-idle-hours", type=float, default=float(setting("MAX_IDLE_HOURS")),
                   help="delete sessions unused this long")
    p.add_argument("--max-disk-gb", type=float, default=float(setting("MAX_DISK_GB")),
                   help="disk budget for all sessions; the least recently used go first")
    p.add_argument("--max-session-mb", type=float, default=float(setting("MAX_SESSION_MB")),
                   help="what one session may keep on disk, imports included; also the largest ZIP import "
                        "and so the largest upload")
    p.add_argument("--upload-keep-minutes", type=float, default=float(setting("UPLOAD_KEEP_MINUTES")),
                   help="uploads left in gradio's upload folder (used, refused or abandoned) are deleted after this")
    p.add_argument("--mode", default=setting("MODE"),
                   help="speed mode: auto (pick from GPU memory), eager, compile, fp8+compile, fast, int8, "
                        "offload-model, offload-group, ... (see BENCHMARKS.md)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up edit at start-up")
    gpu_gb = setting("GPU_MEMORY_GB")
    p.add_argument("--gpu-memory-gb", type=float, default=float(gpu_gb) if gpu_gb else None, metavar="N",
                   help="use at most N GiB of the GPU: --mode auto plans for N and allocations are capped "
                        "(a shared GPU, or trying a smaller card's plan on a larger one)")
    add_hosting_flags(p)
    add_page_flags(p)
    return p.parse_args(argv)


def add_hosting_flags(p: argparse.ArgumentParser) -> None:
    """How edits are served: previews, MCP, the GPU queue, a Ray pool, mirroring, sign-in."""
    p.add_argument("--preview", default=setting("PREVIEW"), choices=["estimate", "noisy"],
                   help="live previews show the predicted result (estimate) or the noisy state after each step")
    p.add_argument("--mcp", action="store_true", default=setting("MCP") == "1", help="also serve MCP tools")
    p.add_argument("--gpu-slots", type=int, default=int(setting("GPU_SLOTS")),
                   help="edits that run at once (ZeroGPU can lend more than one GPU; one elsewhere)")
    p.add_argument("--max-waiting", type=int, default=int(setting("MAX_WAITING")),
                   help="edits that may wait for the GPU; more are told the server is busy")
    p.add_argument("--workers", default=setting("WORKERS") or ("ray" if setting("RAY_ADDRESS") else "local"),
                   choices=["local", "ray"],
                   help="ray: run the model in a pool of Ray Serve workers, this process in front "
                        "(pip install -e '.[scale]'); local: in this process (default)")
    p.add_argument("--replicas", type=int, default=int(setting("REPLICAS")),
                   help="with --workers ray: model workers, one GPU each (default: one per GPU, 1 without)")
    p.add_argument("--ray-address", default=setting("RAY_ADDRESS"),
                   help="with --workers ray: join this Ray cluster (e.g. auto, or ray://head:10001); "
                        "default: start a local Ray instance")
    p.add_argument("--pool-name", default=setting("POOL_NAME"),
                   help="with --workers ray: the Ray Serve application's name (one front per pool; default kontext)")
    p.add_argument("--mirror", default=setting("MIRROR"),
                   help="a private Hugging Face dataset (owner/name) to mirror sessions to, so a restarted "
                        "Space keeps them; needs HF_TOKEN with write access (default: off)")
    p.add_argument("--mirror-every", type=float, default=float(setting("MIRROR_EVERY")),
                   help="seconds between mirror pushes")
    p.add_argument("--login", default=setting("LOGIN"), choices=["none", "hf"],
                   help="hf: editing needs a Hugging Face sign-in (a Space with hf_oauth: true)")
    p.add_argument("--export-mb", type=float, default=float(setting("EXPORT_MB")),
                   help="exports one visitor (a session, or a share link's viewers) may have waiting to be "
                        "downloaded, in MB")
    p.add_argument("--links-per-session", type=int, default=int(setting("LINKS_PER_SESSION")),
                   help="live share links one session may have")
    p.add_argument("--per-address", type=float, default=float(setting("PER_ADDRESS")),
                   help="one network address may have this many sessions' worth of waiting exports and share "
                        "links (0: no cap per address; visitors behind one proxy share its address)")


def add_page_flags(p: argparse.ArgumentParser) -> None:
    """What the page shows and who may use it: branding, examples, the content check, passwords."""
    p.add_argument("--branding", default=setting("BRANDING"),
                   help="a TOML file: title, description, logo, accent, hide, examples "
                        "(see kontext/showcase/branding.py)")
    p.add_argument("--title", default=setting("TITLE"), help="the page's title (wins over --branding)")
    p.add_argument("--accent", default=setting("ACCENT"), help="accent colour: #rrggbb or a name like emerald")
    p.add_argument("--hide", default=setting("HIDE"),
                   help="controls to hide, comma-separated: examples, chains, reference, mask, text, draft, advanced, "
                        "seed, export, share, present, compare, start-over")
    p.add_argument("--examples", default=setting("EXAMPLES"),
                   help="an examples TOML file (see assets/examples/examples.toml), or none")
    p.add_argument("--safety", default=setting("SAFETY") or ("prompt" if on_space() else "off"),
                   help="content check on every turn: off, prompt (a word list), or module:function "
                        "(see kontext/model/safety.py); default off, prompt on a Hugging Face Space")
    p.add_argument("--safety-words", default=setting("SAFETY_WORDS"),
                   help="with --safety prompt: a file of words or phrases to refuse, one per line")
    p.add_argument("--auth", default=setting("AUTH"),
                   help="self-hosted: user:password[,user:password...] for the whole app and its API")
    p.add_argument("--login-tries", type=int, default=int(setting("LOGIN_TRIES")),
                   help="with --auth: failed sign-ins from one address or for one user before each further "
                        "try must wait (1 s, doubling per failure)")
    p.add_argument("--login-max-wait-minutes", type=float, default=float(setting("LOGIN_MAX_WAIT_MINUTES")),
                   help="with --auth: the longest that wait grows to")


def prepare_aot_on_zerogpu(engine, zero) -> tuple[str, str | None]:
    """Compile (first start) or find (later starts) the aot package in one lent GPU call, before the
    page is up: ZeroGPU gives long GPU calls only at start-up. Each worker then loads it itself.
    Returns the start-up message and, if the compile failed, the error the page shows."""
    import logging
    import time

    from kontext.model import aot

    print("aot: preparing the compiled transformer on a lent GPU (minutes on the first start)")
    t0 = time.perf_counter()
    try:
        path = Path(zero.zerogpu_aot_function()())
    except Exception as e:  # noqa: BLE001 - the app still works eagerly; the banner says so
        logging.getLogger("kontext.model.aot").exception("aot preparation failed")
        # Edits run eager now: say so in each step's record, and stop snapping sizes to compiled buckets.
        engine.speed = dataclasses.replace(engine.speed, aot=False)
        return "ready", f"the ahead-of-time compile failed ({type(e).__name__}), so edits run eager; see the logs"
    engine.aot = aot.install(engine, path, load_now=False)
    seconds = time.perf_counter() - t0
    print(f"aot: {path.name} ready in {seconds:.0f} s")
    return f"ready (transformer compiled ahead of time, {path.name}, prepared in {seconds:.0f} s)", None


def log_to_stderr() -> None:
    """The playground's own log lines (kontext.*) at INFO on stderr, where a Space shows its logs;
    other libraries keep their defaults."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("kontext")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_to_stderr()
    from kontext.env import on_zerogpu  # imports no torch

    zerogpu = on_zerogpu()
    if zerogpu:
        # Before torch: ZeroGPU patches torch's CUDA calls on import, and refuses if CUDA is set up already.
        import spaces  # noqa: F401
    from kontext.files.store import Store
    from kontext.sessions.session import Sessions
    from kontext.showcase.examples import ResultCache

    settings, safety = read_settings(args, zerogpu)
    mirror = start_mirror(settings)
    engine, gpu, queue, startup, settings = start_model(args, settings, zerogpu)
    store = Store(settings.data_dir, max_idle_s=settings.max_idle_s, max_bytes=settings.max_bytes,
                  max_session_bytes=settings.max_session_bytes)
    store.sweep()
    if mirror is not None:
        mirror.start()
        stop_mirror_on_exit(mirror)
    from ui import build_ui, launch_kwargs, queue_kwargs

    # Example results are kept after their first run (kontext.showcase.examples), beside the sessions.
    results = ResultCache(Path(settings.data_dir) / "example-results")
    sessions = Sessions(engine, store, max_nodes=settings.max_steps, gpu=gpu, queue=queue, results=results,
                        safety=safety)
    apply_limits(settings, sessions)
    if safety is not None:
        print(f"Content check on every turn: {args.safety}")
    demo = build_ui(sessions, settings, startup)
    url = f"http://{settings.host}:{settings.port}"
    print(f"Kontext Playground on {url} with model {engine.model_id} ({engine.device})")
    demo.queue(**queue_kwargs(settings)).launch(
        server_name=settings.host, server_port=settings.port, mcp_server=settings.mcp,
        **launch_kwargs(settings, store.public_dir),
    )


def read_settings(args, zerogpu: bool):
    """The flags as one Settings value and the content check; a bad value stops here, in one line."""
    from kontext.hosting.config import Settings, check_limits, parse_auth
    from kontext.model.safety import load_check
    from kontext.showcase.branding import load_branding
    from kontext.showcase.examples import load_catalog

    try:
        auth = parse_auth(args.auth)
        branding = load_branding(args.branding, title=args.title, accent=args.accent, hide=args.hide,
                                 examples=args.examples)
        if branding.examples:
            load_catalog(branding.examples)  # a broken catalog stops here, in words, not at page build
        safety = load_check(args.safety, args.safety_words)
    except ValueError as e:
        sys.exit(f"error: {e}")
    settings = Settings(
        model=args.model, host=args.host, port=args.port, data_dir=Path(args.data_dir),
        max_idle_s=args.max_idle_hours * 3600, max_bytes=int(args.max_disk_gb * 2**30),
        max_session_bytes=int(args.max_session_mb * 2**20), upload_keep_s=args.upload_keep_minutes * 60,
        login_tries=args.login_tries, login_max_wait_s=args.login_max_wait_minutes * 60,
        mcp=args.mcp, offload=args.offload, device=args.device or ("cuda" if zerogpu else None),
        gpu_slots=args.gpu_slots, max_waiting=args.max_waiting, zerogpu=zerogpu,
        on_space=on_space(), mirror=args.mirror, mirror_every_s=args.mirror_every,
        login=args.login, auth=auth, branding=branding, export_bytes=int(args.export_mb * 2**20),
        links_per_session=args.links_per_session, per_address=args.per_address,
    )
    try:
        check_limits(settings)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if settings.login == "hf" and os.environ.get("SYSTEM") != "spaces":
        from kontext.model.hub import token

        if not token():
            sys.exit("error: --login hf needs a Space with hf_oauth: true in its front matter; locally, gradio "
                     "signs you in as the account of `hf auth login`, so log in first")
    return settings, safety


def apply_limits(settings, sessions) -> None:
    """The per-visitor limits: share links (kontext/files/sharing.py) and waiting exports (ui/share.py)."""
    from ui import share

    sessions.shares.per_session, sessions.shares.per_address = settings.links_per_session, settings.per_address
    share.configure(settings.export_bytes, settings.per_address)


def start_model(args, settings, zerogpu: bool):
    """Load the model (here, or in a Ray pool), its GPU queue, and where turns run; start the warm-up.
    Returns (engine, gpu runner or None for this process, queue, startup, settings)."""
    from kontext.errors import ModelLoadError
    from kontext.hosting.startup import Startup, resolve_speed
    from kontext.model.engine import Engine
    from kontext.sessions.admission import TurnQueue

    pool = None
    try:
        if args.workers == "ray":
            pool, engine = start_ray_pool(args, settings, settings.branding, zerogpu)
            settings = dataclasses.replace(settings, gpu_slots=pool.replicas)  # one running turn per worker
            speed, reason = engine.speed, f"{pool.replicas} Ray Serve worker(s), speed mode {engine.speed.label}"
        else:
            refuse_unusable_gpu(args, zerogpu)
            speed, reason = resolve_speed(args.mode, settings.device, settings.offload, zerogpu=zerogpu,
                                          gpu_memory_gb=args.gpu_memory_gb)
            print(f"Loading {settings.model or 'the default model'}: {reason}")
            engine = Engine.load(settings.model, device=settings.device, speed=speed,
                                 gpu_memory_gb=args.gpu_memory_gb)
            engine.set_preview_mode(args.preview)
            engine.set_lora_presets(settings.branding.loras)
        queue = TurnQueue(slots=settings.gpu_slots, max_waiting=settings.max_waiting)
    except (ModelLoadError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    startup = Startup(reason)
    gpu = None
    if pool is not None:
        gpu = pool
        startup.message = f"ready ({pool.replicas} model worker(s), each warmed up before its first turn)"
        startup.done.set()
    elif zerogpu:
        from kontext.hosting import zerogpu as zero

        zero.install(engine)  # the forked GPU worker inherits the loaded model
        gpu = zero.RemoteGpu(zero.zerogpu_function())
        startup.message = "ready (ZeroGPU lends the GPU per edit, so nothing is warmed up in advance)"
        if speed.aot:
            startup.message, startup.error = prepare_aot_on_zerogpu(engine, zero)
        startup.done.set()
    elif args.no_warmup:
        startup.message = "ready (no warm-up)"
        startup.done.set()
    else:
        startup.start(engine)
    return engine, gpu, queue, startup, settings


def refuse_unusable_gpu(args, zerogpu: bool) -> None:
    """On a machine with an NVIDIA GPU that PyTorch cannot use (a torch built for a newer CUDA than the
    driver), stop with the cause and the fix rather than serve the tiny model on a paid GPU. The host
    may still ask for a CPU model on purpose (--model tiny or random-small, --device cpu)."""
    from kontext.model.cudacheck import cuda_problem

    asked_cpu = args.model in ("tiny", "random-small") or (args.device or "").startswith("cpu")
    if zerogpu or asked_cpu:
        return
    problem = cuda_problem()
    if problem:
        raise RuntimeError(problem)


def start_ray_pool(args, settings, branding, zerogpu):
    """--workers ray: the model runs in Ray Serve workers (kontext/hosting/pool.py); this process stays in front."""
    import atexit

    if zerogpu:
        raise ValueError("--workers ray is for self-hosting; on ZeroGPU the Space's own pool runs the edits")
    try:
        from kontext.hosting.pool import start_pool, stop_pool
    except ImportError:
        raise ValueError("--workers ray needs Ray Serve: pip install -e '.[scale]'") from None
    pool, engine = start_pool(settings.model, args.mode, settings.device, args.replicas, address=args.ray_address,
                              offload=settings.offload, preview=args.preview, loras=branding.loras,
                              name=args.pool_name)
    atexit.register(stop_pool, pool.name, pool.owns_ray)
    clean_exit_on_sigterm()  # the workers are stopped by atexit
    return pool, engine


def start_mirror(settings):
    """Restore the mirrored sessions before anything reads the data folder; None when mirroring is off."""
    if not settings.mirror:
        return None
    from kontext.files.mirror import HubRemote, Mirror
    from kontext.model.hub import token

    if not token():
        sys.exit("error: --mirror needs a Hugging Face token with write access: set HF_TOKEN")
    try:
        mirror = Mirror(settings.data_dir, HubRemote(settings.mirror, token()), every_s=settings.mirror_every_s)
        print(f"Mirroring sessions to the private dataset {settings.mirror}: "
              f"{mirror.restore()} sessions restored")
    except Exception as e:  # noqa: BLE001 - one plain line; the hub's own message says why
        sys.exit(f"error: cannot mirror sessions to {settings.mirror}: {type(e).__name__}: {e}")
    return mirror


def stop_mirror_on_exit(mirror) -> None:
    """A Space is stopped with SIGTERM: push the last steps before the process ends."""
    import atexit

    atexit.register(mirror.stop)
    clean_exit_on_sigterm()


def clean_exit_on_sigterm() -> None:
    """SIGTERM (how a Space or a service manager stops the app) ends it like Ctrl-C: gradio's launch()
    closes the server on KeyboardInterrupt, and the atexit hooks (mirror push, pool stop) then run."""
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    main()
