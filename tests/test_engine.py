import threading

import numpy as np
import pytest
from PIL import Image

from kontext.errors import Cancelled, ModelLoadError
from kontext.model.engine import Engine


def pixels(img):
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("size", [(96, 96), (96, 64), (64, 128)])  # square, 3:2, 1:2
def test_output_keeps_input_aspect_ratio(engine, size):
    img = Image.effect_noise(size, 30).convert("RGB")
    out = engine.edit(img, "make it blue", seed=1, steps=2)
    w, h = out.image.size
    assert (w, h) == (out.width, out.height)
    assert abs(w / h - size[0] / size[1]) < 0.08
    assert w % 16 == 0 and h % 16 == 0


def test_same_seed_same_pixels_different_seed_different(engine, photo):
    a = engine.edit(photo, "add a hat", seed=7, steps=2)
    b = engine.edit(photo, "add a hat", seed=7, steps=2)
    c = engine.edit(photo, "add a hat", seed=8, steps=2)
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert not np.array_equal(pixels(a.image), pixels(c.image))


def test_random_seed_is_drawn_and_recorded(engine, photo):
    a = engine.edit(photo, "x", steps=1)
    b = engine.edit(photo, "x", steps=1, seed=a.seed)
    assert isinstance(a.seed, int) and np.array_equal(pixels(a.image), pixels(b.image))


def test_chain_passes_each_output_as_next_context(engine, photo, monkeypatch):
    seen = []
    real = engine.pipe.__class__.__call__

    def spy(pipe, *args, **kw):
        seen.append(None if kw.get("image") is None else pixels(kw["image"]).copy())
        return real(pipe, *args, **kw)

    monkeypatch.setattr(engine.pipe.__class__, "__call__", spy)
    current = photo
    outputs = []
    for i in range(4):
        out = engine.edit(current, f"turn {i}", seed=i, steps=2)
        outputs.append(out.image)
        current = out.image
    assert len(seen) == 4
    for i in range(1, 4):
        assert np.array_equal(seen[i], pixels(outputs[i - 1]))


def test_text_to_image(engine):
    out = engine.edit(None, "a red fox in snow", seed=3, steps=2)
    assert out.image.size == (out.width, out.height) == engine.output_size(None)
    out2 = engine.edit(None, "a red fox in snow", seed=3, steps=2, width=128, height=64)
    assert out2.image.size == (128, 64)


def test_cancel_mid_run_returns_nothing(engine, photo):
    cancel = threading.Event()
    steps = []

    def on_step(ev):
        steps.append(ev.step)
        if ev.step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.edit(photo, "x", seed=1, steps=4, on_step=on_step, cancel=cancel)
    assert steps == [1, 2]
    # The next call is unaffected by the cancelled one.
    a = engine.edit(photo, "x", seed=1, steps=2)
    b = engine.edit(photo, "x", seed=1, steps=2)
    assert np.array_equal(pixels(a.image), pixels(b.image))


def test_progress_reports_every_step(engine, photo):
    events = []
    engine.edit(photo, "x", seed=1, steps=3, on_step=events.append)
    assert [(e.step, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    preview = engine.preview(events[-1])
    assert preview.mode == "RGB" and preview.size[0] > 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="x" * 5000), "prompt"),
    (dict(seed=-1), "seed"),
    (dict(seed=2**40), "seed"),
    (dict(seed="7"), "seed"),
    (dict(steps=0), "steps"),
    (dict(steps=1000), "steps"),
    (dict(guidance=-1.0), "guidance"),
    (dict(guidance=float("nan")), "guidance"),
    (dict(width=100, height=64), "width"),
    (dict(width=64, height=4096), "height"),
    (dict(width=64), "width and height"),
    (dict(image="not an image"), "image"),
])
def test_validation_errors_name_the_argument(engine, photo, kwargs, name):
    args = dict(image=photo, prompt="ok")
    args.update(kwargs)
    image = args.pop("image")
    prompt = args.pop("prompt")
    with pytest.raises(ValueError, match=name):
        engine.edit(image, prompt, **args)


def test_unknown_local_folder_is_a_clear_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        Engine.load(str(tmp_path / "nope"))


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="offload"):
        Engine.load("tiny", offload="sideways")
    with pytest.raises(ValueError, match="dtype"):
        Engine.load("tiny", dtype="int3")


def test_text_replacement_prompt_quotes_exact_text():
    from kontext.core.params import text_replacement_prompt

    assert text_replacement_prompt(" OPEN ", 'CLO"SED') == (
        "Replace \"OPEN\" with \"CLO'SED\", keep the same font, size, colour and position")
    with pytest.raises(ValueError, match="text now is empty"):
        text_replacement_prompt("", "x")
    with pytest.raises(ValueError, match="replace with is empty"):
        text_replacement_prompt("x", " ")


def test_out_of_memory_while_loading_is_told_apart():
    import torch

    from kontext.model.hub import explain_load_error

    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as inner:
            raise OSError("Error loading transformer") from inner
    except OSError as e:
        msg = explain_load_error("black-forest-labs/FLUX.1-Kontext-dev", e)
    assert msg.startswith("cannot load black-forest-labs/FLUX.1-Kontext-dev: out of memory")


def test_real_model_offline_fails_with_a_plain_error(monkeypatch, tmp_path):
    # No weights here and the hub is off: the error explains, and nothing falls back to tiny.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="not in the local cache and offline mode is on"):
        Engine.load("black-forest-labs/FLUX.1-Kontext-dev", device="cpu")


def test_the_revision_is_the_snapshot_the_cache_ref_points_to(tmp_path, monkeypatch):
    import os
    import time

    import huggingface_hub.constants

    from kontext.model.engine import _loaded_revision

    repo = tmp_path / "models--owner--name"
    used, newer = "a" * 40, "b" * 40
    for commit in (used, newer):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    later = time.time() + 100
    os.utime(repo / "snapshots" / newer, (later, later))  # touched last, but not what main points to
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(used)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _loaded_revision("owner/name") == used
    assert _loaded_revision(str(tmp_path)) == ""  # a local folder has no hub revision
