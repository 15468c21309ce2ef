"""`app.py` in a process of its own, for the commands that measure it as a visitor sees it
(`python -m kontext loadtest`, `python -m kontext trial`): start it, wait until it answers, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kontext.model.randomfull import RANDOM_MODELS

ROOT = Path(__file__).resolve().parents[2]  # kontext/tools/appproc.py -> the checkout


@dataclass
class RunningApp:
    url: str
    startup_s: float  # process start until the page answered
    log: Path
    proc: subprocess.Popen

    def log_tail(self, words: int = 30) -> str:
        return " ".join(self.log.read_text(errors="replace").split()[-words:])


class AppDidNotStart(RuntimeError):
    """app.py exited or did not answer in time; the message holds the end of its log."""


# The app's own settings (app.py reads them from the environment): a caller's password, login, host,
# worker pool, ZeroGPU, branding or content check would change what is measured, or hang it.
SPACE_SETTINGS = ("SPACES_ZERO_GPU", "SPACE_ID", "SYSTEM")
KEEP = ("KONTEXT_CACHE", "KONTEXT_AOT_DIR")  # where models and packages are cached: reuse them


def app_env(model: str, device: str, one_thread: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k in KEEP or not (k.startswith("KONTEXT_") or k in SPACE_SETTINGS)}
    env["PYTHONUNBUFFERED"] = "1"
    if one_thread and device == "cpu":  # the same one torch thread in the app and in each worker
        env.update(OMP_NUM_THREADS="1", KONTEXT_WORKER_THREADS="1")
    if model == "tiny" or model in RANDOM_MODELS:
        env["HF_HUB_OFFLINE"] = "1"  # made here: nothing to fetch
    return env


@contextmanager
def running_app(args: list[str], *, model: str, device: str, timeout_s: float = 600,
                one_thread: bool = False) -> Iterator[RunningApp]:
    """`app.py --model MODEL --device DEVICE ARGS` on 127.0.0.1 with sessions in a temporary folder,
    served from this process's workers unless ARGS say otherwise (later flags win)."""
    if not (ROOT / "app.py").is_file():
        from kontext.errors import UserError

        raise UserError("this command starts app.py: run it from a checkout of the playground")
    with tempfile.TemporaryDirectory(prefix="kontext-app-") as tmp:
        port = _free_port()
        cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), "--workers", "local",
               "--model", model, "--device", device, "--data-dir", str(Path(tmp, "sessions")), *args]
        log_path = Path(tmp, "app.log")
        t0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=app_env(model, device, one_thread), stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/"
            app = RunningApp(url, 0.0, log_path, proc)
            if not _wait_up(url, proc, timeout_s):
                raise AppDidNotStart("the app did not start: " + app.log_tail())
            app.startup_s = round(time.perf_counter() - t0, 1)
            yield app
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False
