"""Drift from the original (kontext/core/drift.py) and re-anchoring (Sessions.reanchor)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from kontext.core.drift import measure
from kontext.errors import UserError
from kontext.sessions.session import EditOptions


def photo():
    """A colourful picture with structure (three different noise fields as R, G, B)."""
    bands = [Image.effect_noise((100, 75), s).resize((400, 300), Image.BICUBIC) for s in (30, 60, 90)]
    return Image.merge("RGB", bands)


def test_an_unchanged_picture_has_no_drift_and_a_changed_one_grows():
    a = photo()
    same = measure(a, a.copy())
    assert same.delta_e == 0 and same.ssim == pytest.approx(1.0)
    shifts = [measure(a, ImageEnhance.Color(a).enhance(1 + k)).delta_e for k in (0.2, 0.6, 1.5)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]  # more colour shift, more ΔE
    blur = [measure(a, a.resize((400 // k, 300 // k)).resize((400, 300))).ssim for k in (2, 4, 8)]
    assert 1 > blur[0] > blur[1] > blur[2]  # more softening, less structure
    resized = measure(a, a.resize((800, 600)))  # the same picture at another size: the structure stays
    assert resized.ssim > 0.95 and resized.delta_e < shifts[2]

def test_the_measure_stays_cheap_at_any_size(monkeypatch):
    """Cheap because the arithmetic runs on at most 128 px a side, whatever the picture's size (its
    speed is in BENCHMARKS.md, not asserted here)."""
    from kontext.core import drift

    shapes = []
    real_lab = drift._lab
    monkeypatch.setattr(drift, "_lab", lambda rgb: (shapes.append(rgb.shape), real_lab(rgb))[1])
    big = photo().resize((4000, 3000))
    measure(big, big.resize((1024, 1024)))
    assert shapes == [(96, 128, 3), (96, 128, 3)]


def test_the_curve_follows_the_path_and_reanchor_branches_from_the_original(sessions):
    key = sessions.new()
    sessions.upload(key, photo())
    for prompt in ("one", "two", "three"):
        sessions.edit(key, prompt, EditOptions(steps=2))
    curve = sessions.drift_curve(key)
    assert [n.prompt for n, _ in curve] == ["one", "two", "three"]
    assert all(d.delta_e > 0 for _, d in curve)  # the tiny model's output is nothing like the photo
    assert "moved far from the original" in sessions.drift_warning(key)
    h, node = sessions.reanchor(key)
    assert node.parent == 1 and node.prompt == "three" and node.seed == h.node(4).seed
    assert len(sessions.drift_curve(key)) == 1  # the new branch: one edit of the original
    with pytest.raises(UserError, match="already edits the original"):
        sessions.reanchor(key)
    assert np.asarray(sessions.image(key, 1)).shape == (300, 400, 3)


def test_the_chart_starts_at_the_original():
    from kontext.core.drift import Drift
    from ui.view import drift_series, drift_svg

    assert drift_svg([]) == ""
    curve = [(None, Drift(10.0, 0.75)), (None, Drift(20.0, 0.5))]
    assert drift_series(curve) == ([0.0, 10.0, 20.0], [0.0, 25.0, 50.0])  # turn 0: the original
    svg = drift_svg(curve)
    assert svg.count("<polyline") == 2 and "colour ΔE <b>20</b>" in svg and "<b>50 %</b>" in svg
    assert drift_svg(curve[:1]).count("<polyline") == 2  # one edit already draws a line from the original
