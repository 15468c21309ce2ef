"""All of the page's wiring in one place. Handlers are thin: UI values in, `kontext` calls, UI values out.

Errors: `kontext` raises UserError for anything the user can fix; `friendly` shows its words as
they are (logged in one line), and turns any other exception, a bug, into "something went wrong"
with an id that finds its traceback in the log. Nothing here mutates a history: every change goes
through `Sessions`, which commits only complete turns.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from kontext.core import coverage
from kontext.core import params as P
from kontext.errors import Cancelled, UserError
from kontext.files import check_key
from kontext.model import Done, stream
from kontext.sessions import EditOptions, SessionRemoved, Sessions

from . import share, uploads, view
from .access import check_signed_in, uploaded_name, uploaded_path
from .layout import VARIANTS_LIVE_LABEL, Page, variants_label

log = logging.getLogger("kontext.ui")
# Session keys (kontext.files.store: 32 to 64 of these characters) and share tokens are bearer keys:
# any run that long is withheld from a log line (image names and hashes too; they identify nothing).
BEARER = re.compile(r"[A-Za-z0-9_-]{32,}")
WITHHELD = "<withheld>"
PREVIEW_EVERY = 2  # steps between live previews
# After a turn: empty the instruction box only if it still holds the instruction that ran.
CLEAR_IF_UNCHANGED = "(now, ran) => (ran !== null && ran !== undefined && now === ran) ? '' : now"
NOTE_BUSY = "An edit is running: your new instruction stays in the box; press Enter again when it ends."
NOTE_IF_BUSY = """() => {
  const stop = document.getElementById('stop-btn');
  const busy = stop && stop.offsetParent !== null;
  return busy ? 'NOTE' : '';
}""".replace("NOTE", NOTE_BUSY)


def inputs_by_name(handler: Callable, page: Page, besides: tuple[str, ...] = ("mode", "profile")) -> list[Any]:
    """The components a handler reads, in its parameters' order, found on the page by each
    parameter's name (an unknown name raises): the wiring cannot fall out of step with the handler.
    `besides`: parameters that are not page inputs (bound with functools.partial, or gradio's own)."""
    names = [n for n in inspect.signature(handler).parameters if n not in besides]
    return [getattr(page, n) for n in names]


def withheld(text: str) -> str:
    """`text` with every key-shaped run replaced (see BEARER)."""
    return BEARER.sub(WITHHELD, text)


class NoKeys(logging.Filter):
    """Keys never reach a log line: the message, its arguments and the traceback, with keys withheld.
    Handlers see the record after this logger's filters, so the text they print is already clean."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = withheld(record.getMessage()), None
        except Exception:  # noqa: BLE001 - a malformed log call: say so, quote nothing
            record.msg, record.args = f"(a log line of {record.pathname}:{record.lineno} did not format)", None
        if record.exc_info:
            record.exc_text = withheld(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = withheld(record.stack_info)
        return True


if not any(isinstance(f, NoKeys) for f in log.filters):
    log.addFilter(NoKeys())


def withhold_inputs(demo: gr.Blocks) -> None:
    """Gradio refuses a call whose inputs it cannot take (too few values; a value its component cannot
    read) with a message that quotes the values, a session key among them, and prints it with a
    traceback to the server's log. Here such a call gets a gr.Error that says what was wrong, which
    gradio does not print; our one log line (kontext.ui, NoKeys) says what it was, keys withheld."""
    validate, preprocess = demo.validate_inputs, demo.preprocess_data

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        if len(inputs) < len(block_fn.inputs):
            name = f" ({block_fn.name})" if block_fn.name and block_fn.name != "<lambda>" else ""
            raise gr.Error(f"An event handler{name} didn't receive enough input values (needed: "
                           f"{len(block_fn.inputs)}, got: {len(inputs)})", print_exception=False)
        validate(block_fn, inputs)

    async def preprocess_data(block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        try:
            return await preprocess(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - an input gradio could not take: the caller's to fix
            log.info("refused the inputs of %s: %s: %s", block_fn.name, type(e).__name__, str(e)[:300])
            # The message goes to the caller alone, who sent the values; escaped as toasts render HTML.
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None

    demo.validate_inputs, demo.preprocess_data = validate_inputs, preprocess_data


def friendly(fn: Callable) -> Callable:
    """Turn kontext's errors into gr.Error; never let an exception reach the user as a traceback."""

    def convert(e: Exception) -> Exception:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, Cancelled):
            return gr.Error("Stopped: nothing was changed.", title="Stopped", print_exception=False)
        if isinstance(e, UserError):
            log.info("refused %s: %s", getattr(fn, "__name__", "?"), str(e)[:300])
            # Toasts render HTML and messages may quote file names: escape tags, keep quotes readable.
            return gr.Error(html.escape(str(e), quote=False), print_exception=False)
        error_id = secrets.token_hex(4)
        log.exception("bug %s in %s", error_id, getattr(fn, "__name__", repr(fn)))
        return gr.Error(f"Something went wrong (error {error_id}); your history is unchanged. "
                        "The server's log has the details under that id.", print_exception=False)

    if inspect.isasyncgenfunction(fn):  # a live viewer's stream (ui/viewer.py)
        @functools.wraps(fn)
        async def agen(*args: Any, **kw: Any) -> Any:
            try:
                async for out in fn(*args, **kw):
                    yield out
            except Exception as e:  # noqa: BLE001
                raise convert(e) from e
        return agen

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kw: Any) -> Any:
            try:
                yield from fn(*args, **kw)
            except Exception as e:  # noqa: BLE001
                uploads.discard(*args, *kw.values())  # a refused upload is not kept (ui/uploads.py)
                raise convert(e) from e
        return gen

    @functools.wraps(fn)
    def plain(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            uploads.discard(*args, *kw.values())
            raise convert(e) from e
    return plain


def options(engine_profile: P.Profile, seed_mode: str, seed: Any, guidance: Any, steps: Any,
            size: str | None, reference: str | None = None, draft: bool = False,
            mask: str | None = None, loras: Any = (), more_references: tuple = (),
            roles: tuple = (), variations: Any = 1) -> EditOptions:
    """Build EditOptions from the page's controls (sizes by menu label)."""
    wh = None if draft else dict(P.size_choices(engine_profile)).get(size or "Match input", None)
    return EditOptions(
        seed_mode=seed_mode or "random",
        seed=None if seed is None or seed == "" else int(seed),
        guidance=None if guidance is None else float(guidance),
        steps=None if steps is None else int(steps),
        width=wh[0] if wh else None,
        height=wh[1] if wh else None,
        reference=reference or None,
        draft=bool(draft),
        mask=mask or None,
        loras=tuple((str(n), float(v)) for n, v in (loras or ()) if float(v) > 0),
        more_references=tuple(r for r in more_references if r),
        roles=tuple(r for r in roles if r),
        variations=1 if variations is None or variations == "" else P.check_variations(variations),
    )


class Wiring:
    def __init__(self, page: Page, sessions: Sessions, login: str = "none"):
        self.p = page
        self.s = sessions
        self.login = login
        # Sessions with a turn or an example chain (ui/showcase.py) in flight from this page.
        self.active: set[str] = set()
        p = page
        # Everything a redraw touches (`redraw` returns a dict keyed by these components).
        self.view_outputs = [p.canvas, p.gallery, p.status, p.branch, p.prev_branch, p.next_branch,
                             p.undo_btn, p.redo_btn, p.goto, p.tree, p.slider, p.cmp_a, p.cmp_b, p.drift, p.shown]
        if p.drift_plot is not None:
            self.view_outputs.append(p.drift_plot)
        self.view_outputs.append(p.variants)

    # --- drawing -------------------------------------------------------------------------------
    def redraw(self, key: str, shown: dict | None = None) -> dict[Any, Any]:
        """The page for `key`'s history. `shown` is what this tab already has (a per-tab gr.State),
        passed by undo and redo only: those never change which steps the timeline holds, so on a
        long chain they send a selection, not every thumbnail again. Every other action sends the
        whole timeline, so two quick actions of one tab can never leave a partial update applied to
        another action's timeline."""
        snap = view.snapshot(self.s, key)
        multi = bool(snap.branch)
        shown = shown if isinstance(shown, dict) else {}
        line, choices = tuple(map(tuple, snap.gallery)), tuple(map(tuple, snap.choices))
        group = tuple(map(tuple, snap.variants))
        fresh_line, fresh_choices = shown.get("timeline") != line, shown.get("choices") != choices
        fresh_group = shown.get("group") != group

        def menu(value: Any) -> Any:
            return gr.Dropdown(choices=snap.choices, value=value) if fresh_choices else gr.Dropdown(value=value)

        p = self.p
        return {
            p.canvas: snap.image,
            p.gallery: gr.Gallery(value=snap.gallery, selected_index=snap.selected) if fresh_line
            else gr.Gallery(selected_index=snap.selected),
            p.status: snap.status,
            p.branch: snap.branch,
            p.prev_branch: gr.Button(visible=multi),
            p.next_branch: gr.Button(visible=multi),
            p.undo_btn: gr.Button(interactive=snap.can_undo),
            p.redo_btn: gr.Button(interactive=snap.can_redo),
            p.goto: menu(snap.current),
            p.tree: snap.tree,
            p.slider: snap.compare,
            p.cmp_a: menu(snap.compare_ids[0]),
            p.cmp_b: menu(snap.compare_ids[1]),
            p.drift: f"⚠️ {snap.drift}" if snap.drift else "",
            p.variants: gr.Gallery(value=snap.variants, selected_index=snap.variant, visible=bool(group),
                                   label=variants_label(len(group) or P.MAX_VARIATIONS)) if fresh_group
            else gr.Gallery(selected_index=snap.variant, visible=bool(group)),
            p.shown: {"timeline": line, "choices": choices, "group": group},
            **({p.drift_plot: view.drift_svg(self.s.drift_curve(key))} if p.drift_plot is not None else {}),
        }

    # --- handlers ------------------------------------------------------------------------------
    def load(self, key: str | None) -> dict[Any, Any]:
        """Page load: reuse the browser's session key if it is ours, else make a new one.

        A session that cannot be read (a damaged file) must not lock its owner out: start afresh.
        One the server removed to free space is said so, on the page's status line.
        """
        removed = None
        try:
            key = check_key(key)
            self.s.store.touch(key)
            self.s.history(key)
        except SessionRemoved:
            removed = ("Your earlier session was removed from the server to free space (sessions unused the "
                       "longest go first); this is a new one.")
            key = self.s.new()
        except Exception:  # noqa: BLE001 - logged; the user gets a working page
            if key and isinstance(key, str):
                log.exception("session could not be read; starting a new one")
            key = self.s.new()
        # Outside the try: a failure while drawing is a bug to report, not a reason to hand the
        # browser a new key (that would lose its session).
        view_values = self.redraw(key)
        if removed:
            view_values[self.p.status] = removed
        try:
            self.s.sweep(keep=key)
        except Exception:  # noqa: BLE001 - housekeeping must never stop the page from loading
            log.exception("session sweep failed")
        return {self.p.key: key, **view_values}

    def upload(self, key: str, shown: Any, value: Any) -> dict[Any, Any]:
        path = uploaded_path(value, "image")
        # A picture we serve ourselves is the canvas's own value (a redraw landed while an upload was
        # in flight), not something the user uploaded: never store it again as a new chain.
        if not path or Path(path).resolve().parent == self.s.store.public_dir.resolve():
            return self.redraw(key)
        self.s.upload(key, path, name=uploaded_name(value))
        return {**self.redraw(key), **self.mask_cleared()}

    def mask_cleared(self) -> dict[Any, Any]:
        """A new picture (an upload, an example, an import): the tab's mask was painted on another one."""
        return {self.p.mask_name: None, self.p.mask_status: "", self.p.mask_editor: None}

    @property
    def mask_outputs(self) -> list[Any]:
        return [self.p.mask_name, self.p.mask_status, self.p.mask_editor]

    def running(self, key: str) -> bool:
        """A turn of this session runs or waits: started by this tab or another, or a chain between turns."""
        return self.s.queue.has_turn(key) or key in self.active

    def edit(self, key: str, shown: Any, prompt: str, seed_mode: str, seed: Any, guidance: Any, steps: Any,
             size: str, ref_name: str | None = None, draft: bool = False, mask_name: str | None = None,
             loras: Any = (), ref2_name: str | None = None, ref3_name: str | None = None, role1: str | None = None,
             role2: str | None = None, role3: str | None = None, variations: Any = 1, seed_before: Any = None,
             mode: str = "edit", profile: gr.OAuthProfile | None = None) -> Any:
        """Stream one turn: progress and previews, then the redrawn page.

        mode: edit, reroll, combine, refine, reanchor or text; `variations` (candidates to pick from)
        counts for a new instruction (edit, text) only: the others repeat a step, one picture each.
        `profile` is gradio's: the signed-in HF user."""
        check_signed_in(self.login, profile)
        key = check_key(key)  # before anything queues: the page's key is whatever the browser sent
        p = self.p
        if self.running(key):
            # This session's turn (or chain) runs, started by this tab or another: keep the words, and
            # let this tab's timer watch for the end, to show the result and the Edit button here too.
            yield {p.note: NOTE_BUSY, p.watch: gr.Timer(active=True)}
            return
        self.active.add(key)
        try:
            slots = (ref_name, ref2_name, ref3_name)
            refs = [r for r in slots if r]  # the filled slots, in order
            used_roles = [role for r, role in zip(slots, (role1, role2, role3), strict=True) if r]
            updates = self._turn(key, prompt, seed_mode, seed, guidance, steps, size, refs[0] if refs else None,
                                 draft, mask_name, loras, mode, tuple(refs[1:]), tuple(used_roles),
                                 variations if mode in ("edit", "text") else 1)
            if not seed_before:
                yield from updates
                return
            # An example's own turn: its last update (done or stopped) also brings the visitor's seed back.
            last = next(updates, None)
            for update in updates:
                yield last
                last = update
            if last is not None:
                # Stopped (no p.ran: see _turn): the choice is restored but still remembered. With this
                # tab's own Stop, gradio drops this update (the event was cancelled) and runs `failed`,
                # which must still find the choice to put it back; a Stop from another tab ends this
                # event normally and this update is what the page gets.
                stopped = p.ran not in last
                yield {**last, **self.seed_restored(seed_before, forget=not stopped)}
        finally:
            self.active.discard(key)

    def _turn(self, key: str, prompt: str, seed_mode: str, seed: Any, guidance: Any, steps: Any, size: str,
              reference: str | None, draft: bool, mask: str | None, loras: Any, mode: str,
              more: tuple = (), roles: tuple = (), variations: Any = 1) -> Any:
        p = self.p
        if mode in ("text", "combine"):
            reference = mask = None  # nothing to put it beside or paint on / the combined steps had their own
            more = roles = ()
        if mask:
            reference, draft, size = None, False, None  # a masked edit keeps the picture, alone, at its size
            more = roles = ()
        opts = options(self.s.engine.profile, seed_mode, seed, guidance, steps, size, reference,
                       draft and mode != "refine", mask, loras, more, roles, variations)  # refine: size from the menu
        call = {"reroll": self.s.reroll, "combine": self.s.combine, "refine": self.s.refine,
                "reanchor": self.s.reanchor}.get(mode)
        if call is not None:
            run = functools.partial(call, key, opts)
        else:
            run = functools.partial(self.s.edit, key, prompt, opts, **({"parent": None} if mode == "text" else {}))
        busy = {p.edit_btn: gr.Button(visible=False), p.stop_btn: gr.Button(visible=True)}
        n = opts.variations
        # The grid makes room for the candidates to come (their live previews fill it), or goes while
        # a single picture is made; the turn's end (or Stop) draws it again. The tab's record of what
        # it shows is dropped: the grid no longer shows the step's group.
        grid = (gr.Gallery(value=view.preview_cells((None,) * n), selected_index=None, visible=True,
                           label=VARIANTS_LIVE_LABEL) if n > 1 else gr.Gallery(visible=False))
        yield {p.status: "Starting…", p.note: "", **busy, p.variants: grid, p.shown: None}

        def turn(report: Any, cancel: Any) -> Any:
            return run(on_step=report, cancel=cancel, preview_every=PREVIEW_EVERY)

        # The box is emptied only if it still holds what ran (see wire): what the user typed while
        # the edit ran stays.
        ran = prompt if mode in ("edit", "text") else None
        try:
            for item in stream(turn):
                if isinstance(item, Done):
                    _, node = item.value
                    yield {**self.redraw(key), p.seed: node.seed, p.ran: ran, **self.idle()}
                    return
                if item.total == 0:
                    ahead = "1 edit" if item.waiting == 1 else f"{item.waiting} edits"
                    status = f"Waiting for the GPU: {ahead} ahead of this one…"
                else:
                    status = f"Step {item.step} of {item.total}…" + (f" ({n} variations)" if n > 1 else "")
                yield {p.status: status, **busy, **({p.canvas: item.preview} if item.preview is not None else {}),
                       **({p.variants: gr.Gallery(value=view.preview_cells(item.previews), selected_index=None)}
                          if n > 1 and item.previews else {})}
        except Cancelled:
            # Stop is a normal end, not an error: the committed state and the Edit button come back, and
            # the Stop handler (this tab's or another's) says "Stopped" once.
            yield {**self.redraw(key), **self.idle()}

    def seed_restored(self, before: Any, forget: bool = True) -> dict[Any, Any]:
        """After an example's own turn: the seed mode (and a fixed seed) the visitor had before it."""
        mode, seed = before
        return {self.p.seed_mode: mode, **({self.p.seed_before: None} if forget else {}),
                **({self.p.seed: seed} if mode == "fixed" else {})}

    def watch(self, key: str, shown: Any = None) -> dict[Any, Any]:
        """A tick of the tab's timer while a turn of its session runs elsewhere: nothing while it runs;
        once it has ended (and been committed), its result, the Edit button, and the timer off."""
        if self.running(check_key(key)):
            return {}
        return {**self.redraw(key), **self.idle(), self.p.watch: gr.Timer(active=False)}

    def busy(self) -> dict[Any, Any]:
        """Stop shown, Edit hidden: the moment a turn is asked for."""
        return {self.p.edit_btn: gr.Button(visible=False), self.p.stop_btn: gr.Button(visible=True)}

    def idle(self) -> dict[Any, Any]:
        """The Edit button back, Stop hidden, no "an edit is running" note."""
        return {self.p.edit_btn: gr.Button(visible=True), self.p.stop_btn: gr.Button(visible=False),
                self.p.note: ""}

    def stopped(self, key: str, shown: Any = None, seed: Any = None) -> dict[Any, Any]:
        """After Stop: show the committed state again (a preview never stays on screen). Gradio has
        cancelled this tab's own turn; a turn of the session started in another tab stops here. The
        seed goes back out as it was: gradio marks the outputs of a cancelled event with an error
        pill, and this update replaces it."""
        self.s.stop(key)  # the session's record of its turn: started here, in another tab, the API or MCP
        gr.Info("Stopped: nothing was changed.")  # a queued event, so the toast reaches the page
        return {**self.redraw(key), **self.idle(), self.p.seed: seed}

    def failed(self, key: str, shown: Any = None, seed: Any = None, seed_mode: Any = None,
               seed_before: Any = None) -> dict[Any, Any]:
        """After a turn failed or was stopped (gradio runs this after it marked the turn's outputs
        with its red pill, whichever way the turn ended): the committed state, the Edit button, and
        the seed boxes sent back out so no pill stays on them. An example's own turn that did not
        finish still gives the visitor's seed mode back."""
        seeds = {self.p.seed: seed, self.p.seed_mode: seed_mode}
        if seed_before:
            seeds.update(self.seed_restored(seed_before))
        return {**self.redraw(key), **self.idle(), **seeds}

    def undo(self, key: str, shown: Any = None) -> dict[Any, Any]:
        self.s.undo(key)
        return self.redraw(key, shown)

    def redo(self, key: str, shown: Any = None) -> dict[Any, Any]:
        self.s.redo(key)
        return self.redraw(key, shown)

    def branch(self, offset: int) -> Callable[[str, Any], dict[Any, Any]]:
        def move(key: str, shown: Any = None) -> dict[Any, Any]:
            self.s.switch_branch(key, offset)
            return self.redraw(key)
        return move

    def select_timeline(self, key: str, shown: Any, evt: gr.SelectData) -> dict[Any, Any]:
        line = view.timeline(self.s.history(key))
        if evt.index is None or not 0 <= int(evt.index) < len(line):
            return self.redraw(key)
        self.s.jump(key, line[int(evt.index)].id)
        return self.redraw(key)

    def select_variation(self, key: str, shown: Any, seed_mode: str, evt: gr.SelectData) -> dict[Any, Any]:
        """A cell of the variations grid clicked (or a key 1-4): that candidate becomes the current step.
        While a turn of the session runs, the grid shows the coming candidates' previews: nothing to pick.
        The seed box then shows the picked candidate's seed, as it shows the current step's after a turn,
        unless the visitor fixed a seed of their own: the next instruction keeps that one."""
        if self.running(check_key(key)):
            return {}
        group = self.s.history(key).group()
        if evt.index is None or not 0 <= int(evt.index) < len(group):
            return self.redraw(key)
        picked = group[int(evt.index)]
        self.s.pick(key, picked.id)
        return {**self.redraw(key), **({} if seed_mode == "fixed" else {self.p.seed: picked.seed})}

    def goto(self, key: str, shown: Any, node_id: Any) -> dict[Any, Any]:
        if node_id is not None:
            self.s.jump(key, int(node_id))
        return self.redraw(key)

    def compare(self, key: str, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return gr.skip()
        return (self.s.image_path(key, int(a)), self.s.image_path(key, int(b)))

    def compare_preset(self, which: str) -> Callable[[str], list[Any]]:
        def preset(key: str) -> list[Any]:
            h = self.s.history(key)
            cur = h.current_node
            if cur is None:
                return [gr.skip()] * 3
            if which == "original":
                other = h.path()[0]
            else:
                other = h.node(cur.parent) if cur.parent is not None else cur
            return [self.compare(key, other.id, cur.id), other.id, cur.id]
        return preset

    def load_mask_canvas(self, key: str) -> Any:
        """The mask editor, empty, over the current picture."""
        path = self.s.image_path(key)
        return {"background": path, "layers": [], "composite": path}

    def set_mask(self, key: str, value: Any) -> tuple[str, str]:
        """Store what was painted on the current picture as the mask the next edits use (the tab
        keeps its name). The layers arrive as uploaded files (preprocess=False): kontext reads them by
        the one mask rule, checking each one's size and count before decoding it."""
        layers = (value or {}).get("layers") if isinstance(value, dict) else None
        if not layers:
            raise UserError("nothing is painted yet: press Paint on the current picture, then paint over the part "
                            "the instruction may change")
        if not isinstance(layers, list):
            raise UserError("mask: the painted layers must be a list of pictures")
        paths = [uploaded_path(layer, "mask") for layer in layers]
        name = self.s.add_mask(key, paths)
        share_ = round(100 * coverage(self.s.mask_image(key, name)))
        return name, (f"**Mask set**: the next edits change only the painted {share_} % of the picture; "
                      "everything else stays exactly as it is. *Clear mask* to edit everywhere.")

    def set_reference(self, key: str, value: Any, slot: int = 1) -> tuple[str | None, str]:
        """Store the reference once; edits then name it (the tab keeps the name in a gr.State)."""
        path = uploaded_path(value, "reference")
        if not path:
            return None, ""
        label = "Reference set" if slot == 1 else f"Reference {slot} set"
        return self.s.add_reference(key, path), f"**{label}**: the next edits use it."

    def export(self, key: str, scope: str, request: gr.Request | None = None) -> list[str]:
        return share.export_files(self.s, key, scope or "path", address=share.client_address(request))

    def import_zip(self, key: str, shown: Any, path: str | None) -> dict[Any, Any]:
        if not path:
            raise UserError("no file was uploaded")
        gr.Info(self.s.import_zip(key, path).message)
        return {**self.redraw(key), **self.mask_cleared()}

    def text_prompt(self, old: str, new: str) -> str:
        return P.text_replacement_prompt(old or "", new or "")

    def start_over(self, key: str, shown: Any, confirmed: bool) -> dict[Any, Any]:
        if not confirmed:
            return {}
        self.s.clear(key)
        return self.redraw(key)

    # --- wiring --------------------------------------------------------------------------------
    def wire(self, more_runs: Callable[[dict], list] | None = None) -> None:
        """Register every event. `more_runs(gpu_options)` registers other turn-running events (the
        example chains), which Stop must cancel too."""
        p, f = self.p, friendly
        views = self.view_outputs
        edit_outputs = [*views, p.seed, p.seed_mode, p.seed_before, p.ran, p.note, p.edit_btn, p.stop_btn, p.watch]
        controls = inputs_by_name(self.edit, p)
        # Page events get "ui_" names so the public endpoints (ui/api.py) keep the plain ones.
        # Turns wait in kontext's TurnQueue, not gradio's: start each handler at once (up to what the
        # TurnQueue can admit, plus one to say "busy"), so waiting and refusals are ours to report.
        q = self.s.queue
        gpu = dict(concurrency_id="gpu", concurrency_limit=q.slots + q.max_waiting + 1,
                   api_visibility="undocumented")

        def after_busy(trigger: Any, fn: Callable, name: str, inputs: list = controls,
                       outputs: list = edit_outputs) -> Any:
            """Stop shows the moment a button asks for a turn, even while gradio's queue holds it;
            the turn starts after that (a .then), so its own last update always comes last."""
            return trigger(self.busy, None, [p.edit_btn, p.stop_btn], queue=False, show_progress="hidden",
                           api_visibility="private").then(fn, inputs, outputs, api_name=name, **gpu)

        self.after_busy = after_busy
        runs = [
            after_busy(p.edit_btn.click, f(self.edit), "ui_edit"),
            after_busy(p.reroll_btn.click, f(functools.partial(self.edit, mode="reroll")), "ui_reroll"),
            after_busy(p.t2i_btn.click, f(functools.partial(self.edit, mode="text")), "ui_text"),
            after_busy(p.combine_btn.click, f(functools.partial(self.edit, mode="combine")), "ui_combine"),
            after_busy(p.refine_btn.click, f(functools.partial(self.edit, mode="refine")), "ui_refine"),
            after_busy(p.reanchor_btn.click, f(functools.partial(self.edit, mode="reanchor")), "ui_reanchor"),
            # Enter: straight to the turn. Gradio runs one submit at a time, so Enter during a turn is
            # dropped rather than refused (the words stay in the box, NOTE_IF_BUSY says so).
            p.prompt.submit(f(self.edit), controls, edit_outputs, api_name="ui_edit_submit", **gpu),
        ]
        for run in (runs[0], runs[2], runs[-1]):  # edit, text-to-image, Enter: their instruction is the box's
            run.success(None, [p.prompt, p.ran], [p.prompt], js=CLEAR_IF_UNCHANGED, api_visibility="private")
        # Typed and submitted while an edit runs: gradio runs one submit at a time and drops this one,
        # so say that the words are kept, and keep them (CLEAR_IF_UNCHANGED).
        p.prompt.submit(None, None, [p.note], js=NOTE_IF_BUSY, api_visibility="private")
        if more_runs is not None:
            runs += more_runs(gpu)
        for run in runs:  # after an error, put the buttons and the committed image back
            run.failure(f(self.failed), [p.key, p.shown, p.seed, p.seed_mode, p.seed_before],
                        [*views, p.edit_btn, p.stop_btn, p.note, p.seed, p.seed_mode, p.seed_before], queue=False,
                        api_visibility="private")
        p.stop_btn.click(f(self.stopped), [p.key, p.shown, p.seed], [*views, p.edit_btn, p.stop_btn, p.note, p.seed],
                         cancels=runs,
                         concurrency_id="stop", concurrency_limit=None, api_name="ui_stop",
                         api_visibility="undocumented")
        self._wire_steps()
        self._wire_inputs()

    def _wire_steps(self) -> None:
        """Events that show or move between steps without the model: the watch timer, uploads,
        undo/redo, branches, the timeline, the compare slider."""
        p, f, views = self.p, friendly, self.view_outputs
        nav = dict(queue=False, api_visibility="undocumented")
        p.watch.tick(f(self.watch), [p.key, p.shown], [*views, p.edit_btn, p.stop_btn, p.note, p.watch],
                        api_name="ui_watch", show_progress="hidden", **nav)
        # Uploads decode and re-encode up to 40 MP: queued, two at a time, never blocking undo/redo.
        # preprocess=False: the raw upload reaches kontext.core.images, which answers every bad file itself
        # (gradio's own decoding would fail first, with no message on the page).
        # trigger_mode="multiple": gradio's default for an upload ("once") drops, without a word, a picture
        # dropped while the last one is still being stored; each is stored, as a tree of its own.
        up = p.canvas.upload(f(self.upload), [p.key, p.shown, p.canvas],
                             [*views, *self.mask_outputs], api_name="ui_upload",
                             preprocess=False, trigger_mode="multiple",
                             concurrency_id="upload", concurrency_limit=2, api_visibility="undocumented")
        # After a refusal, draw the committed state again (drops the rejected picture from the canvas).
        up.failure(f(self.redraw), [p.key, p.shown], views, queue=False, api_visibility="private")
        p.undo_btn.click(f(self.undo), [p.key, p.shown], views, api_name="ui_undo", **nav)
        p.redo_btn.click(f(self.redo), [p.key, p.shown], views, api_name="ui_redo", **nav)
        p.prev_branch.click(f(self.branch(-1)), [p.key, p.shown], views, api_name="ui_prev_branch", **nav)
        p.next_branch.click(f(self.branch(+1)), [p.key, p.shown], views, api_name="ui_next_branch", **nav)
        p.gallery.select(f(self.select_timeline), [p.key, p.shown], views, api_name="ui_select", **nav)
        p.variants.select(f(self.select_variation), [p.key, p.shown, p.seed_mode], [*views, p.seed],
                          api_name="ui_pick", **nav)
        p.goto.input(f(self.goto), [p.key, p.shown, p.goto], views, api_name="ui_goto", **nav)
        p.cmp_a.input(f(self.compare), [p.key, p.cmp_a, p.cmp_b], [p.slider], api_name="ui_cmp_a", **nav)
        p.cmp_b.input(f(self.compare), [p.key, p.cmp_a, p.cmp_b], [p.slider], api_name="ui_cmp_b", **nav)
        trio = [p.slider, p.cmp_a, p.cmp_b]
        p.cmp_prev.click(f(self.compare_preset("previous")), [p.key], trio, api_name="ui_cmp_prev", **nav)
        p.cmp_orig.click(f(self.compare_preset("original")), [p.key], trio, api_name="ui_cmp_orig", **nav)

    def _wire_inputs(self) -> None:
        """Events that prepare a turn or move files: references, LoRA sliders, the mask painter, the
        text helper, export, import, start over."""
        p, f, views = self.p, friendly, self.view_outputs
        nav = dict(queue=False, api_visibility="undocumented")
        # The visitor chose a seed mode, or typed a seed, after an example set its own: that choice stays.
        p.seed_mode.input(lambda: None, None, [p.seed_before], queue=False, api_visibility="private")
        p.seed.input(lambda: None, None, [p.seed_before], queue=False, api_visibility="private")
        for n, image, name in ((2, p.ref_image2, p.ref2_name), (3, p.ref_image3, p.ref3_name)):
            more_ref = image.upload(f(functools.partial(self.set_reference, slot=n)), [p.key, image],
                                    [name, p.ref_status],
                                    concurrency_id="upload", concurrency_limit=2, preprocess=False,
                                    trigger_mode="always_last", api_visibility="private")
            more_ref.failure(lambda: (None, None, ""), None, [image, name, p.ref_status], queue=False,
                             api_visibility="private")
            image.clear(lambda: (None, ""), None, [name, p.ref_status], queue=False,
                        api_visibility="private")
        # A slot holds one picture: one dropped while the last is stored waits, then is stored after it
        # ("always_last"; gradio's default would skip it and the edit would use the picture no longer shown).
        ref = p.ref_image.upload(f(self.set_reference), [p.key, p.ref_image], [p.ref_name, p.ref_status],
                                    api_name="ui_reference", concurrency_id="upload", concurrency_limit=2,
                                    preprocess=False, trigger_mode="always_last", api_visibility="undocumented")
        ref.failure(lambda: (None, None, ""), None, [p.ref_image, p.ref_name, p.ref_status], queue=False,
                    api_visibility="private")  # drop the rejected picture
        # Like the LoRA strengths: a State the turns read, so the page's edit endpoint keeps its parameters.
        p.variations_choice.change(lambda n: n, [p.variations_choice], [p.variations], queue=False,
                                   api_visibility="private")
        sliders = p.lora_sliders
        for slider in sliders:  # the strengths above 0, as one value the turns read
            slider.change(lambda *vs: [(n, v) for n, v in zip(p.lora_names, vs, strict=True) if v > 0], sliders,
                          [p.loras], queue=False, api_visibility="private")
        p.mask_load.click(f(self.load_mask_canvas), [p.key], [p.mask_editor], api_name="ui_mask_load", **nav)
        p.mask_use.click(f(self.set_mask), [p.key, p.mask_editor], [p.mask_name, p.mask_status],
                            api_name="ui_mask_use", concurrency_id="upload", concurrency_limit=2, preprocess=False,
                            api_visibility="undocumented")
        p.mask_clear.click(lambda: (None, "", None), None, self.mask_outputs,
                              queue=False, api_visibility="private")
        p.ref_image.clear(lambda: (None, ""), None, [p.ref_name, p.ref_status], queue=False,
                             api_visibility="private")
        p.text_btn.click(f(self.text_prompt), [p.old_text, p.new_text], [p.prompt], api_name="ui_text_prompt",
                            **nav)
        p.export_btn.click(f(self.export), [p.key, p.scope], [p.files], api_name="ui_export",
                              concurrency_id="files", api_visibility="undocumented")
        p.import_btn.upload(f(self.import_zip), [p.key, p.shown, p.import_btn], [*views, *self.mask_outputs],
                            api_name="ui_import",
                               concurrency_id="files", api_visibility="undocumented")
        p.new_btn.click(
            f(self.start_over), [p.key, p.shown, p.confirm], views,
            js="(k, s, c) => [k, s, confirm('Start over? This deletes every step of this session.')]",
            api_name="ui_start_over", **nav,
        )
