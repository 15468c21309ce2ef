"""What the page shows for a history: plain values, no gradio events. Easy to test on its own."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kontext.core import History, Node
from kontext.model import public_step
from kontext.sessions import Sessions

_PUNCTUATION = frozenset(string.punctuation)


def plain(text: object) -> str:
    """Someone's words (a prompt, a file name) placed in Markdown so that they show as the text they
    are: every ASCII punctuation character is backslash-escaped (CommonMark and gradio's marked allow
    it for each), so no image, link, tag, heading, list, code, table, emphasis or $$ formula can start
    and no URL or address is linked; whitespace, line breaks too, becomes one space."""
    return "".join("\\" + c if c in _PUNCTUATION else c for c in " ".join(str(text).split()))


def short(text: str, n: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def label(node: Node) -> str:
    """How a step is named everywhere on the page: '#3 make it blue'."""
    if node.kind == "upload":
        source = node.extra.get("source")
        return f"#{node.id} original" + (f" ({short(str(source), 24)})" if source else "")
    return f"#{node.id} {short(node.prompt)}"


def caption(node: Node) -> str:
    if node.kind == "upload":
        return f"#{node.id} · original · {node.width}×{node.height}"
    n_refs = len([node.extra.get("reference"), *(node.extra.get("more_references") or ())]) if node.extra.get(
        "reference") else 0
    ref = "" if not n_refs else " · with reference" if n_refs == 1 else f" · with {n_refs} references"
    draft = " · draft" if node.extra.get("draft") else ""
    return f"#{node.id} · {short(node.prompt, 40)} · seed {node.seed} · {node.seconds:.1f}s{ref}{draft}"


def timeline(h: History) -> list[Node]:
    """The current branch from its root to its tip (past the current step too, so redo is visible)."""
    if h.current is None:
        return []
    return h.path(h.tip(h.current))


def branch_text(h: History) -> str:
    sibs = h.siblings()
    if len(sibs) < 2:
        return ""
    i = [n.id for n in sibs].index(h.current) + 1
    return f"branch {i} of {len(sibs)}"


def step_choices(h: History) -> list[tuple[str, int]]:
    """Every step in the session (all branches), for 'go to' and compare pickers."""
    return [(label(n), n.id) for n in sorted(h.nodes.values(), key=lambda n: n.id)]


def tree_markdown(h: History) -> str:
    """All branches as a list; the current step in bold. A chain stays at one level (a step with one
    child is followed by it); at a branch point each branch is indented and starts with "↳", so a
    200-step chain is 200 short lines, not a 200-deep nesting."""
    if h.empty:
        return "_No steps yet._"
    lines: list[str] = []
    todo: list[tuple[Node, int, bool]] = [(root, 0, False) for root in reversed(h.roots())]
    while todo:
        node, depth, starts_branch = todo.pop()
        text = plain(label(node))
        if node.id == h.current:
            text = f"**{text}  ← current**"
        lines.append("  " * depth + "- " + ("↳ " if starts_branch else "") + text)
        children = h.children(node.id)
        if len(children) == 1:
            todo.append((children[0], depth, False))
        else:
            todo.extend((child, depth + 1, True) for child in reversed(children))
    return "\n".join(lines)


def variation_caption(node: Node, position: int) -> str:
    """A candidate's cell in the variations grid: '2 · seed 124' (position counts from 0)."""
    return f"{position + 1} · seed {node.seed}"


def variation_text(h: History, node: Node) -> str:
    """The status line's words for a candidate: which one of how many, and how they were made.
    Candidates made one after another say so and why (kontext.model.speed.batch_plan): never silently."""
    v = node.extra.get("variations")
    if not isinstance(v, Mapping):
        return ""
    group = [n.id for n in h.group(node.id)]
    if node.id not in group:
        return ""
    n, i = len(group), group.index(node.id) + 1
    size, index = v.get("size"), v.get("index")
    here = ""
    if isinstance(size, int) and isinstance(index, int) and size > n:
        # Fewer candidates here than were made (an import of one path holds only the picked one): say
        # which of how many it was, not "1 of 1".
        n, i = size, index + 1
        here = f" ({'only this one' if len(group) == 1 else f'{len(group)} of them'} in this session)"
    total = v.get("seconds")
    took = f"{float(total):.2f} s for all {n}" if isinstance(total, (int, float)) else f"all {n}"
    words = f" · **variation {i} of {n}**{here}"
    if v.get("batched") is False:
        note = v.get("note") or "the reason was not recorded"
        return words + f" · **made one after another** ({took}): {plain(note)}"
    return words + (f" · made together in one call, {took}" if v.get("batched") is True else "")


def preview_cells(previews: tuple, side: int = 64) -> list[tuple[Any, str]]:
    """The variations grid while an edit with several candidates runs: each candidate's newest live
    preview, or a blank cell of the same size until it has one."""
    from PIL import Image

    size = next((p.size for p in previews if p is not None), (side, side))
    blank = Image.new("RGB", size, (200, 200, 205))
    return [(p if p is not None else blank, f"{i} · {'preview' if p is not None else 'waiting'}")
            for i, p in enumerate(previews, 1)]


def status_text(h: History, model: str) -> str:
    node = h.current_node
    if node is None:
        return "Upload an image (or paste / drop one), or type a prompt to generate a first picture."
    if node.kind == "upload":
        return f"**Step #{node.id}**: original image, {node.width}×{node.height}. Type an instruction to edit it."
    roles = node.extra.get("reference_roles") or []
    ref = ""
    if node.extra.get("reference"):
        count = 1 + len(node.extra.get("more_references") or ())
        ref = " · with a reference image" if count == 1 else f" · with {count} reference images"
        ref += f" ({plain(', '.join(map(str, roles)))})" if roles else ""  # an import may carry any text
    ref += " · from the example cache (made earlier with this seed)" if node.extra.get("cached") else ""
    ref += (f" · **masked**: only {round(100 * node.extra['masked'])} % could change"
            if node.extra.get("masked") else "")
    ref += (f" · size matched to the nearest compiled size, {plain(node.extra['bucket'])}"
            if node.extra.get("bucket") else "")
    ref += (f" · **ran eagerly** ({plain(node.extra['eager_calls'])} transformer calls): "
            f"{plain(node.extra['eager_cause'])}" if node.extra.get("eager_cause") else "")
    ref += (" · **draft**: *Refine draft at full size* re-runs it with the same seed and settings (close to "
            "the draft, not identical: the noise depends on the size)") if node.extra.get("draft") else ""
    ref += variation_text(h, node) if node.extra.get("variations") else ""
    return (f"**Step #{node.id}** · seed `{node.seed}` · {node.seconds:.2f} s · {node.width}×{node.height} · "
            f"{node.steps} steps · guidance {node.guidance:g} · {model}{ref}")


@dataclass
class Snapshot:
    """Everything the page needs to redraw after any action."""

    image: str | None
    gallery: list[tuple[str, str]]
    selected: int | None
    status: str
    branch: str
    choices: list[tuple[str, int]]
    tree: str
    can_undo: bool
    can_redo: bool
    compare: tuple[str, str] | None
    compare_ids: tuple[int | None, int | None]
    drift: str
    current: int | None
    variants: list[tuple[str, str]]  # the current step's group of candidates (thumbnail, caption); [] if none
    variant: int | None  # which of them is the current step


def snapshot(sessions: Sessions, key: str, h: History | None = None) -> Snapshot:
    h = sessions.history(key) if h is None else h
    line = timeline(h)
    path = lambda n: sessions.store.public_path(key, n.image).as_posix()  # noqa: E731
    cur = h.current_node
    compare = None
    ids: tuple[int | None, int | None] = (None, None)
    if cur is not None:
        before = h.node(cur.parent) if cur.parent is not None else cur
        compare = (path(before), path(cur))
        ids = (before.id, cur.id)
    group = h.group()
    group = group if len(group) > 1 else []  # one candidate here (an import of one path): nothing to pick
    return Snapshot(
        image=path(cur) if cur else None,
        gallery=[(sessions.store.public_path(key, n.image, thumbnail=True).as_posix(), caption(n)) for n in line],
        selected=next((i for i, n in enumerate(line) if n.id == h.current), None),
        status=status_text(h, sessions.engine.model_id),
        branch=branch_text(h),
        choices=step_choices(h),
        tree=tree_markdown(h),
        can_undo=h.can_undo,
        can_redo=h.can_redo,
        compare=compare,
        compare_ids=ids,
        drift=sessions.drift_warning(key, h) if cur else "",
        current=h.current,
        variants=[(sessions.store.public_path(key, n.image, thumbnail=True).as_posix(), variation_caption(n, i))
                  for i, n in enumerate(group)],
        variant=next((i for i, n in enumerate(group) if n.id == h.current), None),
    )


def history_json(sessions: Sessions, key: str, h: History | None = None) -> dict[str, Any]:
    """The API's view of a session: the current step, every step, the current path, and what undo/redo
    would do (ui/apidoc.py describes it to clients)."""
    h = sessions.history(key) if h is None else h
    # Steps made before LoRA records held names only also stored a server path: never sent.
    step = lambda n: {k: v for k, v in public_step(n.to_dict()).items() if k != "image"}  # noqa: E731
    return {
        "step": step(h.current_node) if h.current_node is not None else None,  # first: what an agent reads
        "current": h.current,
        "path": [n.id for n in h.path()] if h.current is not None else [],
        "timeline": [n.id for n in timeline(h)],
        "can_undo": h.can_undo,
        "can_redo": h.can_redo,
        "branch": branch_text(h),
        "group": [n.id for n in h.group()],  # the current step's variations (pick one with /pick), else []
        "steps": [step(n) for n in sorted(h.nodes.values(), key=lambda n: n.id)],
    }


def drift_series(curve: list) -> tuple[list[float], list[float]]:
    """ΔE and structure lost (%) per turn, turn 0 being the original (no drift)."""
    delta = [0.0] + [round(d.delta_e, 1) for _, d in curve]
    lost = [0.0] + [round(100 * (1 - d.ssim), 1) for _, d in curve]
    return delta, lost


def drift_svg(curve: list, width: int = 360, height: int = 150) -> str:
    """The drift chart: two lines over the turns (ΔE in the accent colour, structure lost dashed),
    the threshold where the page suggests redoing the path, and the last values in words."""
    from kontext.core import DELTA_E_HIGH, SSIM_LOW

    if not curve:
        return ""
    delta, lost = drift_series(curve)
    top = max(max(delta), max(lost), DELTA_E_HIGH, 100 * (1 - SSIM_LOW), 1.0) * 1.1
    left, right, pad = 30, 10, 12
    n = len(delta) - 1

    def pt(i: int, v: float) -> str:
        x = left + (width - left - right) * (i / n if n else 0)
        y = pad + (height - 2 * pad) * (1 - v / top)
        return f"{x:.1f},{y:.1f}"

    def line(vals: list[float], style: str) -> str:
        return f'<polyline fill="none" {style} points="{" ".join(pt(i, v) for i, v in enumerate(vals))}"/>'

    y_high = pad + (height - 2 * pad) * (1 - DELTA_E_HIGH / top)
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="drift from the original">'
        f'<line x1="{left}" y1="{height - pad}" x2="{width - right}" y2="{height - pad}" stroke="#999"/>'
        f'<line x1="{left}" y1="{y_high:.1f}" x2="{width - right}" y2="{y_high:.1f}" stroke="#f59e0b" '
        f'stroke-dasharray="2 3"/>'
        f'<text x="2" y="{y_high + 4:.1f}" font-size="10" fill="#b45309">{DELTA_E_HIGH:g}</text>'
        f'<text x="2" y="{height - pad + 4}" font-size="10" fill="#666">0</text>'
        + line(delta, 'stroke="#6366f1" stroke-width="2"')
        + line(lost, 'stroke="#10b981" stroke-width="2" stroke-dasharray="5 3"')
        + f'<text x="{left}" y="{height - 1}" font-size="10" fill="#666">original</text>'
        f'<text x="{width - right}" y="{height - 1}" font-size="10" fill="#666" text-anchor="end">turn {n}</text>'
        "</svg>"
        f'<p style="margin:0;font-size:0.85em">Drift from the original: colour ΔE <b>{delta[-1]:g}</b> '
        f'(solid; above {DELTA_E_HIGH:g} the page suggests redoing the path), structure lost '
        f'<b>{lost[-1]:g} %</b> (dashed).</p>'
    )
