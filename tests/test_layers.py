"""The package's floors (ARCHITECTURE.md): each part of kontext/ imports only the parts below it, no
two modules import each other in a circle, and ui/ uses kontext only through the names its parts
export. The checks read the source (ast), so they also see imports inside functions."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top: a part may import the parts before it, and the top-level modules below every part.
FLOORS = ["core", "model", "files", "showcase", "sessions", "hosting", "tools"]
TOP_LEVEL = {"__init__", "__main__", "errors", "env", "lazy", "quiet"}  # __main__ is the entry point, above all


def kontext_imports(path: Path) -> set[str]:
    """The kontext names a file imports, dotted ("kontext.model.engine", "kontext.model.engine.Engine")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: a relative import (write `from kontext.<part>.<module> import`)")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kontext":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kontext."))
    return found


def part_of(dotted: str) -> str | None:
    """"kontext.model.engine" -> "model"; the package itself or a top-level module -> None."""
    bits = dotted.split(".")
    return bits[1] if len(bits) > 1 and bits[1] in FLOORS else None


def upward_imports(package: Path) -> list[str]:
    """Every import from a module into a part above its own (a top-level module counts as the floor)."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        inside = path.relative_to(package).parts
        if inside == ("__main__.py",):
            continue
        mine = inside[0] if len(inside) > 1 else None
        for dotted in sorted(kontext_imports(path)):
            other = part_of(dotted)
            if other is not None and other != mine and (mine is None or FLOORS.index(other) > FLOORS.index(mine)):
                bad.append(f"{'/'.join(inside)} imports {dotted}")
    return bad


def import_circle(package: Path) -> list[str]:
    """One circle of imports between modules (as a list of module names), or [] if there is none."""
    modules = {".".join(("kontext", *p.relative_to(package).with_suffix("").parts)): p for p in package.rglob("*.py")}
    graph = {name: sorted(d for d in kontext_imports(p) if d in modules and d != name) for name, p in modules.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str]:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [nxt, node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = "done"
        return []

    for name in sorted(graph):
        if name not in state and (found := visit(name, [])):
            return found
    return []


def test_every_part_says_what_it_holds_and_no_module_lies_outside_the_parts():
    for part in FLOORS:
        init = ROOT / "kontext" / part / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"kontext/{part}/__init__.py has no docstring"
    flat = {p.stem for p in (ROOT / "kontext").glob("*.py")}
    assert flat <= TOP_LEVEL, f"modules outside the parts: {sorted(flat - TOP_LEVEL)}"


def test_every_import_between_parts_points_down():
    assert upward_imports(ROOT / "kontext") == []


def test_no_import_circle():
    assert import_circle(ROOT / "kontext") == []


def test_the_checks_find_an_upward_import_and_a_circle(tmp_path):
    """The same checks on a made-up package that breaks both rules."""
    pkg = tmp_path / "kontext"
    for part in ("model", "hosting"):
        (pkg / part).mkdir(parents=True)
    (pkg / "model" / "engine.py").write_text("def f():\n    from kontext.hosting.zerogpu import on_zerogpu\n")
    (pkg / "hosting" / "zerogpu.py").write_text("from kontext.model.engine import f\n")
    assert upward_imports(pkg) == ["model/engine.py imports kontext.hosting.zerogpu",
                                   "model/engine.py imports kontext.hosting.zerogpu.on_zerogpu"]
    assert import_circle(pkg) == ["kontext.hosting.zerogpu", "kontext.model.engine", "kontext.hosting.zerogpu"]


def test_ui_uses_kontext_only_through_what_the_parts_export():
    deep = []
    for path in sorted((ROOT / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kontext.")):
                continue
            bits = node.module.split(".")
            if bits[1] in FLOORS and len(bits) > 2:
                deep.append(f"ui/{path.name}: from {node.module} import ...")
            elif bits[1] in FLOORS:
                exported = importlib.import_module(node.module).__all__
                missing = [a.name for a in node.names if a.name not in exported]
                assert not missing, f"ui/{path.name}: {node.module} does not export {missing}"
    assert deep == [], "ui/ reaching past a part's exports"


def test_kontext_settings_are_read_only_in_kontext_env():
    """Every KONTEXT_* variable is read through kontext.env.setting, where its default is written once."""
    import re

    reads = re.compile(r"""(environ\.get\(|environ\[|getenv\(|\benv\()\s*["']KONTEXT_""")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in [*sorted((ROOT / "kontext").rglob("*.py")), ROOT / "app.py",
                                                     *sorted((ROOT / "ui").rglob("*.py"))]
             if p.name != "env.py" for i, line in enumerate(p.read_text().splitlines(), 1) if reads.search(line)]
    assert found == []
    from kontext.env import DEFAULTS

    used = set(re.findall(r"""setting\(["']([A-Z_]+)["']\)""", "".join(
        p.read_text() for p in [*(ROOT / "kontext").rglob("*.py"), ROOT / "app.py"])))
    assert used <= set(DEFAULTS), f"settings without a default entry: {sorted(used - set(DEFAULTS))}"
