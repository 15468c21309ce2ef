"""Print the README's endpoint list (from ui/apidoc.py, with FLUX.1 Kontext [dev]'s limits).

    python scripts/api_reference.py          # print it
    python scripts/api_reference.py --write  # replace the list between the README's markers
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START, END = "<!-- api-reference: start (scripts/api_reference.py) -->", "<!-- api-reference: end -->"


def reference() -> str:
    from kontext.core.params import REAL_PROFILE
    from ui.apidoc import markdown

    return markdown(REAL_PROFILE)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="update README.md in place")
    args = p.parse_args()
    text = reference()
    if not args.write:
        print(text)
        return 0
    readme = ROOT / "README.md"
    old = readme.read_text("utf-8")
    head, rest = old.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
