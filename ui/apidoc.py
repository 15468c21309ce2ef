"""What every public endpoint (and MCP tool) does and what each parameter means, in one place.

Gradio reads an endpoint's description and its parameters' descriptions from the handler's docstring
(`Args:` lines, one per parameter, then `Returns:`); MCP clients see them in the tool list. The texts
carry the limits of the model being served (sizes differ between FLUX.1 Kontext and the tiny demo
model), so they are built from its Profile when the endpoints are wired. The README's API section is
`markdown(REAL_PROFILE)`, printed by scripts/api_reference.py and checked by tests/test_apidoc.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kontext.core import images as I
from kontext.core import params as P
from kontext.sessions import SEED_MODES

SESSION = "The session key returned by new_session (keep it: it is the only handle on the session)."
STEP = "A step number, as in the history's steps[].id (the original upload is usually 1)."
RESULT = ("the current image (PNG) and the session's history as JSON: {step: the current step (id, prompt, "
          "seed, width, height, seconds, ...), current, path, timeline, can_undo, can_redo, branch, group, steps}")
EDIT = ("Edit the current image with an instruction (with no image yet, generate one from text). The new step "
        "becomes current; an edit from an earlier step starts a new branch. One turn per session at a time: a "
        "second call while one runs or waits is refused. Cancelling the call stops the edit at its next step "
        "and leaves the history unchanged.")
STREAMS = ("While running, the JSON output streams {progress: {step, total}} (or {progress: {waiting: n}} while "
           "n turns are ahead in the GPU queue)")


@dataclass(frozen=True)
class Doc:
    summary: str
    args: dict[str, str] = field(default_factory=dict)
    returns: str = ""
    # The README's shorter text of an endpoint that takes another's arguments: (summary, that endpoint).
    readme: tuple[str, str] | None = None

    def docstring(self) -> str:
        """The format gradio parses: summary, `Args:` (one line each), `Returns:`."""
        lines = [self.summary]
        if self.args:
            lines += ["", "Args:", *(f"    {k}: {v}" for k, v in self.args.items())]
        if self.returns:
            lines += ["", "Returns:", f"    {self.returns}"]
        return "\n".join(lines)

    def markdown(self, name: str) -> str:
        """One list item; `session` and the common result are said once, above the list."""
        args = [f"`{k}`: {v}" for k, v in self.args.items() if k != "session"]
        summary = self.summary
        if self.readme is not None:
            summary, like = self.readme
            args = [f"takes the arguments of `/{like}`"]
        returns = self.returns.replace(RESULT, "*the result*")
        out = [f"- **`/{name}`**: {summary}"]
        out += [f"  - {a}" for a in args]
        if returns:
            out.append(f"  - returns {returns}")
        return "\n".join(out)


# The endpoints that move between steps, read them, or move files: their texts need no model limits.
SESSION_DOCS: dict[str, Doc] = {
    "undo": Doc("Go back one step, to the current step's parent. At the original image nothing changes.",
                {"session": SESSION}, RESULT),
    "redo": Doc("Go forward again along the branch undo came back from.", {"session": SESSION}, RESULT),
    "jump": Doc("Make any step current. The next edit from there starts a new branch; nothing is lost.",
                {"session": SESSION, "step": STEP}, RESULT),
    "pick": Doc("Make one candidate of an edit with variations the current step: the next edit continues from it; "
                "the others stay as sibling branches.",
                {"session": SESSION, "step": "A candidate's step number, as in the history's group (to go to any "
                                             "step, use jump)."},
                RESULT),
    "branch": Doc("Switch to a sibling branch of the current step (another edit of the same parent).",
                  {"session": SESSION,
                   "offset": ("-1 for the previous sibling, +1 for the next (wraps around); each at the step "
                              "it was left at.")}, RESULT),
    "history": Doc("Read the session's history without changing it.", {"session": SESSION},
                   "the history as JSON (as in edit's result, without the image)"),
    "drift": Doc("How far each step of the current path has moved from the original: mean colour difference "
                 "(CIE76 ΔE of 128 px versions; about 2 is just visible, above 12 the page suggests redoing the "
                 "path) and luminance structural similarity (1 = same structure).", {"session": SESSION},
                 "JSON {path: [{id, prompt, delta_e, ssim}, ...]} (empty before the first edit)"),
    "step_image": Doc("The picture of any step.", {"session": SESSION, "step": STEP},
                      "the step's PNG, with its prompt, seed and settings in the PNG metadata"),
    "export": Doc("Export the session as files: a ZIP (every step's PNG and manifest.json with prompts, "
                  "seeds and versions, importable with import_zip), an animated GIF of the current path and "
                  "a contact sheet (PNG).",
                  {"session": SESSION,
                   "scope": ('"path" (the original to the current step, the default), "tree" (every '
                             'branch of the current picture) or "all" (every chain of the session).')},
                  "the files (ZIP, GIF, PNG); their links stay valid for at least 10 minutes"),
    "import_zip": Doc("Continue from a ZIP made by export: its steps and branches are added to the session "
                      "as new chains (renumbered when the session has steps already).",
                      {"session": SESSION, "file": "The ZIP file, uploaded."}, RESULT),
    "share": Doc("Make a read-only link to the tree of the current step (every branch of that picture, as it "
                 "grows); sharing the same tree again gives the same link.",
                 {"session": SESSION, "names": "Whether the link shows the uploads' file names (default false: "
                                               "an upload is shown as 'original'). Sharing again sets it anew.",
                  "live": "Whether the link's viewers follow each step, the running edit's progress, undo/redo and "
                          "branch moves as they happen, without reloading (default false: frozen, each look shows "
                          "the tree as it is then). Sharing again sets it anew; Stop sharing ends every viewer's "
                          "updates at once."},
                 "JSON {token, link, root, live}: open the app's address + link (/view?share=TOKEN) in a browser, "
                 "or read the tree with shared_history"),
    "unshare": Doc("Revoke every share link of the session: they stop working at once.", {"session": SESSION},
                   "JSON {revoked: how many links there were}"),
    "shared_history": Doc("Read a shared tree by its token, without the session key. Nothing can be changed "
                          "with a token.",
                          {"token": "The token from share (starts with v_, 66 characters)."},
                          "the tree's history as JSON (as history, only that tree's steps)"),
    "clear": Doc("Delete every step of the session. This cannot be undone.", {"session": SESSION},
                 "the (empty) history as JSON"),
    "stop": Doc("Stop the session's running or waiting edit, wherever it was started (a tab, this API, "
                "MCP): it ends at its next step and adds nothing.", {"session": SESSION},
                '{"stopped": true}, or false when no edit of the session runs'),
}


def docs(profile: P.Profile) -> dict[str, Doc]:
    """Every public endpoint's text, with `profile`'s limits. Keys are the endpoints' api_names."""
    return {
        "new_session": Doc("Create a new, empty editing session.",
                           returns="the session key, to pass to every other endpoint"),
        "upload": Doc(f"Start a new chain from a picture (PNG, JPEG, WebP, GIF, BMP or TIFF; at most "
                      f"{I.MAX_PIXELS // 1_000_000} MP and {I.MAX_FILE_BYTES >> 20} MB, sides {I.MIN_SIDE} to "
                      f"{I.MAX_SIDE} px, aspect ratio at most {I.MAX_ASPECT:g}:1). Earlier chains stay reachable "
                      "with jump. The step is named after the file.",
                      {"session": SESSION,
                       "image": "The picture, as an uploaded file (MCP clients may send a data: URL)."},
                      RESULT),
        "edit": Doc(EDIT, _edit_args(profile),
                    RESULT + "; with variations, the current step is the first candidate and the history's "
                    "group lists every candidate's step id (edit_variations answers with all their pictures). "
                    + STREAMS),
        "edit_variations": Doc(  # MCP's edit tool (ui/mcp.py): its text reads as the edit tool's
            EDIT + " Answers with every candidate's picture, in the order of the history's group.",
            _edit_args(profile),
            "every candidate's picture (PNG; a gallery, each captioned 'step <id>'), in the order of the history's "
            "group (one picture when variations is 1), and the session's history as JSON (as edit's). " + STREAMS,
            readme=("The same edit, answering with every candidate's picture instead of the current one's (MCP's "
                    "edit tool is this endpoint).", "edit")),
        "refine": Doc("Re-run the current draft at full size with the same seed, prompt and settings "
                      "(a sibling branch of the draft).", {"session": SESSION}, RESULT),
        "reroll": Doc("Repeat the current step's instruction from the same parent with a new random seed "
                      "(a sibling branch).", {"session": SESSION}, RESULT),
        "combine": Doc("Redo every instruction of the current path as one edit of its original image (a new "
                       "branch). Useful when quality has drifted over many turns.", {"session": SESSION}, RESULT),
        "reanchor": Doc("Apply the current step's instruction to the chain's original, with its seed and settings "
                        "(a new branch beside the step-by-step one, without the drift of the turns between).",
                        {"session": SESSION}, RESULT),
        **SESSION_DOCS,
    }


def _edit_args(pr: P.Profile) -> dict[str, str]:
    """edit's arguments, with `pr`'s limits."""
    size = (f"in pixels, a multiple of {P.SIZE_MULTIPLE} from {pr.min_side} to {pr.max_side}, with width x height "
            f"at most {pr.max_area:,} pixels; 0 for both: the input's aspect ratio at about {pr.default_area:,} "
            "pixels (a square without an input). Give both or neither.")
    modes = ", ".join(f'"{m}"' for m in SEED_MODES)
    return {
        "session": SESSION,
        "prompt": (f"The instruction, 1 to {P.MAX_PROMPT_CHARS} characters, e.g. 'make the sky "
                   "stormy, keep everything else the same'. Quote text to replace it exactly."),
        "seed_mode": (f'One of {modes}. random: a new seed each call; fixed: use seed; locked: '
                      "the current step's seed (same noise, different instruction)."),
        "seed": f"A whole number from 0 to {P.MAX_SEED}, used only when seed_mode is \"fixed\".",
        "guidance": (f"Guidance scale from {P.MIN_GUIDANCE:g} to {P.MAX_GUIDANCE:g} (how strongly "
                     f"the prompt is followed); 0: the model's default, {pr.default_guidance:g}."),
        "steps": (f"Denoising steps, a whole number from {P.MIN_STEPS} to {P.MAX_STEPS}; 0: the "
                  f"model's default, {pr.default_steps}. Time grows with steps."),
        "width": f"Output width {size}",
        "height": "Output height, as width.",
        "reference": ("Optional second picture (a style, character or object), placed to the right "
                      "of the current image; say which is which in the prompt ('the person from "
                      "the right image'). Empty: none."),
        "draft": ("true: a quarter of the size with the context scaled down too, several times "
                  "faster; refine then re-runs it at full size with the same seed. Default false."),
        "loras": ("LoRAs this server offers, with strengths from 0 to 2: name=0.8,other=0.5 (at "
                  "most 4; empty: none). Each step records them."),
        "reference_2": "Optional third picture, right of the reference (empty: none).",
        "reference_3": "Optional fourth picture, right of reference_2 (empty: none).",
        "roles": ("What each reference is, in order, comma-separated: style, character, object, "
                  "background or other (e.g. style,character). Recorded with the step."),
        "mask": ("Optional picture of the current image's exact size: only where it is painted may the "
                 "picture change, every other pixel stays exactly as it is. Painted means opaque in a "
                 "picture with an alpha channel, else light (white may change, black stays). A masked "
                 "edit keeps the size: give no width, height, reference or draft with it. Empty: none."),
        "variations": (f"How many candidates to make from the same picture and instruction, 1 to "
                       f"{P.MAX_VARIATIONS} (default 1); they take the seeds seed, seed+1, ... (so with n the "
                       f"seed is at most {P.MAX_SEED} - n + 1), each is a sibling step, the first becomes "
                       "current, and pick makes another current. Time grows with their number."),
    }


def describe(fn: Callable, doc: Doc) -> Callable:
    """Give a handler (a wrapper of its own, see ui/events.friendly) the docstring gradio reads."""
    fn.__doc__ = doc.docstring()
    return fn


def markdown(profile: P.Profile) -> str:
    """The README's endpoint list."""
    head = (f"Every endpoint but `/new_session` and `/shared_history` takes `session`: {SESSION} "
            f"*The result* is {RESULT}.\n\n")
    return head + "\n".join(d.markdown(name) for name, d in docs(profile).items())
