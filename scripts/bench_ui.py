"""Per-turn overhead of the UI/API on top of the bare engine call, on the tiny model (CPU).

Runs N turns of the bare `Engine.edit`, N turns of `Sessions.edit` (adds PNG encode, durable store,
history commit), and N turns through `gradio_client` against `app.py` started in its own process
(adds the queue, the worker thread, streaming and file transfer; a separate process, as a real
client is, so the two do not share one GIL). Prints a markdown table of medians.

    python scripts/bench_ui.py --turns 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def wait_for(url: str, timeout: float = 120):
    from gradio_client import Client

    deadline = time.time() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()

    import torch
    from gradio_client import handle_file
    from PIL import Image

    from apphelpers import free_port
    from kontext.files.store import Store
    from kontext.model.engine import Engine
    from kontext.sessions.session import EditOptions, Sessions

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    src = tmp / "src.png"
    Image.effect_noise((128, 128), 40).convert("RGB").save(src)
    engine = Engine.load("tiny")
    sessions = Sessions(engine, Store(tmp / "sessions"))

    def timed(fn) -> list[float]:
        fn()  # warm-up
        out = []
        for _ in range(args.turns):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    image = Image.open(src).convert("RGB")
    bare = timed(lambda: engine.edit(image, "make it blue", steps=args.steps))
    key = sessions.new()
    sessions.upload(key, src)
    opts = EditOptions(steps=args.steps)
    sess = timed(lambda: (sessions.jump(key, 1), sessions.edit(key, "make it blue", opts)))
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", "tiny", "--port", str(port),
                               "--data-dir", str(tmp / "app")], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        c = wait_for(f"http://127.0.0.1:{port}/")
        k = c.predict(api_name="/new_session")
        c.predict(k, handle_file(str(src)), api_name="/upload")
        api = timed(lambda: c.predict(k, "make it blue", "random", 0, 0, args.steps, 0, 0, api_name="/edit"))
        undo = timed(lambda: c.predict(k, api_name="/undo"))
    finally:
        server.terminate()
        server.wait(30)

    med = statistics.median
    rows = [("bare Engine.edit", bare), ("Sessions.edit (store + commit)", sess),
            ("gradio_client /edit (app in its own process)", api), ("gradio_client /undo", undo)]
    print(f"tiny model, {args.steps} steps, 128x128, {args.turns} turns each, torch threads 1\n")
    print("| path | median s | min s | max s | overhead vs bare (median) |\n|---|---|---|---|---|")
    for name, xs in rows:
        over = f"{(med(xs) - med(bare)) * 1000:+.0f} ms" if xs is not bare and "undo" not in name else ""
        print(f"| {name} | {med(xs):.3f} | {min(xs):.3f} | {max(xs):.3f} | {over} |")


if __name__ == "__main__":
    main()
