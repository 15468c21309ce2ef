"""`python -m kontext trial`: one visitor's session against `app.py`, timed as the visitor sees it.

It starts the app (with its warm-up, as a host would), waits until the warm-up is done, then through
gradio_client and the page's own events (so live previews stream as they do in a browser): upload a
picture, three edits each on the previous result, an undo, a re-roll. For every action: seconds from
submit until the page's last update arrives, seconds to the first live preview, the engine's own seconds for the step,
and whether the history is what it must be afterwards. Then the app is stopped.
This is the whole playground at whatever size the model runs (`--model random-full` on a GPU: full size).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kontext.errors import UserError

PROMPTS = ("make the sky stormy", "add a red kite in the sky", "turn the picture into a watercolour")
# The start-up logger's line (kontext/hosting/startup.py): the name is part of what is matched.
READY = re.compile(r"kontext\.hosting\.startup: (ready.*|warm-up failed.*)")


def add_trial_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help="the model the app serves (default: tiny)")
    p.add_argument("--device", default="cpu", help="the app's device (default: cpu)")
    p.add_argument("--mode", default="auto", help="the app's speed mode (default: auto, as a host gets)")
    p.add_argument("--steps", type=int, default=28, help="denoising steps per edit (default 28)")
    p.add_argument("--side", type=int, default=1024, help="the uploaded picture's side in px (default 1024)")
    p.add_argument("--json", default=None, help="also write the results here")


def run_trial(args: argparse.Namespace) -> int:
    import signal

    from kontext.tools.appproc import AppDidNotStart, running_app

    if not 1 <= args.steps <= 100:
        raise UserError(f"--steps must be from 1 to 100, got {args.steps}")
    if not 64 <= args.side <= 4096:
        raise UserError(f"--side must be from 64 to 4096 px, got {args.side}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UserError(f"--json: the folder of {args.json} does not exist")
    report: dict[str, Any] = {"args": vars(args), "actions": [], "error": None}

    def save() -> None:  # after every action: a run stopped part-way keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    def on_term(signum: int, frame: Any) -> None:  # a time limit's SIGTERM: stop the app, report
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with running_app(["--mode", args.mode], model=args.model, device=args.device, timeout_s=1800) as app:
            try:
                report["startup_s"] = app.startup_s
                print(f"[trial] the app answers after {app.startup_s} s; waiting for its warm-up",
                      file=sys.stderr, flush=True)
                report["ready_s"], report["ready"] = wait_ready(app, 1800)
                if not report["ready"].startswith("ready"):
                    report["error"] = f"the app's {report['ready']}"  # the turns still run: what do they do?
                save()
                drive(app.url, args, report, save)
            finally:
                report["app_log_tail"] = app.log_tail(80)  # the folder holding the log goes with the app
    except AppDidNotStart as e:
        report["error"] = str(e)
    except KeyboardInterrupt:
        report["error"] = f"stopped (SIGTERM or Ctrl-C) after {len(report['actions'])} actions"
    except Exception as e:  # noqa: BLE001 - a failure of the app under test is the result
        report["error"] = f"{type(e).__name__}: {e}"[:1000]
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(format_report(report), flush=True)
    save()
    ok = report["error"] is None and report["actions"] and all(a["ok"] for a in report["actions"])
    return 0 if ok else 1


def wait_ready(app: Any, timeout_s: float) -> tuple[float, str]:
    """Seconds from the app's start until its log says the warm-up ended, and what it said."""
    t0 = time.perf_counter() - app.startup_s
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = READY.search(app.log.read_text(errors="replace"))
        if found:
            return round(time.perf_counter() - t0, 1), found.group(1).strip()
        if app.proc.poll() is not None:
            raise RuntimeError("the app exited during its warm-up: " + app.log_tail())
        time.sleep(0.2)
    raise RuntimeError(f"the app's warm-up did not end within {timeout_s:.0f} s")


def drive(url: str, args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    """Upload, three edits, undo, re-roll, each through the page's own event; one row per action in
    `report["actions"]`, checked against the history after it. Also the page's demo-mode banner
    (None for a real model). Undo is sent without the tab's state (a client has none), so it redraws
    the whole timeline where a browser's undo sends only the selection."""
    from gradio_client import Client, handle_file

    from kontext.tools.bench import fixed_picture

    # download_files=False: a turn ends when the page's last update arrives, as in a browser (which then
    # fetches the pictures it shows), not after this client has downloaded every file in the update.
    client = Client(url, verbose=False, download_files=False)
    try:
        banners = [c.get("props", {}).get("value") for c in client.config.get("components", [])
                   if c.get("props", {}).get("elem_id") == "demo-banner"]
        report["banner"] = banners[0] if banners else None
        key = client.predict(api_name="/new_session")

        def history() -> dict[str, Any]:
            return client.predict(key, api_name="/history")

        def record(row: dict[str, Any]) -> None:
            report["actions"].append(row)
            save()

        with tempfile.TemporaryDirectory(prefix="kontext-trial-") as tmp:
            picture = Path(tmp, "start.png")
            fixed_picture(args.side, args.side).save(picture)
            t0 = time.perf_counter()
            client.predict(key, handle_file(str(picture)), api_name="/ui_upload")
            seconds = time.perf_counter() - t0
        h = history()
        record(_row("upload", seconds, None, h, h["path"] == [1]))
        for i, prompt in enumerate(PROMPTS):
            seconds, preview, error = page_turn(client, "/ui_edit", key, prompt, seed=i + 1, steps=args.steps)
            h = history()
            ok = error is None and len(h["path"]) == i + 2 and h["step"]["prompt"] == prompt
            record(_row(f"edit {i + 1}", seconds, preview, h, ok, error, engine=True))
        t0 = time.perf_counter()
        client.predict(key, api_name="/ui_undo")
        seconds = time.perf_counter() - t0
        h = history()
        record(_row("undo", seconds, None, h, h["path"] == [1, 2, 3] and h["can_redo"]))
        before = h["step"]
        seconds, preview, error = page_turn(client, "/ui_reroll", key, "", seed=0, steps=args.steps)
        h = history()
        rolled = h["step"] or {}
        # A sibling of step 3: same parent and prompt, the other branch kept.
        ok = (error is None and rolled.get("id") == 5 and rolled.get("parent") == before["parent"]
              and rolled.get("prompt") == before["prompt"] and len(h["steps"]) == 5)
        record(_row("re-roll", seconds, preview, h, ok, error, engine=True))
    finally:
        client.close()


def page_turn(client: Any, api_name: str, key: str, prompt: str, seed: int, steps: int) -> tuple[float, Any, Any]:
    """One turn through the page's own event, streamed: (seconds from submit to the last update,
    seconds to the first live preview or None, the error's words or None). A preview is a picture
    sent to the canvas before the last one, which is the committed result."""
    t0 = time.perf_counter()
    job = client.submit(key, prompt, "fixed", seed, 2.5, steps, "Match input", False, "style", "character",
                        "object", api_name=api_name)
    pictures = []
    try:
        for out in job:
            if _is_picture(out[0]):  # a picture on the canvas (else an update without one)
                pictures.append(time.perf_counter() - t0)
        job.result()
    except Exception as e:  # noqa: BLE001 - reported in the row (gr.Error arrives as an exception)
        return time.perf_counter() - t0, None, f"{type(e).__name__}: {e}"[:300]
    first = pictures[0] if len(pictures) > 1 else None  # the last picture is the result itself
    return time.perf_counter() - t0, first, None


def _is_picture(value: Any) -> bool:
    """A file for the canvas: a path, or (without downloads) gradio's file record with a URL."""
    return isinstance(value, str) or (isinstance(value, dict) and bool(value.get("url") or value.get("path")))


def _row(action: str, seconds: float, preview: float | None, h: dict, ok: bool, error: str | None = None,
         engine: bool = False) -> dict[str, Any]:
    step = h.get("step") or {}
    return {"action": action, "client_s": round(seconds, 3),
            "first_preview_s": None if preview is None else round(preview, 3),
            "engine_s": step.get("seconds") if engine else None, "step": step.get("id"),
            "size": f"{step.get('width')}x{step.get('height')}" if step.get("width") else None,
            "ok": bool(ok), "error": error}


def format_report(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [f"One visitor: upload, 3 edits, undo, re-roll; model {a['model']} on {a['device']}, mode {a['mode']}, "
             f"{a['steps']} steps, {a['side']}x{a['side']} upload"]
    if "startup_s" in report:
        lines.append(f"app answering after {report['startup_s']} s; warm-up ended after {report.get('ready_s')} s "
                     f"({report.get('ready')})")
    if report.get("banner"):
        lines.append("banner: " + report["banner"].split("**")[1])
    lines += ["", "| action | client s | first preview s | engine s | step | size | ok |",
              "|---|---|---|---|---|---|---|"]
    for r in report["actions"]:
        ok = "yes" if r["ok"] else "NO" + (f": {' '.join(r['error'].split())}" if r["error"] else "")
        lines.append(f"| {r['action']} | {r['client_s']} | {_fmt(r['first_preview_s'])} | {_fmt(r['engine_s'])} | "
                     f"{r['step']} | {r['size'] or '-'} | {ok.replace('|', '/')} |")
    outside = sorted(r["client_s"] - r["engine_s"] for r in report["actions"] if r.get("engine_s") is not None)
    if outside:
        lines.append(f"\noutside the engine per turn (client s - engine s): median {statistics.median(outside):.3f} s "
                     f"({outside[0]:.3f}-{outside[-1]:.3f})")
    if report["error"]:
        lines.append(f"\nerror: {report['error']}")
        if report.get("app_log_tail"):
            lines.append(f"the app's log ends: {report['app_log_tail']}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)
