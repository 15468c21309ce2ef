"""Output-size buckets: the fixed set of sizes the page offers, so compiled code sees known shapes.

For FLUX.1 Kontext these are its trained resolutions (about 1 MP, aspect 3:7 to 7:3), plus their
draft sizes (a quarter of the area). The tiny model gets the same aspect ratios at its own area.
"Match input" picks the bucket whose aspect ratio is nearest the picture's (in log space, so 2:1
and 1:2 are equally far from 1:1). The token counts of all buckets bound the shapes an
ahead-of-time compiled transformer must accept (kontext/model/aot.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kontext.core import params as P
from kontext.errors import UserError


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    draft: bool = False

    @property
    def tokens(self) -> int:
        """Image tokens of this output (16x16-pixel patches)."""
        return self.width * self.height // 256

    @property
    def label(self) -> str:
        g = math.gcd(self.width, self.height)
        return f"{self.width}×{self.height} ({self.width // g}:{self.height // g}){' draft' if self.draft else ''}"


def buckets(profile: P.Profile, draft: bool | None = None) -> list[Bucket]:
    """Every bucket for `profile`: full size (draft=False), drafts (True) or both (None), no duplicates."""
    out: list[Bucket] = []
    for is_draft in ((False, True) if draft is None else (draft,)):
        area = P.draft_size((1, 1), profile)[0] ** 2 if is_draft else profile.default_area
        for w, h in P.PREFERRED_RESOLUTIONS:
            size = (w, h) if not is_draft and profile.default_area == 1024 * 1024 else P.fit_area(w / h, area, profile)
            b = Bucket(*size, draft=is_draft)
            if (b.width, b.height) not in {(x.width, x.height) for x in out if x.draft == is_draft}:
                out.append(b)
    return out


def nearest(width: int, height: int, profile: P.Profile, draft: bool = False) -> Bucket:
    """The bucket whose aspect ratio is closest to width:height."""
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise UserError(f"size must be two positive whole numbers, got {width!r}x{height!r}")
    aspect = math.log(width / height)
    return min(buckets(profile, draft), key=lambda b: abs(math.log(b.width / b.height) - aspect))


def token_range(profile: P.Profile, with_context: bool = True) -> tuple[int, int]:
    """The fewest and most image tokens the transformer sees over every bucket: output tokens, plus as
    many again for the context image (a Kontext edit puts the context beside the output, resized to
    a trained resolution, or to the output's size for drafts and reference pairs)."""
    counts = [b.tokens for b in buckets(profile)]
    lo, hi = min(counts), max(counts)
    if not with_context:
        return lo, hi
    context_hi = max(b.tokens for b in buckets(profile, draft=False))
    return lo, hi + context_hi
