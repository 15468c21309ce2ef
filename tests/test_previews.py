"""Previews show the predicted result (x0 estimate), not the noisy state (kontext/model/previews.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kontext.model.engine import Engine

VELOCITY = 0.3


@pytest.fixture
def fresh(tiny_dir):
    """An engine of its own: these tests replace its transformer's forward."""
    return Engine.load("tiny", cache_dir=tiny_dir)


def constant_velocity(engine):
    def forward(*args, hidden_states=None, **kwargs):
        out = torch.full_like(hidden_states, VELOCITY)
        return (out,) if kwargs.get("return_dict") is False else out
    engine.pipe.transformer.forward = forward


def run(engine, steps=6, **kw):
    events = []
    image = Image.effect_noise((64, 64), 40).convert("RGB")
    engine.edit(image, "x", seed=3, steps=steps, width=64, height=64, on_step=events.append, **kw)
    return events


def test_with_a_constant_velocity_the_first_estimate_is_the_final_latent(fresh):
    constant_velocity(fresh)
    events = run(fresh)
    final = events[-1].latents.float()
    assert torch.allclose(events[0].estimate, final, atol=1e-5)  # after step 1 already
    for ev in events:
        assert torch.allclose(ev.estimate, final, atol=1e-5)
    # The noisy state is not: before the last step it still carries the noise.
    assert not torch.allclose(events[0].latents.float(), final, atol=1e-2)


def test_the_estimate_is_the_state_minus_sigma_times_velocity(fresh):
    """x0 = x_next - sigma_next * v, from two successive states and their sigmas."""
    events = run(fresh, steps=5)
    sigmas = fresh.pipe.scheduler.sigmas
    for i in range(1, len(events)):
        prev, cur = events[i - 1].latents.float(), events[i].latents.float()
        v = (cur - prev) / (sigmas[i + 1] - sigmas[i])
        assert torch.allclose(events[i].estimate, cur - sigmas[i + 1] * v, atol=1e-4), i


def test_previews_follow_the_mode_and_the_image_is_unchanged(fresh):
    a = run(fresh)
    fresh.set_preview_mode("noisy")
    b = run(fresh)
    assert all(ev.estimate is None for ev in b)  # nothing kept in the old view
    assert np.array_equal(np.asarray(fresh.preview(b[0])), np.asarray(fresh.preview(
        type(b[0])(b[0].step, b[0].total, b[0].latents, 64, 64))))
    fresh.set_preview_mode("estimate")
    assert not np.array_equal(np.asarray(fresh.preview(a[0])), np.asarray(fresh.preview(b[0])))
    # Watching the steps never changes the result.
    image = Image.effect_noise((64, 64), 40).convert("RGB")
    watched = fresh.edit(image, "x", seed=3, steps=6, width=64, height=64, on_step=lambda ev: None).image
    plain = fresh.edit(image, "x", seed=3, steps=6, width=64, height=64).image
    assert np.array_equal(np.asarray(watched), np.asarray(plain))
    with pytest.raises(ValueError, match="preview must be one of"):
        fresh.set_preview_mode("vae")
