"""Print the README's GPU tier table (from kontext/hosting/tiers.py: what --mode auto runs on each size).

    python scripts/tier_table.py          # print it
    python scripts/tier_table.py --write  # replace the table between the README's markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START, END = "<!-- tier-table: start (scripts/tier_table.py) -->", "<!-- tier-table: end -->"


def table() -> str:
    from kontext.hosting.tiers import TIERS

    lines = ["| GPU (memory torch reports) | speed mode auto picks | on the GPU | peak GPU memory, 1 MP edit | "
             "seconds per 1 MP edit, 28 steps | what the host sets |", "|---|---|---|---|---|---|"]
    for t in TIERS:
        plan = t.plan
        seconds, measured = t.seconds()
        if seconds is None:
            cost = "not estimated" + (f" ({t.note})" if t.note else "")
        else:
            cost = f"{seconds:g} ({'measured' if measured else 'estimated'})" + (f"; {t.note}" if t.note else "")
        peak = (f"{t.measured_peak_gib:g} GiB (measured)" if t.measured_peak_gib is not None
                else f"about {plan.peak_gib:g} GiB (estimated)")
        sets = "Hardware: ZeroGPU; `HF_TOKEN`" if t.zerogpu else "`HF_TOKEN`; nothing else"
        if plan.packages and not t.zerogpu:
            sets += f" (needs {', '.join(plan.packages)}: in requirements.txt)"
        on_gpu = plan.on_gpu.split(" (")[0].split(",")[0]
        lines.append(f"| {t.hardware}, {t.gib:g} GiB | `{plan.speed.label}` | {on_gpu} | {peak} | {cost} | {sets} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="update README.md in place")
    args = p.parse_args()
    text = table()
    if not args.write:
        print(text)
        return 0
    readme = ROOT / "README.md"
    head, rest = readme.read_text("utf-8").split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
