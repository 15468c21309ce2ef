"""A content-safety hook: a host's check on every turn's prompt, input picture and result.

The FLUX.1 [dev] licence asks whoever runs the model for others to filter or review what it makes.
A check is any callable

    check(prompt: str, image: PIL.Image | None, output: PIL.Image | None) -> str | None

called twice per turn: before the model runs (`output` None) and on the result before it is kept.
It returns None to allow, or a reason in plain words to refuse; a refused turn changes nothing in
the history and the user reads "refused by this server's content filter: <reason>".

Built in: `PromptFilter`, a word list (no download; `--safety prompt`, with `--safety-words FILE` for
a host's own list, one word or phrase per line). An image classifier plugs in as
`--safety package.module:function` (a function of the signature above, e.g. wrapping a local NSFW
classifier that is already on disk); it may keep its model in a module-level variable. While a check
that may look at pictures is on, live previews are off: they would show a result before it is checked.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kontext.errors import Refused, UserError

Check = Callable[[str, Any, Any], "str | None"]

# A short list for the prompt filter: sexual content involving minors, which no host may serve. Hosts
# extend it with --safety-words; a word list is a first line of defence, not a classifier.
DEFAULT_WORDS = ("child porn", "childporn", "cp porn", "underage nude", "underage sex", "nude child",
                 "naked child", "loli porn", "preteen nude", "preteen sex")



class PromptFilter:
    """Refuses prompts containing any listed word or phrase (words starting as listed, any case, any
    spacing, hyphens and underscores read as spaces)."""

    checks_images = False  # words only: live previews reveal nothing it would refuse

    def __init__(self, words: tuple[str, ...] | list[str] = DEFAULT_WORDS):
        words = [" ".join(w.lower().split()) for w in words if w.strip() and not w.lstrip().startswith("#")]
        if not words:
            raise UserError("the safety word list is empty: give at least one word or phrase")
        self.words = tuple(words)
        # Each word may take a suffix ("children", "pornography"); words are apart by any spacing.
        alternatives = "|".join(r"\w*\s+".join(map(re.escape, w.split())) + r"\w*" for w in self.words)
        self._re = re.compile(rf"(?<!\w)(?:{alternatives})", re.IGNORECASE)

    @classmethod
    def from_file(cls, path: str | Path) -> PromptFilter:
        try:
            return cls(Path(path).read_text("utf-8").splitlines())
        except FileNotFoundError:
            raise UserError(f"safety word list not found: {path}") from None

    def __call__(self, prompt: str, image: Any = None, output: Any = None) -> str | None:
        if output is not None:
            return None  # words only: the result is for an image classifier to judge
        m = self._re.search(re.sub(r"[-_]+", " ", prompt or ""))  # "child-porn" is "child porn"
        return f"the instruction contains {m.group(0)!r}, which this server does not allow" if m else None


def load_check(spec: str | None, words: str | None = None) -> Check | None:
    """The check `spec` names: "off" (None), "prompt" (the word list), or "module:function"."""
    spec = (spec or "off").strip()
    if spec == "off":
        if words:
            raise UserError("--safety-words needs --safety prompt")
        return None
    if spec == "prompt":
        return PromptFilter.from_file(words) if words else PromptFilter()
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise UserError(f"safety must be off, prompt or module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"safety check {spec!r} could not be loaded: {e}") from None
    if not callable(fn):
        raise UserError(f"safety check {spec!r} is not a function")
    return fn


def enforce(check: Check | None, prompt: str, image: Any, output: Any = None) -> None:
    """Raise Refused if `check` refuses (a check that fails is a refusal too: never serve unchecked)."""
    if check is None:
        return
    try:
        reason = check(prompt, image, output)
    except Exception as e:  # noqa: BLE001 - the host's code; the turn must not go through unchecked
        raise Refused(f"refused: the content filter failed ({type(e).__name__}), so nothing was made") from e
    if reason:
        raise Refused(f"refused by this server's content filter: {reason}")
