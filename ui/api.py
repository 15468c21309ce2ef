"""Named API endpoints (and MCP tools) with the page's session semantics, keyed explicitly.

Each endpoint takes the session key returned by `new_session`, so a script holds its own session the
same way a browser tab holds one (the tab keeps its key in the browser's local storage). The components
here are hidden: they only give the endpoints typed inputs and file outputs.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from kontext.errors import UserError
from kontext.session import EditOptions, Sessions
from kontext.turns import Done, stream

from . import share, view
from .access import check_signed_in, uploaded_path
from .events import friendly


def whole(name: str, value: Any) -> int:
    """A whole number from a JSON number, or a ValueError naming the argument (no silent rounding)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value:
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(value)


class Api:
    def __init__(self, sessions: Sessions, login: str = "none"):
        self.s = sessions
        self.login = login

    def _result(self, key: str) -> tuple[str | None, dict[str, Any]]:
        h = self.s.history(key)
        image = self.s.image_path(key) if h.current is not None else None
        return image, view.history_json(self.s, key, h)

    def new_session(self) -> str:
        """Create a new, empty editing session and return its key. Pass the key to every other endpoint."""
        return self.s.new()

    def upload(self, session: str, image: str) -> tuple[str | None, dict[str, Any]]:
        """Start a new chain from an uploaded image (PNG, JPEG, WebP, GIF, BMP or TIFF).

        Returns the current image and the session's history. Earlier chains stay reachable with `jump`.
        """
        path = uploaded_path(image, "image")
        if not path:
            raise UserError("image is missing: send a picture to start from")
        self.s.upload(session, path, name="upload")
        return self._result(session)

    def _stream(self, session: str, run: Any) -> Any:
        for item in stream(lambda report, cancel: run(on_step=report, cancel=cancel)):
            if isinstance(item, Done):
                yield self._result(session)
                return
            if item.total == 0:
                yield gr.skip(), {"progress": {"waiting": item.waiting}}
            else:
                yield gr.skip(), {"progress": {"step": item.step, "total": item.total}}

    def edit(self, session: str, prompt: str, seed_mode: str = "random", seed: float = 0,
             guidance: float = 0, steps: float = 0, width: float = 0, height: float = 0,
             reference: str | None = None, draft: bool = False, profile: gr.OAuthProfile | None = None) -> Any:
        """Edit the current image with an instruction (or, with no image yet, generate one from text).

        seed_mode: "random" (new seed), "fixed" (use `seed`) or "locked" (reuse the current step's seed).
        guidance, steps, width, height: 0 means the model's default (size: match the input's aspect).
        Streams {"progress": {"step", "total"}} while running ({"progress": {"waiting": n}} while n turns are
        ahead in the GPU queue); returns the new image and the history. One turn per session at a time:
        a second call while one runs or waits is refused with a message.
        Cancelling the call stops the edit at its next step and leaves the history unchanged.
        reference: an optional second image (a style, character or object) placed to the right of the
        current image; say which is which in the prompt ("... the left image ... the right image").
        draft: a quarter of the size with the context scaled down too, several times faster; `refine`
        then re-runs it at full size with the same seed.
        """
        check_signed_in(self.login, profile)
        ref = uploaded_path(reference, "reference")
        if draft not in (True, False, None):
            raise UserError(f"draft must be true or false, got {draft!r}")
        opts = EditOptions(seed_mode=seed_mode, seed=whole("seed", seed),
                           guidance=guidance or None, steps=whole("steps", steps) or None,
                           width=whole("width", width) or None, height=whole("height", height) or None,
                           reference=self.s.add_reference(session, ref) if ref else None,
                           draft=bool(draft))
        yield from self._stream(session, lambda **kw: self.s.edit(session, prompt, opts, **kw))

    def reroll(self, session: str, profile: gr.OAuthProfile | None = None) -> Any:
        """Repeat the current step's instruction from the same parent with a new random seed (a sibling branch)."""
        check_signed_in(self.login, profile)
        yield from self._stream(session, lambda **kw: self.s.reroll(session, **kw))

    def refine(self, session: str, profile: gr.OAuthProfile | None = None) -> Any:
        """Re-run the current draft at full size with the same seed, prompt and settings (a sibling branch)."""
        check_signed_in(self.login, profile)
        yield from self._stream(session, lambda **kw: self.s.refine(session, **kw))

    def combine(self, session: str, profile: gr.OAuthProfile | None = None) -> Any:
        """Redo every instruction of the current path as one edit of its original image (a new branch).
        Useful when quality has drifted over many turns."""
        check_signed_in(self.login, profile)
        yield from self._stream(session, lambda **kw: self.s.combine(session, **kw))

    def undo(self, session: str) -> tuple[str | None, dict[str, Any]]:
        """Go back one step (to the current step's parent). At the original image nothing changes."""
        self.s.undo(session)
        return self._result(session)

    def redo(self, session: str) -> tuple[str | None, dict[str, Any]]:
        """Go forward again along the branch you came back from."""
        self.s.redo(session)
        return self._result(session)

    def jump(self, session: str, step: float) -> tuple[str | None, dict[str, Any]]:
        """Make any step current (by its number). The next edit from there starts a new branch."""
        self.s.jump(session, whole("step", step))
        return self._result(session)

    def branch(self, session: str, offset: float) -> tuple[str | None, dict[str, Any]]:
        """Switch to the previous (-1) or next (+1) sibling branch of the current step."""
        self.s.switch_branch(session, whole("offset", offset))
        return self._result(session)

    def history(self, session: str) -> dict[str, Any]:
        """The session's steps (prompt, seed, guidance, steps, size, parent, timings), current path and branch."""
        return view.history_json(self.s, session)

    def step_image(self, session: str, step: float) -> str:
        """The PNG of any step (with its generation parameters in the metadata)."""
        return self.s.image_path(session, whole("step", step))

    def export(self, session: str, scope: str = "path") -> list[str]:
        """Export the session as files: a ZIP (every step's PNG + manifest.json with prompts, seeds and
        versions), an animated GIF of the current path and a contact sheet.
        scope: "path" (root to current step), "tree" (the current tree, all branches) or "all"."""
        return share.export_files(self.s, session, scope)

    def import_zip(self, session: str, file: str) -> tuple[str | None, dict[str, Any]]:
        """Continue from an exported ZIP: all its steps and branches are added to the session."""
        if not file:
            raise UserError("file is missing: send a ZIP exported by this app")
        self.s.import_zip(session, file)
        return self._result(session)

    def clear(self, session: str) -> dict[str, Any]:
        """Delete every step of the session."""
        self.s.clear(session)
        return view.history_json(self.s, session)

    def wire(self) -> None:
        """Create the hidden components and register each endpoint under its name."""
        with gr.Column(visible=False):
            key = gr.Textbox(label="session")
            text = gr.Textbox(label="prompt")
            mode = gr.Textbox(label="seed_mode", value="random")
            nums = [gr.Number(label=n, value=0) for n in ("seed", "guidance", "steps", "width", "height")]
            step = gr.Number(label="step", value=0)
            image_in = gr.Image(label="image", type="filepath", format="png", image_mode=None)
            reference_in = gr.Image(label="reference", type="filepath", format="png", image_mode=None)
            draft_in = gr.Checkbox(label="draft", value=False)
            image_out = gr.Image(label="image", type="filepath", format="png")
            info = gr.JSON(label="history")
            scope = gr.Textbox(label="scope", value="path")
            zip_in = gr.File(label="file", file_types=[".zip"])
            files_out = gr.File(label="files", file_count="multiple")
            trigger = gr.Button()
        pair = [image_out, info]
        common = dict(api_visibility="public", queue=False)
        q = self.s.queue  # turns wait in kontext's TurnQueue (see ui/events.py)
        gpu = dict(api_visibility="public", concurrency_id="gpu", concurrency_limit=q.slots + q.max_waiting + 1)
        f = friendly
        trigger.click(f(self.new_session), None, key, api_name="new_session", **common)
        # preprocess=False: images reach kontext.images as uploaded (see ui/events.py).
        trigger.click(f(self.upload), [key, image_in], pair, api_name="upload", preprocess=False, **common)
        trigger.click(f(self.edit), [key, text, mode, *nums, reference_in, draft_in], pair, api_name="edit",
                      preprocess=False, **gpu)
        trigger.click(f(self.refine), [key], pair, api_name="refine", **gpu)
        trigger.click(f(self.reroll), [key], pair, api_name="reroll", **gpu)
        trigger.click(f(self.combine), [key], pair, api_name="combine", **gpu)
        trigger.click(f(self.undo), [key], pair, api_name="undo", **common)
        trigger.click(f(self.redo), [key], pair, api_name="redo", **common)
        trigger.click(f(self.jump), [key, step], pair, api_name="jump", **common)
        trigger.click(f(self.branch), [key, step], pair, api_name="branch", **common)
        trigger.click(f(self.history), [key], info, api_name="history", **common)
        trigger.click(f(self.step_image), [key, step], image_out, api_name="step_image", **common)
        trigger.click(f(self.export), [key, scope], files_out, api_name="export", concurrency_id="files",
                      api_visibility="public")
        trigger.click(f(self.import_zip), [key, zip_in], pair, api_name="import_zip", concurrency_id="files",
                      api_visibility="public")
        trigger.click(f(self.clear), [key], info, api_name="clear", **common)
