"""Edit parameters, their limits, and output-size arithmetic. No torch here."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from kontext.errors import UserError

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
MIN_STEPS, MAX_STEPS = 1, 100
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0
SIZE_MULTIPLE = 16  # FLUX packs 2x2 latent patches of an 8x VAE

# The resolutions Kontext was trained on (width, height); the official demo snaps to these.
PREFERRED_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
    (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
    (1456, 720), (1504, 688), (1568, 672),
)


@dataclass(frozen=True)
class Profile:
    """What a model is good at by default, and the sizes the app allows for it."""

    default_steps: int = 28
    default_guidance: float = 2.5
    default_area: int = 1024 * 1024
    max_area: int = 2048 * 1024  # 2 MP
    min_side: int = 256
    max_side: int = 2048
    auto_resize: bool = True  # snap the context image to a preferred Kontext resolution
    max_sequence_length: int = 512


REAL_PROFILE = Profile()
TINY_PROFILE = Profile(
    default_steps=4, default_area=128 * 128, max_area=512 * 512, min_side=32, max_side=1024,
    auto_resize=False, max_sequence_length=128,
)


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def check_prompt(prompt: object, required: bool = True) -> str:
    if not isinstance(prompt, str):
        raise UserError(f"prompt must be text, got {type(prompt).__name__}")
    text = prompt.strip()
    if required and not text:
        raise UserError("prompt is empty: describe the edit, e.g. 'make the sky stormy'")
    if len(text) > MAX_PROMPT_CHARS:
        raise UserError(f"prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text


def check_seed(seed: object) -> int:
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed must be from 0 to {MAX_SEED}, got {seed}")
    return seed


def check_steps(steps: object) -> int:
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise UserError(f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS}, got {steps!r}")
    return steps


MAX_VARIATIONS = 4  # candidates one instruction may make to pick from


def check_variations(n: object) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_VARIATIONS:
        raise UserError(f"variations must be a whole number from 1 to {MAX_VARIATIONS}, got {n!r}")
    return n


def check_group_seed(seed: int, n: int) -> int:
    """Candidates take the seeds seed, seed+1, ...: the last must still be a seed."""
    if seed + n - 1 > MAX_SEED:
        raise UserError(f"with {n} variations the seed must be at most {MAX_SEED - n + 1} (they use "
                        f"seed, seed+1, ...), got {seed}")
    return seed


def new_group_seed(n: int) -> int:
    return secrets.randbelow(MAX_SEED + 2 - n)


def check_guidance(guidance: object) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise UserError(f"guidance must be a number from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g}, got {guidance!r}")
    if not MIN_GUIDANCE <= guidance <= MAX_GUIDANCE:
        raise UserError(f"guidance must be from {MIN_GUIDANCE:g} to {MAX_GUIDANCE:g}, got {guidance:g}")
    return float(guidance)


def check_size(width: object, height: object, profile: Profile) -> tuple[int, int]:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserError(f"{name} must be a whole number of pixels, got {v!r}")
        if v % SIZE_MULTIPLE:
            raise UserError(f"{name} must be a multiple of {SIZE_MULTIPLE}, got {v}")
        if not profile.min_side <= v <= profile.max_side:
            raise UserError(f"{name} must be from {profile.min_side} to {profile.max_side} px, got {v}")
    if width * height > profile.max_area:
        raise UserError(
            f"width x height = {width}x{height} is more than this model's {profile.max_area:,} pixels"
        )
    return width, height


def fit_area(aspect: float, area: int, profile: Profile) -> tuple[int, int]:
    """The largest size of about `area` pixels with this aspect ratio, in multiples of 16."""
    if not math.isfinite(aspect) or aspect <= 0:
        raise UserError(f"aspect ratio must be positive, got {aspect!r}")
    m = SIZE_MULTIPLE
    w = round(math.sqrt(area * aspect) / m) * m
    h = round(math.sqrt(area / aspect) / m) * m
    # Keep within the profile's sides; the aspect ratio is kept as well as 16 px steps allow.
    w = min(max(w, profile.min_side), profile.max_side)
    h = min(max(h, profile.min_side), profile.max_side)
    while w * h > profile.max_area:
        w, h = (w - m, h) if w >= h else (w, h - m)
    return w, h


def draft_size(image_size: tuple[int, int] | None, profile: Profile) -> tuple[int, int]:
    """A draft's output size: the image's aspect at a quarter of the default area (square from text)."""
    aspect = image_size[0] / image_size[1] if image_size is not None else 1.0
    return fit_area(aspect, max(profile.default_area // 4, profile.min_side**2), profile)


def size_choices(profile: Profile) -> list[tuple[str, tuple[int, int] | None]]:
    """Output-size menu: match the input, or one of Kontext's trained aspect ratios at this
    model's default area (for the real model these are exactly the trained resolutions)."""
    out: list[tuple[str, tuple[int, int] | None]] = [("Match input", None)]
    seen = set()
    for w, h in PREFERRED_RESOLUTIONS:
        size = (w, h) if profile.default_area == 1024 * 1024 else fit_area(w / h, profile.default_area, profile)
        if size not in seen:
            seen.add(size)
            g = math.gcd(*size)
            out.append((f"{size[0]}×{size[1]} ({size[0] // g}:{size[1] // g})", size))
    return out


def text_replacement_prompt(old: str, new: str) -> str:
    """Kontext's guide: quote the exact text, and ask to keep the font, so only the words change."""
    old, new = (t.strip().replace('"', "'") for t in (old, new))
    if not old:
        raise UserError("text now is empty: type the text that is in the image")
    if not new:
        raise UserError("replace with is empty: type the new text")
    if len(old) > 200 or len(new) > 200:
        raise UserError("text to replace must be at most 200 characters each")
    return f'Replace "{old}" with "{new}", keep the same font, size, colour and position'
