"""Seconds per new share link when the server already keeps ~10,000 (kontext/files/sharing.py).

The existing links are written straight into the storage (the JSON table of the older sharing.py, or
the log of the current one), then new links are made through `Shares.share` and timed.

    python scripts/bench_share_links.py                      # the current kontext/files/sharing.py
    git show <commit>:kontext/files/sharing.py > /tmp/old.py
    python scripts/bench_share_links.py --module /tmp/old.py # an older one, for comparison
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(module: str | None):
    if module is None:
        from kontext.files import sharing

        return sharing
    spec = importlib.util.spec_from_file_location("sharing_under_test", module)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def fill(sharing, folder: Path, n: int) -> Path:
    """`n` links of `n` sessions in the module's own storage; returns the path for Shares()."""
    entries = {"v_" + secrets.token_urlsafe(48): {"key": secrets.token_hex(32), "root": 1,
                                                  "image": secrets.token_hex(16) + ".png",
                                                  "created": time.time()} for _ in range(n)}
    log_name = getattr(sharing, "LOG_NAME", None)
    if log_name is None:  # the older form: one JSON table
        path = folder / "shares.json"
        path.write_text(json.dumps(entries))
        return path
    path = folder / log_name
    path.write_text("".join(json.dumps({"token": t, **e}) + "\n" for t, e in entries.items()))
    path.chmod(0o600)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--module", help="a sharing.py to time instead of the current one")
    p.add_argument("--links", type=int, default=10_000, help="links kept before the timed ones")
    p.add_argument("--new", type=int, default=30, help="new links to time")
    args = p.parse_args()
    sharing = load(args.module)
    sharing.MAX_SHARES = args.links + args.new  # room for the timed links
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # on the project's disk, like the sessions
        path = fill(sharing, Path(tmp), args.links)
        shares = sharing.Shares(path)
        times = []
        for _ in range(args.new):
            key = secrets.token_hex(32)
            t0 = time.perf_counter()
            shares.share(key, 1, secrets.token_hex(16) + ".png")
            times.append(time.perf_counter() - t0)
    print(f"{args.module or 'kontext/files/sharing.py'}: {args.new} new links after {args.links:,}: "
          f"median {statistics.median(times):.4f} s, max {max(times):.4f} s (first {times[0]:.4f} s, "
          "which reads the storage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
