"""How far a chain has drifted from its original (Kontext's quality drifts over many turns), and the
hint the page shows when it has."""

from __future__ import annotations

from PIL import Image

from kontext.core.drift import Drift
from kontext.core.drift import measure as measure_drift
from kontext.core.history import History, Node
from kontext.sessions.keeper import Keeper

DRIFT_TURNS = 6  # after this many edits in a row, quality tends to drift


class Drifting(Keeper):
    def drift_curve(self, key: str, history: History | None = None) -> list[tuple[Node, Drift]]:
        """Each step of the current path (after the original) with its drift from the original
        (kontext.core.drift), remembered per pair of pictures so a redraw costs nothing."""
        h = self.history(key) if history is None else history
        path = h.path() if h.current is not None else []
        if len(path) < 2:
            return []
        out = []
        root_img: Image.Image | None = None
        # The timeline's 256 px thumbnails (made once, kept) are plenty for a 128 px measure and decode
        # in a millisecond, so even a long chain's first curve is quick.
        def thumb(n: Node) -> Image.Image:
            with Image.open(self.store.thumbnail_path(key, n.image)) as im:
                im.load()  # decoded now, so the file is closed at once (a long chain opens many)
                return im.copy()

        for n in path[1:]:
            memo = (self.store.folder(key).name, path[0].image, n.image)
            d = self._drift.get(memo)
            if d is None:
                if root_img is None:
                    root_img = thumb(path[0])
                d = measure_drift(root_img, thumb(n))
                self._drift.put(memo, d)
            out.append((n, d))
        return out

    def drift_warning(self, key: str, history: History | None = None) -> str:
        """A hint when the current chain is long, or its picture far from the original, for Kontext's
        quality to have drifted."""
        h = self.history(key) if history is None else history
        edits = sum(1 for n in h.path() if n.kind == "edit")
        curve = self.drift_curve(key, h) if h.current is not None else []
        last = curve[-1][1] if curve else None
        if last is not None and last.high and edits >= 2:
            return (f"The picture has moved far from the original (colour difference ΔE {last.delta_e:.0f}, "
                    f"structure {last.ssim:.2f} of 1). If that was not intended, press \"Redo path as one edit\" "
                    "(all instructions at once, from the original) or re-anchor a step's instruction on the "
                    "original.")
        if edits >= DRIFT_TURNS:
            return (f"{edits} edits in a row: Kontext's quality drifts over many turns. If details soften, "
                    "press \"Redo path as one edit\" (all instructions at once, from the original) or branch "
                    "from an earlier step.")
        return ""
