"""Launch the app in this process for API and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(sessions, data_dir, mcp: bool = False, **settings_kw):
    from kontext.hosting.config import Settings
    from ui import build_ui, launch_kwargs, queue_kwargs

    settings = Settings(model="tiny", data_dir=data_dir, **settings_kw)
    demo = build_ui(sessions, settings)
    port = free_port()
    demo.queue(**queue_kwargs(settings)).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, mcp_server=mcp,
        **launch_kwargs(settings, sessions.store.public_dir))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        close(demo)


def close(demo) -> None:
    """demo.close(), with gradio's stop event set on the server's own loop first: close() sets that
    asyncio.Event from this thread, and an open heartbeat stream adding its waiter at that moment
    made a CI run fail with "deque mutated during iteration"."""
    import asyncio

    stop = demo.app.stop_event
    loop = getattr(stop, "_loop", None)  # bound by the first waiter; none yet: nothing can race
    if loop is not None and loop.is_running() and not stop.is_set():
        asyncio.run_coroutine_threadsafe(_set(stop), loop).result(30)
    demo.close()


async def _set(event) -> None:
    event.set()


def launch_app(args: list[str], log_path: Path, env: dict | None = None, timeout_s: float = 120):
    """Start `app.py ARGS` in its own process; return (process, gradio_client.Client) once it answers."""
    from gradio_client import Client

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=log, stderr=log)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(log_path.read_text()[-3000:])
        try:
            return proc, Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("server did not start")
