"""The owner's page, for showing work: example pictures and chains, the presentation view, share links.

Handlers are thin like those in ui/events.py (which they extend: the same redraw, busy/idle and
error handling); the rules live in kontext (examples, sharing, sessions).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from kontext.errors import Cancelled
from kontext.model import Done, stream
from kontext.sessions import EditOptions
from kontext.showcase import Catalog

from . import present as P
from . import share
from .access import check_signed_in
from .events import PREVIEW_EVERY, Wiring, friendly

# The link is made in the browser from its own address (behind a Space's proxy the server cannot
# know the address visitors use).
SHARE_LINK = ("(t) => t ? window.location.origin + window.location.pathname.replace(/\\/$/, '') "
              "+ '/view?share=' + t : ''")


class Showcase:
    def __init__(self, wiring: Wiring, catalog: Catalog):
        self.w = wiring
        self.s = wiring.s
        self.p = wiring.p
        self.catalog = catalog

    # --- examples ---------------------------------------------------------------------------------
    def example(self, key: str, shown: Any, index: Any, seed_mode: str = "random", seed: Any = 0,
                seed_before: Any = None) -> dict[Any, Any]:
        """A new chain from the example's picture, its instruction and seed filled in (press Edit).
        The example's seed is for its own turn: the visitor's seed choice comes back after it."""
        ex = self.catalog.examples[int(index)]
        self.s.upload(key, ex.image, name=ex.image.name, example=ex.id)
        p = self.p
        before = seed_before or [seed_mode, seed]  # a second example keeps the first one's remembered choice
        return {**self.w.redraw(key), **self.w.mask_cleared(), p.prompt: ex.prompt, p.seed_mode: "fixed",
                p.seed: ex.seed, p.seed_before: before,
                p.status: f"**{ex.title}** ready: press *Edit* to run the instruction (seed {ex.seed}, the "
                          "example's, so a result made before comes back at once; your seed setting comes "
                          "back after it)."}

    def chain(self, key: str, shown: Any, index: Any, profile: gr.OAuthProfile | None = None) -> Any:
        """Run an example chain: its picture as a new chain, then each instruction in turn; every
        finished turn lands in the timeline before the next starts. Stop ends it after the turns so far."""
        check_signed_in(self.w.login, profile)
        chain = self.catalog.chains[int(index)]
        if self.w.running(key):
            # Not an error: this tab keeps (or gets) Stop and watches for the running turn's end (ui/events.py).
            gr.Warning("An edit of this session is already running: start the example when it ends.")
            yield {self.p.note: "", self.p.watch: gr.Timer(active=True)}
            return
        self.w.active.add(key)  # an Enter between two turns must not slip its own edit in
        try:
            yield from self._run_chain(key, chain)
        finally:
            self.w.active.discard(key)

    def _run_chain(self, key: str, chain: Any) -> Any:
        p, n = self.p, len(chain.prompts)
        busy = self.w.busy()
        self.s.upload(key, chain.image, name=chain.image.name, example=chain.id)
        yield {**self.w.redraw(key), p.status: f"Chain **{chain.title}**: starting ({n} instructions)…", **busy}
        opts = EditOptions(seed_mode="fixed", seed=chain.seed)
        for i, prompt in enumerate(chain.prompts, 1):
            head = f"Chain **{chain.title}**, instruction {i} of {n} (“{prompt}”)"

            def turn(report: Any, cancel: Any, prompt: str = prompt) -> Any:
                return self.s.edit(key, prompt, opts, on_step=report, cancel=cancel, preview_every=PREVIEW_EVERY)

            try:
                for item in stream(turn):
                    if isinstance(item, Done):
                        landed = {**self.w.redraw(key), **busy}
                        if i < n:
                            landed[p.status] = f"{head}: done; next instruction…"
                        yield landed
                        break
                    status = (f"{head}: waiting for the GPU…" if item.total == 0
                              else f"{head}: step {item.step} of {item.total}…")
                    yield {p.status: status, **({p.canvas: item.preview} if item.preview is not None else {})}
            except Cancelled:  # Stop ends the chain after the turns so far: a normal end, not an error
                break
        yield {**self.w.redraw(key), p.seed: chain.seed, **self.w.idle()}

    # --- presentation --------------------------------------------------------------------------------
    def show(self, key: str, h: Any, index: int, visible: bool = True) -> dict[Any, Any]:
        p = self.p
        sl = P.slide(self.s, key, h, index)
        return {p.present: gr.Column(visible=visible), p.present_slider: sl.pair,
                p.present_caption: sl.caption, p.present_count: sl.count, p.present_at: sl.index}

    def present(self, key: str) -> dict[Any, Any]:
        return self.show(key, self.s.history(key), 0)

    def move(self, delta: int) -> Any:
        def go(key: str, at: Any) -> dict[Any, Any]:
            return self.show(key, self.s.history(key), int(at or 0) + delta)
        return go

    # --- share links ---------------------------------------------------------------------------------
    def share(self, key: str, names: bool = False, live: bool = False, request: gr.Request | None = None) -> str:
        return self.s.share(key, names=bool(names), live=bool(live), address=share.client_address(request)).token

    def unshare(self, key: str) -> tuple[str, str]:
        n = self.s.unshare(key)
        gr.Info("Sharing stopped: the link no longer works." if n else "This session had no share links.")
        return "", ""

    # --- wiring ------------------------------------------------------------------------------------
    def wire_runs(self, gpu: dict) -> list:
        """The turn-running events (Stop cancels them with the others)."""
        p = self.p
        if p.chains is None:
            return []
        outs = [*self.w.view_outputs, p.seed, p.edit_btn, p.stop_btn, p.note, p.watch]
        return [self.w.after_busy(p.chains.click, friendly(self.chain), "ui_chain", [p.key, p.shown, p.chains],
                                  outs)]

    def wire(self) -> None:
        p, f = self.p, friendly
        nav = dict(queue=False, api_visibility="undocumented")
        if p.examples is not None:
            p.examples.click(f(self.example), [p.key, p.shown, p.examples, p.seed_mode, p.seed, p.seed_before],
                             [*self.w.view_outputs, *self.w.mask_outputs, p.prompt, p.seed_mode, p.seed,
                              p.seed_before],
                             api_name="ui_example",
                                concurrency_id="upload", concurrency_limit=2, api_visibility="undocumented")
        slides = [p.present, p.present_slider, p.present_caption, p.present_count, p.present_at]
        p.present_btn.click(f(self.present), [p.key], slides, api_name="ui_present", **nav)
        p.present_prev.click(f(self.move(-1)), [p.key, p.present_at], slides, api_name="ui_present_prev", **nav)
        p.present_next.click(f(self.move(+1)), [p.key, p.present_at], slides, api_name="ui_present_next", **nav)
        p.present_close.click(lambda: gr.Column(visible=False), None, [p.present], queue=False,
                                 api_visibility="private")
        p.share_btn.click(f(self.share), [p.key, p.share_names, p.share_live], [p.share_token], api_name="ui_share",
                          **nav).success(None, [p.share_token], [p.share_link], js=SHARE_LINK,
                                         api_visibility="private")
        # Queued (not `nav`): its toast needs the queue's channel to reach the page.
        p.unshare_btn.click(f(self.unshare), [p.key], [p.share_token, p.share_link], api_name="ui_unshare",
                               concurrency_id="share", concurrency_limit=None, api_visibility="undocumented")
