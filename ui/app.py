"""Build the page: layout from `layout`, wiring from `events`, endpoints from `api`."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from kontext.core import images
from kontext.hosting import Settings, Startup, browser_secret
from kontext.sessions import Sessions
from kontext.showcase import Catalog, load_catalog

from . import mcp, uploads
from .access import LoginGuard, LoginLimit
from .api import Api
from .events import Wiring, withhold_inputs
from .layout import (
    Page,
    engine_status_text,
    render_compare,
    render_drift,
    render_editor,
    render_engine_status,
    render_examples,
    render_header,
    render_present,
    render_settings,
    render_timeline,
)
from .live import MAX_LIVE_VIEWERS
from .public import image_route
from .showcase import Showcase
from .viewer import Viewer

# assets/ beside ui/ in a checkout; inside the package when installed from a wheel (pyproject.toml).
_HERE = Path(__file__).resolve().parent
ASSETS = _HERE / "assets" if (_HERE / "assets").is_dir() else _HERE.parent / "assets"


def catalog_for(settings: Settings) -> Catalog:
    """The example set: the branding file's, none, or the one shipped in assets/examples/."""
    brand = settings.branding
    if brand.no_examples:
        return Catalog()
    return load_catalog(brand.examples or ASSETS / "examples" / "examples.toml")


def build_ui(sessions: Sessions, settings: Settings, startup: Startup | None = None) -> gr.Blocks:
    """The whole app as a gr.Blocks. Loads no model: `sessions.engine` is already loaded.

    `startup` (optional) reports a background warm-up; the page shows its progress until it is done.
    A second page, /view, is the read-only shared view (ui/viewer.py).
    """
    # Gradio opens uploads with Pillow before we see them: kontext.core.images set Pillow's bomb limit.
    mcp.adapt()  # tool results as images and JSON (ui/mcp.py); harmless without --mcp
    # Session images are served in place from the store's public folder (links named by random
    # names): no copy in gradio's cache, and no session folder (history, prompts) is ever served.
    public = sessions.store.public_dir
    public.mkdir(parents=True, exist_ok=True)
    catalog = catalog_for(settings)
    if sessions.results is not None:
        sessions.results.allow(catalog)  # only these instructions are ever cached
    brand = settings.branding
    gr.set_static_paths([public])  # example pictures and the logo are initial values: gradio caches those
    page = Page()
    # delete_cache: uploads, previews and exports in gradio's cache go after an hour (checked every
    # ten minutes); session images are not there (they are served from the store's public folder).
    with gr.Blocks(title=brand.title, fill_width=True, delete_cache=(600, 3600)) as demo:
        page.key = gr.BrowserState(None, storage_key="kontext-session", secret=browser_secret(settings))
        page.shown = gr.State(None)
        render_header(sessions.engine, settings)
        status = render_engine_status(sessions.engine, startup)
        page.ref_name = gr.State(None)  # the stored reference image this tab edits with
        page.seed_before = gr.State(None)  # the visitor's seed choice while an example's seed is set
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                render_editor(page, brand)
                render_examples(page, catalog, brand)
            with gr.Column(scale=2, min_width=300):
                with gr.Tabs():
                    with gr.Tab("Timeline", id="timeline-tab"):
                        render_timeline(page)
                        render_drift(page)
                    with gr.Tab("Compare", id="compare-tab", elem_id="compare-tab", visible=brand.shows("compare")):
                        render_compare(page)
                render_settings(page, sessions.engine, brand)
        render_present(page)
        wiring = Wiring(page, sessions, login=settings.login)
        showcase = Showcase(wiring, catalog)
        wiring.wire(more_runs=showcase.wire_runs)
        showcase.wire()
        demo.load(wiring.load, [page.key], [page.key, *wiring.view_outputs], queue=False,
                  api_name="ui_load", api_visibility="undocumented")
        demo.load(lambda: engine_status_text(sessions.engine, startup), None, status, queue=False,
                  api_visibility="private")  # whether aot calls still run compiled, at each page load
        Api(sessions, login=settings.login).wire()
    with demo.route("Shared view", "/view", show_in_navbar=False):
        viewer = Viewer(sessions)
        viewer.render(brand.title)
        viewer.wire(demo)
    withhold_inputs(demo)  # gradio's refusals of malformed calls would print their inputs, keys among them
    demo.kontext_public = public  # for ui/mcp.py's links (launch_kwargs serves them at ui/public.ROUTE)
    return demo


def launch_kwargs(settings: Settings, public_dir: Path | None = None) -> dict:
    """launch() options: the static ones below. The session folder is not among the allowed paths:
    only its public folder of images is served (as static files, see build_ui), and, given
    `public_dir` (the store's), by name at /images (ui/public.py)."""
    data = Path(settings.data_dir).resolve()
    kw = dict(LAUNCH_KWARGS, css_paths=[ASSETS / "style.css"], js=(ASSETS / "shortcuts.js").read_text("utf-8"),
              blocked_paths=[str(data / ".browser-secret"), str(data / "shares.json"), str(data / "shares.jsonl")],
              theme=theme(settings.branding.accent))
    # The largest file any input takes: a picture (kontext.core.images) or an export ZIP to import,
    # which may be as large as a session's share of the disk (kontext.sessions.transfer).
    kw["max_file_size"] = max(images.MAX_FILE_BYTES, settings.max_session_bytes)
    # gradio runs at most max_threads events at once, all events together (40 by default): live
    # share-link viewers each hold one while they follow, so they get workers of their own.
    kw["max_threads"] = 40 + MAX_LIVE_VIEWERS
    app_kwargs: dict = {"lifespan": uploads.sweeper(settings.upload_keep_s)}  # gradio chains its own
    # gradio's traffic dashboard is the host's: /monitoring/summary answers anyone who reaches the app,
    # so it is on only behind the password (None: on, without printing its secret URL at start-up).
    kw["enable_monitoring"] = None if settings.auth else False
    if settings.auth:
        kw["auth"] = list(settings.auth)  # self-hosted: the whole app and its API need a password
        guard = LoginGuard([user for user, _ in settings.auth], settings.login_tries, settings.login_max_wait_s)
        app_kwargs["middleware"] = [Middleware(LoginLimit, guard=guard)]
        # gradio's login page shows nothing for a refused try (429): it says the rule up front.
        kw["auth_message"] = (f"After {settings.login_tries} wrong passwords from one address or for one user, "
                              "each further try must wait longer (1 s, doubling, up to "
                              f"{settings.login_max_wait_s / 60:g} minutes).")
    if public_dir is not None:
        app_kwargs["routes"] = [image_route(Path(public_dir).resolve())]
    kw["app_kwargs"] = app_kwargs
    return kw


def queue_kwargs(settings: Settings) -> dict:
    """demo.queue() options. GPU events do not wait in gradio's queue but in kontext's TurnQueue
    (ui/events.py, ui/api.py), which refuses a second turn of a session and says who is ahead;
    max_size bounds everything else, so a flood of requests is refused instead of piling up."""
    return dict(default_concurrency_limit=1, max_size=4 * (settings.gpu_slots + settings.max_waiting) + 16)


# Passed to launch(): gradio 6 takes theme/css/js there (the assets are read in launch_kwargs, not
# at import, so importing the UI needs no files beside it). ssr_mode and run_history stay off: in
# gradio 6.27-6.31 a forged Host header could reach the saved HF token through run-history endpoints.
def theme(accent: str) -> gr.themes.Base:
    """gradio's Soft theme in the accent colour: a hue name, or #rrggbb (its shades mixed with white
    and black around it)."""
    if not accent.startswith("#"):
        return readable(gr.themes.Soft(primary_hue=accent))
    rgb = [int(accent[i:i + 2], 16) for i in (1, 3, 5)]

    def mix(to: int, t: float) -> str:
        return "#" + "".join(f"{round(c + (to - c) * t):02x}" for c in rgb)

    light = [mix(255, t) for t in (0.95, 0.85, 0.7, 0.5, 0.25)]  # 50 .. 400
    dark = [mix(0, t) for t in (0.15, 0.3, 0.45, 0.6, 0.7)]  # 600 .. 950
    shades = [*light, accent, *dark]
    names = ["c50", "c100", "c200", "c300", "c400", "c500", "c600", "c700", "c800", "c900", "c950"]
    return readable(gr.themes.Soft(primary_hue=gr.themes.Color(name="brand", **dict(zip(names, shades, strict=True)))))


def readable(t: gr.themes.Base) -> gr.themes.Base:
    """Text in the theme's colours with at least 4.5:1 contrast (WCAG AA; axe found the Soft theme's
    labels at 3.62:1, the primary button at 4.46:1, the selected tab at 4.27:1 and grey hints at 2.42:1):
    labels, accents and the primary button one or two shades darker, greys one shade darker."""
    return t.set(block_label_text_color="*primary_700", block_title_text_color="*primary_700",
                 color_accent="*primary_600", checkbox_label_background_fill_selected="*primary_600",
                 button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
                 input_placeholder_color="*neutral_500", body_text_color_subdued="*neutral_500")


LAUNCH_KWARGS = dict(
    ssr_mode=False,
    run_history=False,
    footer_links=["api"],
    # Errors gradio raises before our handlers (too few arguments, a file path outside its upload
    # folder) reach the client with their words; our handlers raise only gr.Error (ui/events.py).
    show_error=True,
)
