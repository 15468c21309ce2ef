"""The page's layout: small render functions that create components and return them. No events here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from kontext.core import ROLES
from kontext.core import params as P
from kontext.hosting import Settings, storage_note
from kontext.model import Engine, memory_hint
from kontext.sessions import DRIFT_TURNS
from kontext.showcase import Branding, Catalog
from kontext.tools import HARDWARE_HINT


@dataclass
class Page:
    """Every component the events need, by name (filled in by the render_* functions)."""

    key: gr.BrowserState | None = None
    shown: gr.State | None = None  # per tab: the timeline and step menus it already shows (see Wiring.redraw)
    canvas: gr.Image | None = None
    variants: gr.Gallery | None = None  # the current step's group of candidates (variations), under the canvas
    prompt: gr.Textbox | None = None
    edit_btn: gr.Button | None = None
    stop_btn: gr.Button | None = None
    t2i_btn: gr.Button | None = None
    undo_btn: gr.Button | None = None
    redo_btn: gr.Button | None = None
    reroll_btn: gr.Button | None = None
    prev_branch: gr.Button | None = None
    next_branch: gr.Button | None = None
    branch: gr.Markdown | None = None
    status: gr.Markdown | None = None
    drift: gr.Markdown | None = None
    gallery: gr.Gallery | None = None
    goto: gr.Dropdown | None = None
    tree: gr.Markdown | None = None
    slider: gr.ImageSlider | None = None
    cmp_a: gr.Dropdown | None = None
    cmp_b: gr.Dropdown | None = None
    cmp_prev: gr.Button | None = None
    cmp_orig: gr.Button | None = None
    seed_mode: gr.Radio | None = None
    seed: gr.Number | None = None
    variations_choice: gr.Radio | None = None
    variations: gr.State | None = None  # the count the turns read, from variations_choice (no API parameter)
    guidance: gr.Slider | None = None
    steps: gr.Slider | None = None
    size: gr.Dropdown | None = None
    new_btn: gr.Button | None = None
    confirm: gr.Checkbox | None = None
    combine_btn: gr.Button | None = None
    reanchor_btn: gr.Button | None = None
    present_btn: gr.Button | None = None
    draft: gr.Checkbox | None = None
    refine_btn: gr.Button | None = None
    ref_status: gr.Markdown | None = None
    ref3_name: gr.State | None = None
    mask_editor: gr.ImageEditor | None = None
    mask_load: gr.Button | None = None
    mask_use: gr.Button | None = None
    mask_clear: gr.Button | None = None
    mask_status: gr.Markdown | None = None
    mask_name: gr.State | None = None
    loras: gr.State | None = None
    old_text: gr.Textbox | None = None
    new_text: gr.Textbox | None = None
    text_btn: gr.Button | None = None
    note: gr.Markdown | None = None
    ran: gr.Textbox | None = None
    watch: gr.Timer | None = None
    share_btn: gr.Button | None = None
    share_names: gr.Checkbox | None = None
    share_live: gr.Checkbox | None = None  # the link's viewers follow each step as it happens
    unshare_btn: gr.Button | None = None
    share_token: gr.Textbox | None = None
    share_link: gr.Textbox | None = None
    scope: gr.Radio | None = None
    export_btn: gr.Button | None = None
    files: gr.File | None = None
    import_btn: gr.UploadButton | None = None
    examples: gr.Dataset | None = None
    chains: gr.Dataset | None = None
    present_count: gr.Markdown | None = None
    present_close: gr.Button | None = None
    present_caption: gr.Markdown | None = None
    present_slider: gr.ImageSlider | None = None
    present_prev: gr.Button | None = None
    present_next: gr.Button | None = None
    present_at: gr.State | None = None
    drift_plot: gr.HTML | None = None
    ref_name: gr.State | None = None
    seed_before: gr.State | None = None  # (mode, seed) to restore after an example's own turn
    ref_image: gr.Image | None = None
    ref_image2: gr.Image | None = None
    ref_image3: gr.Image | None = None
    ref2_name: gr.State | None = None
    role1: gr.Dropdown | None = None
    role2: gr.Dropdown | None = None
    role3: gr.Dropdown | None = None
    present: gr.Column | None = None


def render_header(engine: Engine, settings: Settings | None = None) -> None:
    settings = settings or Settings()
    brand = settings.branding
    with gr.Row(elem_id="header-row"):
        if brand.logo is not None:
            gr.Image(str(brand.logo), show_label=False, interactive=False, container=False, height=56, width=56,
                     scale=0, min_width=56, elem_id="logo", buttons=[])
        gr.Markdown(f"# {brand.title}\n{brand.description}", elem_id="title")
        if settings.login == "hf":
            gr.LoginButton(size="sm", scale=0, min_width=220, elem_id="login")
    banner = demo_banner(engine.model_id, settings, engine.device)
    if banner:
        gr.Markdown(banner, elem_id="demo-banner", elem_classes=["banner"])
    gr.Markdown(storage_note(settings) + (" " + zerogpu_note() if settings.zerogpu else ""),
                elem_id="storage-note", elem_classes=["hint"])


def zerogpu_note() -> str:
    from PIL import Image

    from kontext.hosting import turn_seconds
    from kontext.model import TurnRequest

    typical = TurnRequest(context=Image.new("RGB", (1024, 1024)), prompt="x", seed=0, guidance=2.5, steps=28,
                          width=1024, height=1024)
    return (f"This Space runs on ZeroGPU: a GPU is lent for each edit, and the time it asks for (about "
            f"{turn_seconds(typical)} s for 28 steps at 1 MP) counts against your daily ZeroGPU quota; "
            "signed-in visitors get more.")


RANDOM_WORDS = {
    "random-full": ("**Demo mode: FLUX.1 Kontext [dev]'s full-size architecture with random weights is running** "
                    "(`random-full`). It does the real model's arithmetic, so its speed and memory are the real "
                    "model's, but its images are noise. "),
    "random-small": ("**Demo mode: `random-small` is running**: FLUX.1 Kontext's architecture narrowed, with "
                     "random weights. Images have the real model's sizes and limits, but they are noise and its "
                     "speed is not the real model's. "),
}


def demo_banner(model_id: str, settings: Settings, device: str = "cpu") -> str | None:
    """For a model without trained weights (tiny, random-full, random-small): why the images are noise,
    and what to do to edit real pictures, for where the app runs. None for a real model."""
    if model_id == "tiny":
        text = ("**Demo mode: the embedded tiny model is running.** Its weights are random, so its images are "
                "noise; everything else (history, branches, compare, export) works as with the real model. ")
    elif model_id in RANDOM_WORDS:
        text = RANDOM_WORDS[model_id]
    else:
        return None
    if settings.on_space and device == "cpu" and not settings.zerogpu:  # a Space without a GPU
        return text + ("This Space has no GPU: in its settings " + HARDWARE_HINT + ", and add the secret "
                       "`HF_TOKEN` of an account that accepted the model's licence.")
    if settings.on_space:
        return text + ("To edit real pictures, remove the Space's variable `KONTEXT_MODEL` (or set it to "
                       "`black-forest-labs/FLUX.1-Kontext-dev`) and add the secret `HF_TOKEN` of an account "
                       "that accepted the model's licence.")
    return text + ("To edit real pictures, start on a GPU with `python app.py --model "
                   "black-forest-labs/FLUX.1-Kontext-dev` and an `HF_TOKEN` with access to the gated model. "
                   f"`--mode auto` fits the GPU's memory: {memory_hint()}.")


def engine_status_text(engine: Engine, startup: Any) -> str:
    speed = engine.speed.label
    where = engine.device
    if getattr(engine, "replicas", None):  # kontext.hosting.pool.PoolEngine: the model runs in Ray Serve workers
        where = f"{engine.replicas} Ray Serve worker{'s' if engine.replicas > 1 else ''} ({engine.device})"
    parts = [f"Model `{engine.model_id}` on {where} · speed mode `{speed}`"]
    if startup is not None and startup.reason and "chosen for this GPU" in startup.reason:
        parts.append(startup.reason.split(": ", 1)[-1])  # why auto mode picked this offload/quantize
    compiled = getattr(engine, "aot", None)
    if compiled is not None:  # aot: whether transformer calls run compiled, and if not, why (never silent)
        parts.append(compiled.describe())
    if engine.speed.cache:
        parts.append("**fast mode: step caching skips some computation, so images differ slightly from "
                     "full quality**")
    if startup is not None:
        if startup.error:
            parts.append(f"⚠️ {startup.error}")
        elif not startup.done.is_set():
            parts.append(f"⏳ preparing the model ({startup.message}); the first edit waits for this")
    return " · ".join(parts)


def render_engine_status(engine: Engine, startup: Any) -> gr.Markdown:
    """One line about the engine; while a warm-up runs, a timer refreshes it until it is done.
    The caller refreshes it at each page load too (a compiled transformer that later ran eagerly)."""
    status = gr.Markdown(engine_status_text(engine, startup), elem_id="engine-status", elem_classes=["hint"])
    if startup is None or startup.done.is_set():
        return status
    timer = gr.Timer(1.0)

    def tick() -> tuple[str, Any]:
        return engine_status_text(engine, startup), gr.Timer(active=not startup.done.is_set())

    timer.tick(tick, None, [status, timer], queue=False, api_visibility="private")
    return status


VARIANTS_LIVE_LABEL = "Variations being made: live previews"


def variants_label(n: int = P.MAX_VARIATIONS) -> str:
    """The grid's label for a group of `n` candidates (the keys 1 to n pick them)."""
    return f"Variations: click one or press 1–{n}"


def render_editor(page: Page, brand: Branding | None = None) -> None:
    brand = brand or Branding()
    page.canvas = gr.Image(
        label="Current image", type="filepath", format="png",
        placeholder="Drop, paste or upload a picture to start (a new picture starts a new chain)",
        image_mode=None,  # hand us the file as sent: kontext.core.images validates and converts it
        sources=["upload", "clipboard"], interactive=True, height=520, elem_id="canvas",
        buttons=["download", "fullscreen"],
    )
    # Shown while the current step is one of a group of variations (and while one is made: each
    # candidate's live preview); a click or the keys 1-4 (assets/shortcuts.js) pick one.
    page.variants = gr.Gallery(
        label=variants_label(), columns=4, height="auto",
        allow_preview=False, object_fit="contain", format="jpeg", elem_id="variants", buttons=[], visible=False,
    )
    with gr.Row(equal_height=True):
        page.prompt = gr.Textbox(
            label="Instruction", placeholder="e.g. make the sky stormy, keep everything else the same",
            lines=1, max_lines=4, max_length=P.MAX_PROMPT_CHARS, scale=6, elem_id="prompt",
        )
        page.edit_btn = gr.Button("Edit", variant="primary", scale=1, min_width=90, elem_id="edit-btn")
        page.stop_btn = gr.Button("Stop", variant="stop", scale=1, min_width=80, elem_id="stop-btn", visible=False)
    with gr.Row(elem_id="nav-row"):
        page.undo_btn = gr.Button("↶ Undo", size="sm", interactive=False, elem_id="undo-btn", min_width=70)
        page.redo_btn = gr.Button("↷ Redo", size="sm", interactive=False, elem_id="redo-btn", min_width=70)
        page.reroll_btn = gr.Button("Re-roll", size="sm", elem_id="reroll-btn", min_width=80)
        page.combine_btn = gr.Button("Redo path as one edit", size="sm", elem_id="combine-btn",
                                              min_width=120)
        page.reanchor_btn = gr.Button("Apply to the original", size="sm",
                                               elem_id="reanchor-btn", min_width=120)
        with gr.Row(elem_id="branch-switch"):  # one unit: never wraps between its arrows
            page.prev_branch = gr.Button("◀", size="sm", elem_id="prev-branch", min_width=36, visible=False)
            page.branch = gr.Markdown("", elem_id="branch")
            page.next_branch = gr.Button("▶", size="sm", elem_id="next-branch", min_width=36, visible=False)
        page.t2i_btn = gr.Button("New picture from text", size="sm", elem_id="t2i-btn", min_width=120)
        page.present_btn = gr.Button("Present", size="sm", elem_id="present-btn", min_width=90,
                                              visible=brand.shows("present"))
    with gr.Row(elem_id="draft-row", visible=brand.shows("draft")):
        page.draft = gr.Checkbox(False, label="Draft: ¼ of the size, several times faster",
                                          elem_id="draft", container=False, scale=3)
        page.refine_btn = gr.Button("Refine draft at full size", size="sm", elem_id="refine-btn",
                                             scale=1, min_width=150)
    render_references(page, brand)
    render_mask_painter(page, brand)
    render_loras(page, brand)
    with gr.Accordion("Replace text in the image", open=False, elem_id="text-helper", visible=brand.shows("text")):
        with gr.Row(equal_height=True):
            page.old_text = gr.Textbox(label="Text now", placeholder="OPEN", max_length=200, scale=2)
            page.new_text = gr.Textbox(label="Replace with", placeholder="CLOSED", max_length=200, scale=2)
            page.text_btn = gr.Button("Write the instruction", size="sm", scale=1, elem_id="text-btn")
    page.status = gr.Markdown("", elem_id="status")
    page.drift = gr.Markdown("", elem_id="drift", elem_classes=["hint"])
    page.note = gr.Markdown("", elem_id="type-ahead-note", elem_classes=["hint"])
    page.ran = gr.Textbox(visible=False, elem_id="ran-prompt")  # the instruction a finished turn ran
    # Ticks only while this tab waits for a turn of its session that runs elsewhere (ui/events.py watch).
    page.watch = gr.Timer(1.0, active=False)


def render_references(page: Page, brand: Branding) -> None:
    """Up to three reference images beside the current one, each with its role."""
    with gr.Accordion("Reference images: a style, character or object to use (up to three)", open=False,
                      elem_id="reference", visible=brand.shows("reference")):
        gr.Markdown(
            "While references are set, each edit sees the current image with them to its right, left to right. "
            "Say which is which, e.g. *restyle the left image in the style of the second image* or *put the "
            "person from the right image into the left scene*. The result keeps the current image's size. "
            "Remove a reference (×) to edit without it.", elem_classes=["hint"])
        with gr.Row(equal_height=True):
            for i, (slot, role) in enumerate((("ref_image", "style"), ("ref_image2", "character"),
                                              ("ref_image3", "object")), 1):
                with gr.Column(min_width=140):
                    setattr(page, slot, gr.Image(
                        label=f"Reference {i}", type="filepath", format="png", image_mode=None,
                        sources=["upload", "clipboard"], height=140, elem_id=slot.replace("_", "-")))
                    setattr(page, f"role{i}", gr.Dropdown(list(ROLES), value=role, label=f"Reference {i} is a",
                                                          elem_id=f"role{i}"))
        page.ref_status = gr.Markdown("", elem_id="ref-status")
        page.ref2_name, page.ref3_name = gr.State(None), gr.State(None)


def render_mask_painter(page: Page, brand: Branding) -> None:
    """Paint where the next instructions may change; everything else stays exactly as it is."""
    with gr.Accordion("Masked edit: paint where the instruction may change", open=False, elem_id="mask-box",
                      visible=brand.shows("mask")):
        gr.Markdown("Paint over the part the next instructions may change and press *Use this mask*: every "
                    "pixel outside it stays exactly as it is, turn after turn.", elem_classes=["hint"])
        page.mask_editor = gr.ImageEditor(
            type="pil", image_mode="RGBA", sources=(), transforms=(), layers=False, height=360,
            brush=gr.Brush(colors=["#ff3b30"], default_size=28, color_mode="fixed"), eraser=gr.Eraser(),
            label="Paint over the part to change", elem_id="mask-editor")
        with gr.Row():
            page.mask_load = gr.Button("Paint on the current picture", size="sm", elem_id="mask-load")
            page.mask_use = gr.Button("Use this mask", size="sm", variant="primary", elem_id="mask-use")
            page.mask_clear = gr.Button("Clear mask", size="sm", elem_id="mask-clear")
        page.mask_status = gr.Markdown("", elem_id="mask-status")
        page.mask_name = gr.State(None)  # the stored mask this tab edits with


def render_loras(page: Page, brand: Branding) -> None:
    """A strength slider per LoRA the host offers (hidden when there are none)."""
    loras = brand.loras
    with gr.Accordion("LoRAs: styles and effects this server offers", open=False, elem_id="lora-box",
                      visible=bool(loras) and brand.shows("lora")):
        gr.Markdown("Set a strength above 0 to use a LoRA in the next edits (several at once; 0 = off). "
                    "Each step records the LoRAs it used.", elem_classes=["hint"])
        page.lora_sliders = [
            gr.Slider(0.0, 2.0, value=0.0, step=0.05, label=f"{lo.name} (suggested {lo.scale:g})",
                      elem_id=f"lora-{lo.name}") for lo in loras]
        page.lora_names = [lo.name for lo in loras]
        page.loras = gr.State([])  # [(name, strength)] with strength > 0, from the sliders


def render_timeline(page: Page, label: str = "Timeline: click a step to go back to it (the next edit starts a new "
                                               "branch)") -> None:
    page.gallery = gr.Gallery(
        label=label,
        columns=4, height=320, allow_preview=False, object_fit="cover", format="jpeg",
        elem_id="timeline", buttons=[],
    )
    with gr.Row():
        page.goto = gr.Dropdown(label="Go to any step (all branches)", choices=[], elem_id="goto", scale=3)
    with gr.Accordion("All branches", open=False):
        page.tree = gr.Markdown("", elem_id="tree")


def render_compare(page: Page) -> None:
    page.slider = gr.ImageSlider(label="Before / after", type="filepath", format="png", elem_id="compare",
                                 max_height=420)
    with gr.Row():
        page.cmp_a = gr.Dropdown(label="Left", choices=[], elem_id="cmp-a", min_width=120)
        page.cmp_b = gr.Dropdown(label="Right", choices=[], elem_id="cmp-b", min_width=120)
    with gr.Row():
        page.cmp_prev = gr.Button("Previous ↔ current", size="sm", elem_id="cmp-prev")
        page.cmp_orig = gr.Button("Original ↔ current", size="sm", elem_id="cmp-orig")


def render_settings(page: Page, engine: Engine, brand: Branding | None = None) -> None:
    brand = brand or Branding()
    prof = engine.profile
    with gr.Accordion("Seed", open=True, visible=brand.shows("seed")):
        page.seed_mode = gr.Radio(
            [("Random each turn", "random"), ("Fixed: use this seed", "fixed"),
             ("Locked: reuse the current step's seed", "locked")],
            value="random", show_label=False, elem_id="seed-mode",
        )
        page.seed = gr.Number(label="Seed (shows the one used after each turn)", value=0, precision=0,
                              minimum=0, maximum=P.MAX_SEED, elem_id="seed")
        page.variations_choice = gr.Radio(
            list(range(1, P.MAX_VARIATIONS + 1)), value=1, label="Variations per instruction",
            info="2 to 4: candidates with seeds s, s+1, … to pick from (each takes about an edit's time)",
            elem_id="variations")
        page.variations = gr.State(1)
    with gr.Accordion("Advanced", open=False, visible=brand.shows("advanced")):
        page.guidance = gr.Slider(1.0, 10.0, value=prof.default_guidance, step=0.1, label="Guidance",
                                  info="How strongly to follow the instruction (2.5 is the model card's value)",
                                  elem_id="guidance")
        page.steps = gr.Slider(P.MIN_STEPS, 50, value=prof.default_steps, step=1, label="Steps",
                               info="Fewer steps: faster, rougher", elem_id="steps")
        page.size = gr.Dropdown([label for label, _ in P.size_choices(prof)], value="Match input",
                                label="Output size", elem_id="size")
    with gr.Accordion("Share", open=False, elem_id="share-box", visible=brand.shows("share")):
        gr.Markdown("A read-only link to this picture's steps (all its branches, as they grow): whoever has it "
                    "can look, compare, present and download, never edit. *Stop sharing* turns every link of "
                    "this session off.", elem_classes=["hint"])
        page.share_names = gr.Checkbox(False, label="Show file names (of uploaded pictures) on the link",
                                       elem_id="share-names")
        page.share_live = gr.Checkbox(False, label="Live: viewers follow each step as it happens (no reload)",
                                      info="Off: the link shows the steps as they are whenever it is opened",
                                      elem_id="share-live")
        with gr.Row(equal_height=True):
            page.share_btn = gr.Button("Make a read-only link", size="sm", elem_id="share-btn")
            page.unshare_btn = gr.Button("Stop sharing", size="sm", variant="stop", elem_id="unshare-btn")
        page.share_token = gr.Textbox(visible=False, elem_id="share-token")
        page.share_link = gr.Textbox(label="Link", interactive=False, buttons=["copy"], elem_id="share-link",
                                              placeholder="press Make a read-only link")
    with gr.Accordion("Export / import", open=False, elem_id="share", visible=brand.shows("export")):
        page.scope = gr.Radio([("Current path", "path"), ("This tree (all its branches)", "tree"),
                                        ("Every tree", "all")], value="path", label="What to export",
                                       elem_id="export-scope")
        page.export_btn = gr.Button("Export ZIP + GIF + contact sheet", size="sm", elem_id="export-btn")
        page.files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                      elem_id="export-files")
        page.import_btn = gr.UploadButton("Import an exported ZIP", file_types=[".zip"], size="sm",
                                                   elem_id="import-btn")
    page.new_btn = gr.Button("Start over (clears this session)", size="sm", variant="secondary", elem_id="new-btn",
                             visible=brand.shows("start-over"))
    page.confirm = gr.Checkbox(visible=False, value=False)
    gr.Markdown(
        f"Tip: after about {DRIFT_TURNS} edits in a row details can soften: *Redo path as one edit* applies all "
        "instructions at once to the original, or branch from an earlier step. "
        "Ctrl+Z / Ctrl+Shift+Z undo and redo outside the text box; 1 to 4 pick a variation.",
        elem_classes=["hint"],
    )


def render_examples(page: Page, catalog: Catalog, brand: Branding) -> None:
    """Example pictures (click: a new chain with its instruction filled in) and example chains
    (click: every instruction runs in turn)."""
    if catalog.examples and brand.shows("examples"):
        page.examples = gr.Dataset(
            components=["image", "textbox", "textbox"], headers=["Picture", "Shows", "Instruction"], type="index",
            samples=[[str(e.image), e.title, e.prompt] for e in catalog.examples], samples_per_page=10,
            label="Try an example: click one to start from its picture, with its instruction filled in",
            elem_id="examples", layout="table")
    if catalog.chains and brand.shows("chains"):
        page.chains = gr.Dataset(
            components=["image", "textbox", "textbox"], headers=["Picture", "Chain", "Instructions, in turn"],
            type="index",
            samples=[[str(c.image), c.title, " → ".join(c.prompts)] for c in catalog.chains], samples_per_page=10,
            label="Example chains: click one to run all its instructions, turn by turn (Stop ends it)",
            elem_id="chains", layout="table")


def render_present(page: Page) -> None:
    """A full-window presentation of the current path: before/after per step, its instruction as a
    caption, ← → (and buttons) to move, Esc or the button to go back. Hidden until opened."""
    with gr.Column(visible=False, elem_id="present") as col:
        page.present = col
        with gr.Row(elem_id="present-bar", equal_height=True):
            # The way back sits on the left: gradio's notices appear top right and would cover it.
            page.present_close = gr.Button("✕ Back to editing", size="sm", scale=0, min_width=150,
                                                    elem_id="present-close")
            page.present_count = gr.Markdown("", elem_id="present-count")
        page.present_caption = gr.Markdown("", elem_id="present-caption")
        page.present_slider = gr.ImageSlider(show_label=False, type="filepath", format="png",
                                                      max_height=720, elem_id="present-slider", buttons=[])
        with gr.Row(elem_id="present-nav"):
            page.present_prev = gr.Button("◀ Previous", elem_id="present-prev")
            page.present_next = gr.Button("Next ▶", variant="primary", elem_id="present-next")
        page.present_at = gr.State(0)


def render_drift(page: Page) -> None:
    """Drift from the original over the turns of the current path (kontext/core/drift.py), as a small SVG
    chart drawn by ui/view.drift_svg (no plotting library, so it renders the same everywhere)."""
    page.drift_plot = gr.HTML("", elem_id="drift-plot")
