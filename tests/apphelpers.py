"""Launch the app in this process for API and browser tests."""

from __future__ import annotations

import socket
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(sessions, data_dir, mcp: bool = False):
    from kontext.config import Settings
    from ui import build_ui, launch_kwargs

    settings = Settings(model="tiny", data_dir=data_dir)
    demo = build_ui(sessions, settings)
    port = free_port()
    demo.queue(default_concurrency_limit=1).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, mcp_server=mcp,
        **launch_kwargs(settings))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
