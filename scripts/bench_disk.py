"""Disk used against the budget under an import/export storm, through the API only (no page loads).

Starts app.py on the tiny model in its own process with a small --max-disk-gb, makes one export
ZIP, then from fresh sessions imports it again and again, exporting after each import, and reports
how many were refused, the disk used by sessions (measured on disk, not the app's own count), the
exports kept and gradio's upload folder. Prints a markdown table.

    python scripts/bench_disk.py --budget-mb 40 --rounds 40
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def du(path: Path) -> int:
    """Bytes on disk under `path`, each file once (the public folder holds hard links)."""
    seen: dict[tuple[int, int], int] = {}
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                st = p.stat()
                seen[st.st_dev, st.st_ino] = st.st_size
    return sum(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-mb", type=float, default=40)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20, help="steps in the exported chain")
    args = ap.parse_args()

    from bench_ui import wait_for
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file
    from PIL import Image

    from apphelpers import free_port

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "sessions"
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", "tiny", "--port", str(port),
                               "--data-dir", str(data), "--no-warmup", "--max-disk-gb",
                               str(args.budget_mb / 1024)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    src = tmp / "src.png"
    Image.effect_noise((512, 512), 60).convert("RGB").save(src)
    refused, other, peak = 0, 0, 0
    try:
        c: Client = wait_for(f"http://127.0.0.1:{port}/")
        c = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp / "downloads"))
        key = c.predict(api_name="/new_session")
        for _ in range(args.steps):
            c.predict(key, handle_file(str(src)), api_name="/upload")
        zip_path = next(f for f in c.predict(key, "all", api_name="/export") if f.endswith(".zip"))
        zip_mb = Path(zip_path).stat().st_size / 2**20
        start = time.perf_counter()
        for _ in range(args.rounds):
            k = c.predict(api_name="/new_session")
            try:
                c.predict(k, handle_file(zip_path), api_name="/import_zip")
                c.predict(k, "all", api_name="/export")
            except Exception as e:  # noqa: BLE001 - counted
                if "out of space" in str(e) or "waiting to be downloaded" in str(e):
                    refused += 1
                else:
                    other += 1
                    print("unexpected:", str(e)[:200])
            peak = max(peak, du(data))
        seconds = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(30)
    budget = args.budget_mb * 2**20
    exports = du(Path(get_upload_folder()) / "kontext-exports")
    print(f"tiny app, budget {args.budget_mb:g} MB, {args.rounds} rounds of import ({zip_mb:.1f} MB ZIP of "
          f"{args.steps} steps) + export, API only, {seconds:.1f} s\n")
    print("| sessions on disk at the end | peak during the storm | budget | refused in plain words | other errors |"
          " exports kept |\n|---|---|---|---|---|---|")
    print(f"| {du(data) / 2**20:.1f} MB | {peak / 2**20:.1f} MB | {budget / 2**20:.1f} MB | {refused} | {other} | "
          f"{exports / 2**20:.1f} MB |")


if __name__ == "__main__":
    main()
