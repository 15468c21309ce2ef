"""Branding from a TOML file and flags (kontext/branding.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from kontext.branding import DEFAULT_TITLE, load_branding
from kontext.errors import UserError


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
