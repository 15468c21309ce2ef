"""Branding from a TOML file and flags (kontext/showcase/branding.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from kontext.errors import UserError
from kontext.showcase.branding import DEFAULT_TITLE, load_branding


def test_defaults_and_file_and_flags(tmp_path):
    assert load_branding().title == DEFAULT_TITLE and load_branding().shows("advanced")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "logo.png")
    (tmp_path / "brand.toml").write_text('title = "Acme"\ndescription = "Our pictures"\nlogo = "logo.png"\n'
                                         'accent = "#0E7490"\nhide = ["advanced", "seed"]\nexamples = "none"\n')
    b = load_branding(tmp_path / "brand.toml")
    assert (b.title, b.description, b.accent) == ("Acme", "Our pictures", "#0e7490")
    assert b.logo == (tmp_path / "logo.png").resolve() and b.no_examples
    assert not b.shows("advanced") and not b.shows("seed") and b.shows("reference")
    b = load_branding(tmp_path / "brand.toml", title="Flag wins", hide="share", accent=None)
    assert b.title == "Flag wins" and b.hide == {"share"} and b.accent == "#0e7490"


@pytest.mark.parametrize("text, words", [
    ('accent = "blurple"', "accent must be #rrggbb or one of"),
    ('hide = ["advanced", "canvas"]', "unknown control 'canvas'"),
    ('logo = "missing.png"', "is not a file"),
    ('title = ""', "title must be 1-80 characters"),
    ('colour = "red"', "unknown setting 'colour'"),
    ('title = "x', "not valid TOML"),
])
def test_bad_settings_are_named(tmp_path, text, words):
    (tmp_path / "b.toml").write_text(text + "\n")
    with pytest.raises(UserError, match=words):
        load_branding(tmp_path / "b.toml")


def test_the_page_follows_the_branding(engine, tmp_path):
    from kontext.files.store import Store
    from kontext.hosting.config import Settings
    from kontext.sessions.session import Sessions
    from ui import build_ui
    from ui.app import launch_kwargs, theme

    Image.new("RGB", (32, 32), "red").save(tmp_path / "logo.png")
    brand = load_branding(title="Acme demo", hide="advanced,share,examples", accent="#0e7490",
                          logo=str(tmp_path / "logo.png"))
    settings = Settings(model="tiny", data_dir=tmp_path, branding=brand)
    demo = build_ui(Sessions(engine, Store(tmp_path / "s")), settings)
    assert demo.title == "Acme demo"
    props = {c["props"].get("elem_id"): c["props"] for c in demo.config["components"] if c["props"].get("elem_id")}
    assert props["share-box"]["visible"] is False and props["reference"]["visible"] is not False
    assert "examples" not in props and "chains" in props  # hidden examples are not even built
    assert "# Acme demo" in props["title"]["value"] and "logo" in props
    t = launch_kwargs(settings)["theme"]
    assert t.primary_500 == "#0e7490" == theme("#0e7490").primary_500
    assert launch_kwargs(Settings(data_dir=tmp_path))["theme"].primary_500 != "#0e7490"


def test_a_bad_branding_flag_stops_the_app_in_words():
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "app.py", "--model", "tiny", "--hide", "canvas"], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert out.returncode != 0 and "hide: unknown control 'canvas'" in out.stderr
