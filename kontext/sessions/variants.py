"""Turns made from a step already in the history: re-roll (a new seed), refine a draft at full size,
redo the path as one edit, and re-anchor a step's instruction on the original."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kontext.core import params as P
from kontext.core.history import History, Node
from kontext.errors import UserError
from kontext.sessions.planning import EditOptions, recorded_loras, recorded_references
from kontext.sessions.running import Running


class Variants(Running):
    def reroll(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Repeat the current step's prompt from the same parent with a new random seed (a sibling)."""
        h = self.history(key)
        cur = h.current_node
        if cur is None or cur.kind == "upload":
            raise UserError("nothing to re-roll: the current step is not an edit")
        draft = bool(cur.extra.get("draft"))
        masked = cur.extra.get("mask")
        rolled = EditOptions(seed_mode="random", guidance=cur.guidance, steps=cur.steps,
                             width=None if draft or masked else cur.width,
                             height=None if draft or masked else cur.height,
                             reference=cur.extra.get("reference"), draft=draft, mask=masked,
                             loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, rolled, parent=cur.parent, **kw)

    def refine(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Run the current draft again at full size: same parent, prompt, seed, guidance, steps and
        reference (a sibling branch). `opts` may set the size; the default matches the input."""
        cur = self.history(key).current_node
        if cur is None or not cur.extra.get("draft"):
            raise UserError("nothing to refine: the current step is not a draft")
        full = EditOptions(seed_mode="fixed", seed=cur.seed, guidance=cur.guidance, steps=cur.steps,
                           width=opts.width, height=opts.height, reference=cur.extra.get("reference"),
                           loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, full, parent=cur.parent, **kw)

    def combine(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """Redo every instruction of the current path as one edit of its original image.

        Kontext drifts over many turns (each turn re-encodes the previous output); one combined
        instruction from the original often keeps more detail. The result is a new branch from the
        original, so the step-by-step chain stays.
        """
        path = self.history(key).path()
        edits = [n.prompt for n in path[1:] if n.kind == "edit"]
        if len(edits) < 2:
            raise UserError("combine needs at least two edits after the original image")
        prompt = "; ".join(e.rstrip(" .;") for e in edits)
        if len(prompt) > P.MAX_PROMPT_CHARS:
            raise UserError(f"the combined instruction is {len(prompt)} characters; the limit is "
                             f"{P.MAX_PROMPT_CHARS}: combine from a later step or shorten instructions")
        # The combined steps may have used different references or masks (or none): combine without.
        return self.edit(key, prompt, replace(opts, reference=None, more_references=(), roles=(), mask=None),
                         parent=path[0].id, **kw)

    def reanchor(self, key: str, opts: EditOptions = EditOptions(), **kw: Any) -> tuple[History, Node]:
        """The current step's instruction applied to the chain's original, with its seed and settings:
        a new branch beside the step-by-step one, to compare without the drift of the turns between."""
        h = self.history(key)
        cur = h.current_node
        if cur is None or cur.kind != "edit":
            raise UserError("nothing to re-anchor: the current step is not an edit")
        root = h.path()[0]
        if cur.parent == root.id:
            raise UserError("this step already edits the original: re-roll it for another variant")
        draft, masked = bool(cur.extra.get("draft")), cur.extra.get("mask")
        sized = not (draft or masked)
        again = EditOptions(seed_mode="fixed", seed=cur.seed, guidance=cur.guidance, steps=cur.steps,
                            width=cur.width if sized else None, height=cur.height if sized else None,
                            reference=cur.extra.get("reference"), mask=masked, draft=draft,
                            loras=recorded_loras(cur), **recorded_references(cur))
        return self.edit(key, cur.prompt, again, parent=root.id, **kw)
