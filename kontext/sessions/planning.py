"""A turn planned once, with every rule: its parent, its context image (references beside it, a
mask), its size, its seed, and the engine's checks of every value, before it waits for a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kontext.core import params as P
from kontext.core.compose import MAX_MORE_REFERENCES, ROLES
from kontext.core.history import History, Node
from kontext.errors import UserError
from kontext.model.loras import recorded
from kontext.model.turns import TurnRequest, plan_step
from kontext.sessions.uploads import Uploads

SEED_MODES = ("random", "fixed", "locked")


@dataclass(frozen=True)
class EditOptions:
    """How to run one turn. None means the model's default."""

    seed_mode: str = "random"  # random: new each turn; fixed: `seed`; locked: the parent's seed
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    reference: str | None = None  # a stored reference image (Sessions.add_reference), right of the context
    draft: bool = False  # a quarter of the area, context scaled down too: a quick look before refining
    mask: str | None = None  # a stored mask (Sessions.add_mask): only there may the picture change
    loras: tuple[tuple[str, float], ...] = ()  # (name, strength) of the engine's LoRA presets
    more_references: tuple[str, ...] = ()  # up to two more stored references, right of the first
    roles: tuple[str, ...] = ()  # what each reference is (kontext.core.compose.ROLES), shown on the page
    variations: int = 1  # candidates to pick from (seeds seed, seed+1, ...), stored as sibling steps


@dataclass(frozen=True)
class Turn:
    """A planned step: where it goes in the tree, and the pipeline call that makes its image."""

    parent: int | None
    parent_image: str | None  # the parent's stored image, to check the parent is still the same picture
    request: TurnRequest
    extra: dict[str, Any]
    cacheable: bool = False  # a fixed-seed turn in a tree that started from an example
    root: int | None = None  # the first step of the tree it edits (None: a new picture from text)


def recorded_loras(node: Node) -> tuple[tuple[str, float], ...]:
    """The (name, strength) pairs a step was made with (its extra["loras"])."""
    return recorded(node.extra.get("loras"))


def recorded_references(node: Node) -> dict[str, tuple[str, ...]]:
    """The extra references and roles a step was made with, as EditOptions fields."""
    return {"more_references": tuple(node.extra.get("more_references") or ()),
            "roles": tuple(node.extra.get("reference_roles") or ())}




def check_painted_on(history: History, parent: int | None, painted_on: int | None) -> None:
    """A mask belongs to the picture it was painted on and to the steps made from it: any other
    picture (another tree, a sibling branch, an earlier step) is refused in words."""
    if painted_on is None or parent is None:
        return  # a mask without a record (an import's) still has to fit: the engine checks its size
    if painted_on not in history.nodes:
        raise UserError("the mask was painted on a picture this session no longer has: paint it again")
    if painted_on not in {n.id for n in history.path(parent)}:
        raise UserError(f"the mask was painted on step #{painted_on}, and step #{parent} is another picture: "
                        "paint the mask again on this picture, or clear the mask")


class Planning(Uploads):
    def resolve_seed(self, history: History, parent: int | None, opts: EditOptions) -> int:
        n = P.check_variations(opts.variations)
        seed = self._seed(history, parent, opts, n)
        return P.check_group_seed(seed, n) if n > 1 else seed

    def _seed(self, history: History, parent: int | None, opts: EditOptions, n: int) -> int:
        if opts.seed_mode not in SEED_MODES:
            raise UserError(f"seed_mode must be one of {SEED_MODES}, got {opts.seed_mode!r}")
        if opts.seed_mode == "fixed":
            if opts.seed is None:
                raise UserError("seed is empty: type a seed or choose a random seed")
            return P.check_seed(opts.seed)
        if opts.seed_mode == "locked":
            # Keep the seed of the step being edited (its own seed, if it was generated).
            node = None if parent is None else history.node(parent)
            if node is not None and node.seed is not None:
                return node.seed
            return P.check_seed(opts.seed) if opts.seed is not None else P.new_group_seed(n)
        return P.new_group_seed(n)

    def plan(self, key: str, prompt: str, opts: EditOptions = EditOptions(), *,
             parent: int | None | type[...] = ..., preview_every: int = 0) -> Turn:
        """Every rule for running a step, in one place: the parent, the context image (with a
        reference beside it), the draft size, the seed, and the engine's checks of every value.

        Raises ValueError for bad input before any GPU time is spent.
        """
        snapshot = self.history(key)
        parent_id = snapshot.current if parent is ... else parent
        if self.safety is not None and getattr(self.safety, "checks_images", True):
            preview_every = 0  # a preview would show what the content check has not seen yet
        snapshot.check_room(P.check_variations(opts.variations))
        context = None
        if parent_id is not None:
            context = self.image(key, parent_id).convert("RGB")
        extra: dict[str, Any] = {}
        if opts.draft:
            if opts.width is not None:
                raise UserError("a draft picks its own size: choose 'Match input' with draft")
            extra["draft"] = True
        reference, more = None, []
        if opts.reference is not None:
            reference = self.reference_image(key, opts.reference)
            extra["reference"] = opts.reference
        if opts.more_references:
            if len(opts.more_references) > MAX_MORE_REFERENCES:
                raise UserError(f"at most {MAX_MORE_REFERENCES + 1} reference images at once")
            more = [self.reference_image(key, r) for r in opts.more_references]
            extra["more_references"] = list(opts.more_references)
        if opts.roles:
            bad = [r for r in opts.roles if r not in ROLES]
            if bad:
                raise UserError(f"a reference's role must be one of {', '.join(ROLES)}, got {bad[0]!r}")
            extra["reference_roles"] = list(opts.roles)[: 1 + len(more)]
        mask = None
        if opts.mask is not None:
            mask, painted_on = self.stored_mask(key, opts.mask)
            check_painted_on(snapshot, parent_id, painted_on)
            extra["mask"] = opts.mask
        request = plan_step(self.engine, context, prompt, seed=self.resolve_seed(snapshot, parent_id, opts),
                            guidance=opts.guidance, steps=opts.steps, width=opts.width, height=opts.height,
                            reference=reference, draft=opts.draft, preview_every=preview_every, mask=mask,
                            loras=opts.loras, more_references=tuple(more), variations=opts.variations)
        if opts.width is None and self.engine.speed.aot and opts.mask is None:
            extra["bucket"] = f"{request.width}×{request.height}"  # the nearest compiled size, said on the page
        parent_image = None if parent_id is None else snapshot.node(parent_id).image
        root = None if parent_id is None else snapshot.path(parent_id)[0]
        from_example = root is not None and bool(root.extra.get("example"))
        cacheable = (from_example and opts.seed_mode == "fixed" and opts.variations == 1 and self.results is not None
                     and self.results.covers(request.prompt))
        return Turn(parent=parent_id, parent_image=parent_image, request=request, extra=extra, cacheable=cacheable,
                    root=None if root is None else root.id)
