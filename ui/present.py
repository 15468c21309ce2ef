"""The presentation view's slides: one per step of the current path, before/after with its instruction.
Plain values (no events), used by the owner's page and the shared view alike."""

from __future__ import annotations

from dataclasses import dataclass

from kontext.core import History
from kontext.sessions import Sessions

from .view import plain as text
from .view import short


@dataclass(frozen=True)
class Slide:
    index: int  # 0-based, clamped to the path
    count: str
    caption: str
    pair: tuple[str, str] | None  # (before, after) image paths


def slide(sessions: Sessions, key: str, h: History, index: int) -> Slide:
    """Slide `index` of the path from the original to the current step (clamped to it)."""
    path = h.path() if h.current is not None else []
    if not path:
        return Slide(0, "", "Nothing to present yet: upload or make a picture first.", None)
    i = min(max(int(index), 0), len(path) - 1)
    node = path[i]
    before = path[i - 1] if i > 0 else node
    image = lambda n: sessions.store.public_path(key, n.image).as_posix()  # noqa: E731
    if node.kind == "upload":
        source = node.extra.get("source")
        caption = "**The original**" + (f" · {text(short(str(source), 40))}" if source else "")
    else:
        caption = f"**{text(node.prompt)}**"
        caption += f"  \n<small>seed {node.seed} · {node.width}×{node.height} · step #{node.id}</small>"
    return Slide(i, f"Step {i + 1} of {len(path)}", caption, (image(before), image(node)))
