"""Named API endpoints (and MCP tools) with the page's session semantics, keyed explicitly.

Each endpoint takes the session key returned by `new_session`, so a script holds its own session the
same way a browser tab holds one (the tab keeps its key in the browser's local storage). The components
here are hidden: they only give the endpoints typed inputs and file outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gradio as gr

from kontext.core import params as P
from kontext.errors import UserError
from kontext.files import check_key
from kontext.model import Done, parse_active, stream
from kontext.sessions import EditOptions, Sessions

from . import apidoc, mcp, share, view
from .access import check_signed_in, uploaded_name, uploaded_path
from .events import friendly


def whole(name: str, value: Any) -> int:
    """A whole number from a JSON number, or a ValueError naming the argument (no silent rounding)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value:
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(value)


class Api:
    """The public endpoints. What each does and takes is in ui/apidoc.py (set as their docstrings)."""

    def __init__(self, sessions: Sessions, login: str = "none"):
        self.s = sessions
        self.login = login

    def _result(self, key: str) -> tuple[str | None, dict[str, Any]]:
        h = self.s.history(key)
        image = self.s.image_path(key) if h.current is not None else None
        return image, view.history_json(self.s, key, h)

    def _candidates(self, key: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """Every candidate of the current step's variations group as (PNG, "step <id>"), in the order
        of the history's "group"; the current step alone when it is in no group."""
        h = self.s.history(key)
        nodes = h.group() or ([h.current_node] if h.current_node is not None else [])
        return [(self.s.image_path(key, n.id), f"step {n.id}") for n in nodes], view.history_json(self.s, key, h)

    def new_session(self) -> str:
        return self.s.new()

    def upload(self, session: str, image: Any) -> tuple[str | None, dict[str, Any]]:
        path = uploaded_path(image, "image")
        if not path:
            raise UserError("image is missing: send a picture to start from")
        self.s.upload(session, path, name=uploaded_name(image))
        return self._result(session)

    def _stream(self, session: str, run: Any, progress: Any, result: Any = None) -> Any:
        """Yield progress (also reported to gradio's progress, which MCP clients receive as
        notifications), then the result (`result(session)`, default the current image and history)."""
        for item in stream(lambda report, cancel: run(on_step=report, cancel=cancel)):
            if isinstance(item, Done):
                yield (result or self._result)(session)
                return
            if item.total == 0:
                progress(None, desc=f"waiting for the GPU: {item.waiting} ahead")
                yield gr.skip(), {"progress": {"waiting": item.waiting}}
            else:
                progress((item.step, item.total), desc="denoising", unit="steps")
                yield gr.skip(), {"progress": {"step": item.step, "total": item.total}}

    def edit(self, session: str, prompt: str, seed_mode: str = "random", seed: float = 0,
             guidance: float = 0, steps: float = 0, width: float = 0, height: float = 0,
             reference: Any = None, draft: bool = False, loras: str = "", reference_2: Any = None,
             reference_3: Any = None, roles: str = "", mask: Any = None, variations: float = 1,
             profile: gr.OAuthProfile | None = None,
             progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008 - gradio's injection marker
        key, run = self._edit_turn(session, prompt, seed_mode, seed, guidance, steps, width, height, reference,
                                   draft, loras, reference_2, reference_3, roles, mask, variations, profile)
        yield from self._stream(key, run, progress)

    def edit_variations(self, session: str, prompt: str, seed_mode: str = "random", seed: float = 0,
                        guidance: float = 0, steps: float = 0, width: float = 0, height: float = 0,
                        reference: Any = None, draft: bool = False, loras: str = "", reference_2: Any = None,
                        reference_3: Any = None, roles: str = "", mask: Any = None, variations: float = 1,
                        profile: gr.OAuthProfile | None = None,
                        progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008
        """edit, answering with every candidate's picture (a gallery) instead of the current one's."""
        key, run = self._edit_turn(session, prompt, seed_mode, seed, guidance, steps, width, height, reference,
                                   draft, loras, reference_2, reference_3, roles, mask, variations, profile)
        yield from self._stream(key, run, progress, self._candidates)

    def _edit_turn(self, session: str, prompt: str, seed_mode: str, seed: float, guidance: float, steps: float,
                   width: float, height: float, reference: Any, draft: bool, loras: str, reference_2: Any,
                   reference_3: Any, roles: str, mask: Any, variations: float,
                   profile: gr.OAuthProfile | None) -> tuple[str, Any]:
        """Check edit's arguments and store its pictures: the session key and the turn to run."""
        check_signed_in(self.login, profile)
        session = check_key(session)  # every argument is checked before anything is stored or queued
        count = P.check_variations(variations)
        mask_path = uploaded_path(mask, "mask")
        paths = [uploaded_path(r, n) for r, n in ((reference, "reference"), (reference_2, "reference_2"),
                                                   (reference_3, "reference_3"))]
        paths = [p for p in paths if p]  # the references given, in order
        if draft not in (True, False, None):
            raise UserError(f"draft must be true or false, got {draft!r}")
        if not isinstance(roles, str):
            raise UserError(f"roles must be text like style,character, got {type(roles).__name__}")
        stored = [self.s.add_reference(session, p) for p in paths]
        # Read by the one mask rule and bound to the picture it is for: the current step, the edit's parent.
        masked = self.s.add_mask(session, mask_path) if mask_path else None
        opts = EditOptions(seed_mode=seed_mode, seed=whole("seed", seed),
                           guidance=guidance or None, steps=whole("steps", steps) or None,
                           width=whole("width", width) or None, height=whole("height", height) or None,
                           reference=stored[0] if stored else None, more_references=tuple(stored[1:]),
                           roles=tuple(r.strip() for r in roles.split(",") if r.strip()),
                           draft=bool(draft), loras=parse_active(loras), mask=masked, variations=count)
        return session, lambda **kw: self.s.edit(session, prompt, opts, **kw)

    def _again(name: str) -> Any:  # noqa: N805 - builds the four methods below, at class creation
        """An endpoint that makes a new step from the current one (Sessions.<name>): same arguments."""

        def run(self: Api, session: str, profile: gr.OAuthProfile | None = None,
                progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008
            check_signed_in(self.login, profile)
            key = check_key(session)
            yield from self._stream(key, lambda **kw: getattr(self.s, name)(key, **kw), progress)

        run.__name__ = run.__qualname__ = name
        return run

    reroll, refine, combine, reanchor = _again("reroll"), _again("refine"), _again("combine"), _again("reanchor")

    def undo(self, session: str) -> tuple[str | None, dict[str, Any]]:
        self.s.undo(session)
        return self._result(session)

    def redo(self, session: str) -> tuple[str | None, dict[str, Any]]:
        self.s.redo(session)
        return self._result(session)

    def jump(self, session: str, step: float) -> tuple[str | None, dict[str, Any]]:
        self.s.jump(session, whole("step", step))
        return self._result(session)

    def pick(self, session: str, step: float) -> tuple[str | None, dict[str, Any]]:
        self.s.pick(session, whole("step", step))
        return self._result(session)

    def branch(self, session: str, offset: float) -> tuple[str | None, dict[str, Any]]:
        self.s.switch_branch(session, whole("offset", offset))
        return self._result(session)

    def history(self, session: str) -> dict[str, Any]:
        return view.history_json(self.s, session)

    def drift(self, session: str) -> dict[str, Any]:
        return {"path": [{"id": n.id, "prompt": n.prompt, **d.to_dict()} for n, d in self.s.drift_curve(session)]}

    def step_image(self, session: str, step: float) -> str:
        return self.s.image_path(session, whole("step", step))

    def export(self, session: str, scope: str = "path", request: gr.Request | None = None) -> list[str]:
        return share.export_files(self.s, session, scope, address=share.client_address(request))

    def import_zip(self, session: str, file: Any) -> tuple[str | None, dict[str, Any]]:
        path = uploaded_path(file, "file")
        if not path:
            raise UserError("file is missing: send a ZIP exported by this app")
        self.s.import_zip(session, path)
        return self._result(session)

    def share(self, session: str, names: bool = False, live: bool = False,
              request: gr.Request | None = None) -> dict[str, Any]:
        link = self.s.share(session, names=names, address=share.client_address(request), live=live)
        # Not "path": gradio's clients take a dict with a "path" for a file and try to download it.
        return {"token": link.token, "link": f"/view?share={link.token}", "root": link.root, "live": link.live}

    def unshare(self, session: str) -> dict[str, Any]:
        return {"revoked": self.s.unshare(session)}

    def shared_history(self, token: str) -> dict[str, Any]:
        link, h = self.s.shared(token)
        return view.history_json(self.s, link.key, h)

    def stop(self, session: str) -> dict[str, Any]:
        """Stop the session's running or waiting edit, wherever it was started (a tab, the API, MCP):
        it ends at its next step and adds nothing. {"stopped": false} when none runs."""
        return {"stopped": self.s.stop(check_key(session))}

    def clear(self, session: str) -> dict[str, Any]:
        self.s.clear(session)
        return view.history_json(self.s, session)

    def wire(self) -> None:
        """Create the hidden components and register each endpoint under its name."""
        c = self._components()
        q = self.s.queue  # turns wait in kontext's TurnQueue (see ui/events.py)
        common = dict(api_visibility="public", queue=False)
        gpu = dict(api_visibility="public", concurrency_id="gpu", concurrency_limit=q.slots + q.max_waiting + 1)
        texts = apidoc.docs(self.s.engine.profile)

        def f(method: Any) -> Any:  # errors in plain words, and the text clients read
            return apidoc.describe(friendly(method), texts[method.__name__])

        self._wire_turns(c, f, common, gpu)
        self._wire_steps(c, f, common)
        self._wire_files_and_links(c, f, common)

    @staticmethod
    def _components() -> SimpleNamespace:
        """The endpoints' inputs and outputs: hidden components, named as clients see them."""
        with gr.Column(visible=False):
            def image(label: str) -> gr.Image:
                return gr.Image(label=label, type="filepath", format="png", image_mode=None)

            c = SimpleNamespace(
                key=gr.Textbox(label="session"), text=gr.Textbox(label="prompt"),
                mode=gr.Textbox(label="seed_mode", value="random"),
                nums=[gr.Number(label=n, value=0) for n in ("seed", "guidance", "steps", "width", "height")],
                step=gr.Number(label="step", value=0), image_in=image("image"), reference_in=image("reference"),
                draft_in=gr.Checkbox(label="draft", value=False), loras_in=gr.Textbox(label="loras", value=""),
                reference2_in=image("reference_2"), reference3_in=image("reference_3"),
                roles_in=gr.Textbox(label="roles", value=""), mask_in=image("mask"),
                variations_in=gr.Number(label="variations", value=1),  # kontext checks it (no gradio bounds)
                image_out=gr.Image(label="image", type="filepath", format="png"),
                candidates_out=gr.Gallery(label="candidates", type="filepath", format="png"),
                info=gr.JSON(label="history"), scope=gr.Textbox(label="scope", value="path"),
                zip_in=gr.File(label="file", file_types=[".zip"]),
                files_out=gr.File(label="files", file_count="multiple"), trigger=gr.Button())
        c.pair = [c.image_out, c.info]
        return c

    def _wire_turns(self, c: SimpleNamespace, f: Callable, common: dict, gpu: dict) -> None:
        """A session, its upload, and the endpoints that run the model."""
        c.trigger.click(f(self.new_session), None, c.key, api_name="new_session", **common)
        # preprocess=False: images reach kontext.core.images as uploaded (see ui/events.py).
        c.trigger.click(f(self.upload), [c.key, c.image_in], c.pair, api_name="upload", preprocess=False, **common)
        edit_in = [c.key, c.text, c.mode, *c.nums, c.reference_in, c.draft_in, c.loras_in, c.reference2_in,
                   c.reference3_in, c.roles_in, c.mask_in, c.variations_in]
        # (new inputs go last: gradio_client fills the defaults of those left out)
        c.trigger.click(mcp.tool(f(self.edit), None), edit_in, c.pair, api_name="edit", preprocess=False, **gpu)
        # MCP's edit tool: every candidate as an image item (ui/mcp.py names the tools).
        c.trigger.click(mcp.tool(f(self.edit_variations), "edit"), edit_in, [c.candidates_out, c.info],
                        api_name="edit_variations", preprocess=False, **gpu)
        for method in (self.refine, self.reroll, self.combine, self.reanchor):
            c.trigger.click(f(method), [c.key], c.pair, api_name=method.__name__, **gpu)

    def _wire_steps(self, c: SimpleNamespace, f: Callable, common: dict) -> None:
        """Moving through the history and reading it: no model."""
        for method in (self.undo, self.redo):
            c.trigger.click(f(method), [c.key], c.pair, api_name=method.__name__, **common)
        for method in (self.jump, self.pick, self.branch):
            c.trigger.click(f(method), [c.key, c.step], c.pair, api_name=method.__name__, **common)
        for method in (self.history, self.drift):
            c.trigger.click(f(method), [c.key], c.info, api_name=method.__name__, **common)
        c.trigger.click(f(self.step_image), [c.key, c.step], c.image_out, api_name="step_image", **common)

    def _wire_files_and_links(self, c: SimpleNamespace, f: Callable, common: dict) -> None:
        """Export and import, clear and stop, and share links."""
        c.trigger.click(f(self.export), [c.key, c.scope], c.files_out, api_name="export", concurrency_id="files",
                        api_visibility="public")
        c.trigger.click(f(self.import_zip), [c.key, c.zip_in], c.pair, api_name="import_zip",
                        concurrency_id="files", api_visibility="public")
        c.trigger.click(f(self.clear), [c.key], c.info, api_name="clear", **common)
        c.trigger.click(f(self.stop), [c.key], c.info, api_name="stop", **common)
        names_in = gr.Checkbox(label="names", value=False, visible=False)
        live_in = gr.Checkbox(label="live", value=False, visible=False)
        c.trigger.click(f(self.share), [c.key, names_in, live_in], c.info, api_name="share", **common)
        c.trigger.click(f(self.unshare), [c.key], c.info, api_name="unshare", **common)
        token = gr.Textbox(label="token", visible=False)
        c.trigger.click(f(self.shared_history), [token], c.info, api_name="shared_history", **common)
