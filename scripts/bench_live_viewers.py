"""What live share-link viewers cost the server (issue 27): CPU and bytes per viewer, and how late
each viewer sees the owner's change. Tiny model, CPU.

The app runs in this process; the owner's turns are made through `Sessions` here (the same code the
page's events call). The viewers run in a child process (so their parsing is not counted as the
server's CPU): each opens the shared view's live stream as a browser does (gradio's queue: join,
then the server-sent event stream) and counts the bytes it receives and when each update arrives.
The same owner script runs with 0 viewers first; the CPU per viewer is the difference over N.

    python scripts/bench_live_viewers.py --viewers 50 --edits 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def viewer_main(url: str, token: str, n: int, seconds: float, out: str) -> None:
    """Child process: `n` viewers of the live link for `seconds`; writes their tallies to `out`."""
    import secrets

    import httpx

    cfg = httpx.get(f"{url}config").json()
    fn = next(i for i, d in enumerate(cfg["dependencies"]) if d.get("api_name") == "view_follow")
    fn = cfg["dependencies"][fn].get("id", fn)
    tallies: list[dict] = [{"bytes": 0, "updates": [], "joined": False} for _ in range(n)]
    stop = time.time() + seconds

    def one(i: int) -> None:
        t = tallies[i]
        session = secrets.token_hex(8)
        with httpx.Client(timeout=None) as c:
            r = c.post(f"{url}gradio_api/queue/join?share={token}",
                       json={"data": [token], "fn_index": fn, "session_hash": session,
                             "event_data": None, "trigger_id": None})
            r.raise_for_status()
            with c.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as s:
                t["joined"] = True
                for line in s.iter_lines():
                    t["bytes"] += len(line) + 1
                    if line.startswith("data:"):
                        msg = json.loads(line[5:])
                        if msg.get("msg") == "process_generating":
                            t["updates"].append(time.time())
                    if time.time() > stop:
                        return

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=seconds + 30)
    Path(out).write_text(json.dumps(tallies))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--side", type=int, default=128)
    args = ap.parse_args()

    import torch
    from PIL import Image

    from apphelpers import running_app
    from kontext.files.store import Store
    from kontext.model.engine import Engine
    from kontext.sessions.session import EditOptions, Sessions

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    engine = Engine.load("tiny")
    sessions = Sessions(engine, Store(tmp / "sessions"))
    rows = []
    with running_app(sessions, tmp / "data") as url:
        for viewers in (0, args.viewers):
            key = sessions.new()
            sessions.upload(key, Image.effect_noise((args.side, args.side), 40).convert("RGB"))
            token = sessions.share(key, live=True).token
            out = tmp / f"viewers-{viewers}.json"
            child = None
            if viewers:
                window = 60.0 + args.edits * 5
                child = subprocess.Popen([sys.executable, __file__, "--child", url, token, str(viewers), str(window),
                                          str(out)], cwd=ROOT)
                deadline = time.time() + 60
                while sessions.changes._followed.get(key, 0) < viewers:
                    time.sleep(0.1)  # every viewer's stream is open (a benchmark may poll; a test may not)
                    if time.time() > deadline:
                        raise SystemExit(f"only {sessions.changes._followed.get(key, 0)} of {viewers} viewers "
                                         "opened the live stream within 60 s")
            time.sleep(1.0)
            cpu0, wall0 = cpu_seconds(), time.time()
            done_at = []
            for i in range(args.edits):
                sessions.edit(key, f"edit {i}", EditOptions(steps=args.steps), preview_every=1)
                done_at.append(time.time())
            sessions.undo(key)
            done_at.append(time.time())
            time.sleep(2.0)  # let the last updates reach the viewers
            cpu = cpu_seconds() - cpu0
            wall = time.time() - wall0
            sessions.unshare(key)  # ends every viewer's stream
            if child is not None:
                child.wait(timeout=120)
                tallies = json.loads(out.read_text())
                got = [t for t in tallies if t["joined"]]
                late = []
                for t in got:  # per change: the first update a viewer got after the owner's change landed
                    for d in done_at:
                        after = [u - d for u in t["updates"] if u >= d - 0.001]
                        if after:
                            late.append(min(after))
                late.sort()
                rows.append((viewers, cpu, wall, sum(t["bytes"] for t in got) / max(len(got), 1),
                             late[len(late) // 2] if late else float("nan"), late[-1] if late else float("nan"),
                             len(got)))
            else:
                rows.append((0, cpu, wall, 0.0, float("nan"), float("nan"), 0))
    base = rows[0][1]
    print(f"\n{args.edits} edits ({args.steps} steps, {args.side} px, a preview each step) and an undo, "
          "tiny model, CPU; server CPU = this process's user+system seconds while the owner works\n")
    print("| viewers | server CPU s | extra CPU per viewer s | bytes per viewer | median delay s | worst delay s |")
    print("|---|---|---|---|---|---|")
    for viewers, cpu, _wall, nbytes, median, worst, joined in rows:
        per = (cpu - base) / viewers if viewers else 0.0
        who = f"{viewers} ({joined} joined)" if viewers else "0"
        print(f"| {who} | {cpu:.2f} | {per:.4f} | {nbytes:,.0f} | {median:.3f} | {worst:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        viewer_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        main()
