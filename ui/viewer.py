"""The shared view (`/view?share=TOKEN`): one tree of one session, read-only.

A page of its own: it has no edit, undo or delete control at all, and its events take the share
token, never a session key (the server resolves the token; the key never reaches the visitor). A
visitor's position (which step they look at) is their own: it lives in the page, not in the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from kontext.errors import UnknownShare
from kontext.sessions import Sessions

from . import present as P
from . import share, view
from .events import friendly
from .layout import Page, render_compare, render_present, render_timeline
from .live import LiveRoom


@dataclass(eq=False)
class SharePage(Page):
    """The share view's page: the main page's shared parts, and its own."""

    message: gr.Markdown | None = None  # why a link does not work
    token: gr.State | None = None  # the share token from the address
    at: gr.State | None = None  # the step the viewer shows
    body: gr.Column | None = None
    download_btn: gr.Button | None = None
    live_badge: gr.Markdown | None = None  # says whether the view follows the owner live (ui/live.py)


class Viewer:
    def __init__(self, sessions: Sessions):
        self.s = sessions
        self.p = SharePage()
        self.room = LiveRoom(sessions, self.draw)

    def _view(self, token: Any, at: Any = None) -> tuple[str, Any]:
        share_, h = self.s.shared(token, int(at) if at is not None else None)
        return share_.key, h

    def draw(self, token: Any, at: Any = None) -> dict[Any, Any]:
        p = self.p
        try:
            key, h = self._view(token, at)
        except UnknownShare as e:
            why = str(e).split(": ", 1)[-1]  # the reason, without "this share link does not work"
            return {p.message: f"### This link does not work\n{why[:1].upper()}{why[1:]}. Ask whoever sent it "
                                  "for a new one.",
                    p.body: gr.Column(visible=False), p.token: None}
        snap = view.snapshot(self.s, key, h)
        return {
            p.message: "", p.body: gr.Column(visible=True), p.token: token, p.at: h.current,
            p.canvas: snap.image, p.status: snap.status.replace("Type an instruction to edit it.", ""),
            p.gallery: gr.Gallery(value=snap.gallery, selected_index=snap.selected),
            p.goto: gr.Dropdown(choices=snap.choices, value=snap.current), p.tree: snap.tree,
            p.slider: snap.compare, p.cmp_a: gr.Dropdown(choices=snap.choices, value=snap.compare_ids[0]),
            p.cmp_b: gr.Dropdown(choices=snap.choices, value=snap.compare_ids[1]),
        }

    def load(self, request: gr.Request) -> dict[Any, Any]:
        return self.draw(request.query_params.get("share") if request is not None else None)

    async def follow(self, token: Any, request: gr.Request) -> AsyncIterator[dict[Any, Any]]:
        """A live link's stream of the owner's changes (ui/live.py); a frozen link's ends at once.
        The token is the page's (its address, as the page's load read it)."""
        if token is None and request is not None:
            token = request.query_params.get("share")
        async for update in self.room.follow(token, self.p):
            yield update

    def select(self, token: Any, at: Any, evt: gr.SelectData) -> dict[Any, Any]:
        key, h = self._view(token, at)
        line = view.timeline(h)
        if evt.index is None or not 0 <= int(evt.index) < len(line):
            return self.draw(token, at)
        return self.draw(token, line[int(evt.index)].id)

    def compare(self, token: Any, a: Any, b: Any) -> Any:
        if a is None or b is None:
            return gr.skip()
        key, h = self._view(token)
        return (self.s.store.public_path(key, h.node(int(a)).image).as_posix(),
                self.s.store.public_path(key, h.node(int(b)).image).as_posix())

    def preset(self, which: str) -> Any:
        def pick(token: Any, at: Any) -> list[Any]:
            key, h = self._view(token, at)
            cur = h.current_node
            other = h.path()[0] if which == "original" else (h.node(cur.parent) if cur.parent is not None else cur)
            return [self.compare(token, other.id, cur.id), other.id, cur.id]
        return pick

    def slide(self, delta: int | None) -> Any:
        def go(token: Any, at: Any, index: Any) -> dict[Any, Any]:
            key, h = self._view(token, at)
            p = self.p
            sl = P.slide(self.s, key, h, 0 if delta is None else int(index or 0) + delta)
            return {p.present: gr.Column(visible=True), p.present_slider: sl.pair,
                    p.present_caption: sl.caption, p.present_count: sl.count, p.present_at: sl.index}
        return go

    def download(self, token: Any, at: Any, request: gr.Request | None = None) -> Any:
        """The files, shown once there are some (an empty Downloads box would take room for nothing).
        The link's visitors together take one visitor's share of the waiting exports' space."""
        key, h = self._view(token, at)
        files = share.export_files(self.s, key, "tree", history=h,  # exactly the tree the token was checked for
                                   visitor=f"link {token}", address=share.client_address(request))
        return gr.File(value=files, visible=True)

    def render(self, title: str) -> None:
        p = self.p
        gr.Markdown(f"# {title}\nA shared, read-only view of one picture's steps.", elem_id="view-title")
        p.message = gr.Markdown("", elem_id="view-message")
        p.live_badge = gr.Markdown("", elem_id="view-live")
        p.token, p.at = gr.State(None), gr.State(None)
        with gr.Column(visible=False, elem_id="view-body") as body:
            p.body = body
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=320):
                    p.canvas = gr.Image(label="Step", type="filepath", interactive=False, height=520,
                                        elem_id="view-canvas", buttons=["download", "fullscreen"])
                    p.status = gr.Markdown("", elem_id="view-status")
                    with gr.Row():
                        p.present_btn = gr.Button("Present", size="sm", elem_id="present-btn")
                        p.download_btn = gr.Button("Download ZIP + GIF + contact sheet", size="sm",
                                                      elem_id="view-download")
                    p.files = gr.File(label="Downloads", file_count="multiple", interactive=False, height=110,
                                         elem_id="view-files", visible=False)
                with gr.Column(scale=2, min_width=300):
                    with gr.Tabs():
                        with gr.Tab("Timeline"):
                            render_timeline(p, "Timeline: click a step to look at it")
                        with gr.Tab("Compare", elem_id="compare-tab"):
                            render_compare(p)
            render_present(p)

    def wire(self, demo: gr.Blocks) -> None:
        p, f = self.p, friendly
        outs = [p.message, p.body, p.token, p.at, p.canvas, p.status, p.gallery, p.goto, p.tree,
                p.slider, p.cmp_a, p.cmp_b]
        nav = dict(queue=False, api_visibility="private")
        demo.load(f(self.load), None, outs, **nav).then(
            f(self.follow), [p.token], [*outs, p.live_badge], concurrency_id="live", concurrency_limit=None,
            show_progress="hidden", api_name="view_follow", api_visibility="undocumented")
        p.gallery.select(f(self.select), [p.token, p.at], outs, **nav)
        p.goto.input(f(self.draw), [p.token, p.goto], outs, **nav)
        for dd in (p.cmp_a, p.cmp_b):
            dd.input(f(self.compare), [p.token, p.cmp_a, p.cmp_b], [p.slider], **nav)
        p.cmp_prev.click(f(self.preset("previous")), [p.token, p.at], [p.slider, p.cmp_a, p.cmp_b], **nav)
        p.cmp_orig.click(f(self.preset("original")), [p.token, p.at], [p.slider, p.cmp_a, p.cmp_b], **nav)
        slides = [p.present, p.present_slider, p.present_caption, p.present_count, p.present_at]
        inputs = [p.token, p.at, p.present_at]
        p.present_btn.click(f(self.slide(None)), inputs, slides, **nav)
        p.present_prev.click(f(self.slide(-1)), inputs, slides, **nav)
        p.present_next.click(f(self.slide(+1)), inputs, slides, **nav)
        p.present_close.click(lambda: gr.Column(visible=False), None, [p.present], **nav)
        # Visitors' downloads queue among themselves, never in front of owners' exports and imports.
        p.download_btn.click(f(self.download), [p.token, p.at], [p.files], concurrency_id="view-files",
                                concurrency_limit=1, api_visibility="private")
