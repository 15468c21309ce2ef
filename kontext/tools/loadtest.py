"""`python -m kontext loadtest`: many visitors editing at once, against `app.py` started for each setup.

For each `--workers` setup (local: the model in the app's process, one turn at a time; ray:N: a pool of
N Ray Serve workers, kontext/hosting/pool.py) it starts the app in its own process, opens `--clients`
sessions through gradio_client (each its own thread, as separate visitors are), and has each run
`--turns` edits one after another, every one editing the previous result. It measures each turn from
submit to result, counts lost turns (an error, or a result without its step in the history), and
prints a table: throughput, p50 and p95 turn time. The app's start-up is timed too (process start
until it answers; for ray, until every worker is warmed up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kontext.errors import UserError


def add_loadtest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="local,ray:1,ray:2",
                   help="comma-separated setups: local, or ray:N for N pool workers (default: local,ray:1,ray:2)")
    p.add_argument("--model", default="tiny", help="the model every setup serves (default: tiny)")
    p.add_argument("--device", default="cpu", help="the app's (or the workers') device (default: cpu)")
    p.add_argument("--mode", default="eager", help="speed mode (default: eager)")
    p.add_argument("--clients", type=int, default=8, help="visitors at once (default 8)")
    p.add_argument("--turns", type=int, default=5, help="edits per visitor, one after another (default 5)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps per edit (default 4)")
    p.add_argument("--json", default=None, help="also write the results here")


def parse_setups(text: str) -> list[tuple[str, int]]:
    """"local,ray:2" -> [("local", 1), ("ray", 2)]."""
    setups = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word == "local":
            setups.append(("local", 1))
            continue
        kind, _, n = word.partition(":")
        if kind != "ray" or not n.isdigit() or not 1 <= int(n) <= 64:
            raise UserError(f"--workers takes local or ray:N (N from 1 to 64), comma-separated; got {word!r}")
        setups.append(("ray", int(n)))
    if not setups:
        raise UserError("--workers is empty: name at least one setup, e.g. local")
    return setups


def run_loadtest(args: argparse.Namespace) -> int:
    setups = parse_setups(args.workers)
    for name, lo, hi in (("clients", 1, 256), ("turns", 1, 100), ("steps", 1, 100)):
        if not lo <= getattr(args, name) <= hi:
            raise UserError(f"--{name} must be from {lo} to {hi}, got {getattr(args, name)}")
    rows = []
    for kind, n in setups:
        label = "local" if kind == "local" else f"ray:{n}"
        print(f"[loadtest] {label}: starting the app", file=sys.stderr, flush=True)
        rows.append(run_setup(args, kind, n, label))
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=2) + "\n")
    print(format_table(rows, args))
    return 0 if all(r["lost"] == 0 and not r.get("error") for r in rows) else 1


def run_setup(args: argparse.Namespace, kind: str, replicas: int, label: str) -> dict[str, Any]:
    from kontext.tools.appproc import AppDidNotStart, running_app

    row: dict[str, Any] = {"setup": label, "clients": args.clients, "turns": args.clients * args.turns}
    flags = ["--mode", args.mode, "--no-warmup", "--max-waiting", str(max(16, args.clients))]
    flags += ["--workers", "ray", "--replicas", str(replicas)] if kind == "ray" else []
    try:
        with running_app(flags, model=args.model, device=args.device, one_thread=True) as app:
            row["startup_s"] = app.startup_s
            row.update(drive(app.url, args))
    except AppDidNotStart as e:
        row["error"] = str(e)
    return row


def drive(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """`clients` threads, each a session running `turns` edits in a row; turn times and lost turns."""
    from gradio_client import Client, handle_file
    from PIL import Image

    times: list[float] = []
    lost: list[str] = []
    workers: set[Any] = set()
    lock = threading.Lock()
    with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as f:
        Image.effect_noise((96, 64), 40).convert("RGB").save(f, format="PNG")
        picture = f.name

    def visitor(i: int) -> None:
        try:
            client = Client(url, verbose=False)
            key = client.predict(api_name="/new_session")
            _, history = client.predict(key, handle_file(picture), api_name="/upload")
            depth = len(history["path"])
        except Exception as e:  # noqa: BLE001 - a visitor who cannot start loses all its turns
            with lock:
                lost.extend([f"visitor {i} could not start: {type(e).__name__}: {e}"[:200]] * args.turns)
            return
        for t in range(args.turns):
            start = time.perf_counter()
            try:
                _, history = client.predict(key, f"turn {t} of visitor {i}: make it bluer", "fixed", i * 100 + t,
                                            0, args.steps, 0, 0, api_name="/edit")
                step = history["steps"][-1]
                # Kept: one step deeper than before, and the step is this turn's.
                ok = len(history["path"]) == depth + 1 and step["prompt"].startswith(f"turn {t} ")
                depth = len(history["path"])
            except Exception as e:  # noqa: BLE001 - a lost turn is a result of the test
                ok, step = False, {"error": f"{type(e).__name__}: {e}"}
            with lock:
                if ok:
                    times.append(time.perf_counter() - start)
                    workers.add(step.get("extra", {}).get("worker", "local"))
                else:
                    lost.append(str(step)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    os.unlink(picture)
    done = len(times)
    q = statistics.quantiles(times, n=20) if len(times) >= 2 else times * 19
    return {"lost": len(lost), "lost_examples": lost[:3], "wall_s": round(wall, 2),
            "turns_per_min": round(60 * done / wall, 1) if wall else None,
            "p50_s": round(statistics.median(times), 3) if times else None,
            "p95_s": round(q[18], 3) if times else None, "workers_used": len(workers)}


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (f"{args.clients} visitors x {args.turns} turns, {args.steps} steps, model {args.model} on {args.device}\n\n"
            "| setup | start-up s | turns | lost | workers used | wall s | turns/min | p50 turn s | p95 turn s |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['setup']} | error: {r['error'][:150].replace('|', '/')} |")
            continue
        lines.append(f"| {r['setup']} | {r['startup_s']} | {r['turns']} | {r['lost']} | {r['workers_used']} | "
                     f"{r['wall_s']} | {r['turns_per_min']} | {r['p50_s']} | {r['p95_s']} |")
    return "\n".join(lines)
