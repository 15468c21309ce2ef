"""Speed options on the tiny model (CPU): validation, step caching, draft, offload, int8, warm-up."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from kontext.errors import Cancelled
from kontext.model import speed as S
from kontext.model.engine import Engine
from kontext.model.speed import SpeedOptions, choose_low_memory, parse_mode

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def eager(tiny_dir):
    return Engine.load("tiny", device="cpu", cache_dir=tiny_dir)


def load(tiny_dir, **kw) -> Engine:
    return Engine.load("tiny", device="cpu", cache_dir=tiny_dir, speed=SpeedOptions(**kw))


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def picture(side: int = 128):
    from PIL import Image

    return Image.linear_gradient("L").convert("RGB").resize((side, side))


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, name", [
    (dict(compile="yes"), "compile"),
    (dict(draft=1), "draft"),
    (dict(attention="warp"), "attention"),
    (dict(quantize="fp4"), "quantize"),
    (dict(cache="magic"), "cache"),
    (dict(offload="disk"), "offload"),
    (dict(cache="fbcache", cache_threshold=2.0), "cache_threshold"),
    (dict(cache_threshold=0.1), "cache_threshold"),
    (dict(compile=True, offload="sequential"), "offload"),
])
def test_invalid_options_name_the_option(kw, name):
    with pytest.raises(ValueError, match=name):
        SpeedOptions(**kw)


def test_invalid_choice_lists_allowed_values():
    with pytest.raises(ValueError, match="fp8, int8"):
        SpeedOptions(quantize="fp4")


@pytest.mark.parametrize("label", [
    "eager", "compile", "compile+fp8", "fast", "fast@0.2+offload-model", "int8+offload-group",
    "taylorseer+attn-native+draft", "compile+fast",
])
def test_mode_names_round_trip(label):
    assert parse_mode(label).label == label


def test_mode_words_in_any_order():
    assert parse_mode("fp8+compile") == SpeedOptions(compile=True, quantize="fp8")
    assert parse_mode("eager") == SpeedOptions()


@pytest.mark.parametrize("bad, word", [("warp", "warp"), ("fast@x", "fast@x"), ("offload-disk", "offload"),
                                       ("", "mode")])
def test_unknown_mode_words_are_named(bad, word):
    with pytest.raises(ValueError, match=word):
        parse_mode(bad)


@pytest.mark.parametrize("gib, offload, quantize", [
    (141, "none", None), (80, "none", None), (40, "none", None), (32, "model", None),
    (24, "model", "int8"), (16, "group", "int8"), (8, "group", "int8"),
])
def test_choose_low_memory(gib, offload, quantize):
    got = choose_low_memory(gib * 2**30)
    assert got[:2] == (offload, quantize)
    assert f"{gib} GiB" in got[2]


def test_choose_low_memory_rejects_nonsense():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="total_gpu_bytes"):
            choose_low_memory(bad)


# --- device requirements ---------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_fp8_on_cpu_says_what_it_needs(tiny_dir):
    with pytest.raises(RuntimeError, match=r"fp8.*compute capability 8\.9"):
        load(tiny_dir, quantize="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_gpu_attention_backend_on_cpu_is_refused(tiny_dir):
    with pytest.raises(RuntimeError, match="_native_flash.*CUDA"):
        load(tiny_dir, attention="_native_flash")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_sequential_offload_on_cpu_is_refused(tiny_dir):
    with pytest.raises(RuntimeError, match="sequential.*CUDA"):
        load(tiny_dir, offload="sequential")


def test_offload_argument_and_speed_must_agree(tiny_dir):
    with pytest.raises(ValueError, match="offload"):
        Engine.load("tiny", device="cpu", cache_dir=tiny_dir, offload="model", speed=SpeedOptions(offload="group"))


def test_offload_argument_alone_still_works(tiny_dir):
    engine = Engine.load("tiny", device="cpu", cache_dir=tiny_dir, offload="group")
    assert engine.speed == SpeedOptions(offload="group")


# --- behaviour on the tiny model --------------------------------------------------------------------
def test_eager_records_its_mode(eager):
    assert eager.edit(picture(), "sky", seed=3, steps=2).extra["speed"] == "eager"


def test_cache_changes_nothing_about_seed_and_size(eager, tiny_dir):
    fast = load(tiny_dir, cache="fbcache")
    a = eager.edit(picture(96), "make it blue", seed=7, steps=6)
    b = fast.edit(picture(96), "make it blue", seed=7, steps=6)
    assert (b.seed, b.width, b.height, b.steps, b.image.size) == (a.seed, a.width, a.height, a.steps, a.image.size)
    assert b.extra["speed"] == "fast"
    assert pixels(b).std() > 1  # an image, not a blank


def test_cache_really_skips_blocks_with_a_high_threshold(tiny_dir):
    fast = load(tiny_dir, cache="fbcache", cache_threshold=0.9)
    runs = []
    fast.pipe.transformer.single_transformer_blocks[-1].attn.register_forward_hook(lambda *a: runs.append(1))
    fast.edit(picture(), "sky", seed=1, steps=10)
    assert 1 <= len(runs) < 10


def test_cache_is_reset_after_a_cancelled_edit(tiny_dir):
    """A cancelled call leaves cached residuals behind; the next edit must not use them.

    The cancelled edit has another prompt and seed: its residuals would change the next result."""
    fresh = load(tiny_dir, cache="fbcache", cache_threshold=0.9)
    want = pixels(fresh.edit(picture(), "red", seed=5, steps=8))
    used = load(tiny_dir, cache="fbcache", cache_threshold=0.9)
    cancel = threading.Event()

    def stop_at_5(ev):
        if ev.step == 5:
            cancel.set()

    with pytest.raises(Cancelled):
        used.edit(picture(), "blue", seed=9, steps=8, on_step=stop_at_5, cancel=cancel)
    assert np.array_equal(pixels(used.edit(picture(), "red", seed=5, steps=8)), want)


def test_taylorseer_cache_runs(eager, tiny_dir):
    ts = load(tiny_dir, cache="taylorseer")
    r = ts.edit(picture(), "sky", seed=2, steps=8)
    assert r.image.size == eager.edit(picture(), "sky", seed=2, steps=8).image.size


def test_draft_uses_a_quarter_of_the_area(eager, tiny_dir):
    draft = load(tiny_dir, draft=True)
    w, h = draft.output_size(None)
    ew, eh = eager.output_size(None)
    assert w * h * 4 == ew * eh
    r = draft.edit(picture(200), "sky", seed=1, steps=2)
    assert r.image.size == (w, h)
    assert r.extra["speed"] == "draft"


@pytest.mark.parametrize("offload", ["group", "model"])
def test_offload_gives_the_eager_image(eager, tiny_dir, offload):
    # On a CPU the offload device is the compute device: the hooks run, the arithmetic is the same.
    got = pixels(load(tiny_dir, offload=offload).edit(picture(), "sky", seed=4, steps=3))
    want = pixels(eager.edit(picture(), "sky", seed=4, steps=3))
    assert np.abs(got - want).max() <= 1


def test_int8_weights_on_cpu(eager, tiny_dir):
    pytest.importorskip("torchao")
    q = load(tiny_dir, quantize="int8")
    got = q.edit(picture(), "sky", seed=4, steps=3)
    want = eager.edit(picture(), "sky", seed=4, steps=3)
    assert got.image.size == want.image.size
    assert type(q.pipe.transformer.transformer_blocks[0].attn.to_q.weight).__name__ != "Parameter"


def test_warm_up_reports_progress_and_fits_the_preview(tiny_dir):
    engine = load(tiny_dir)
    messages = []
    seconds = S.warm_up(engine, messages.append)
    assert seconds > 0
    assert messages[0].startswith("warming up (eager)") and messages[-1].startswith("warm-up done")
    assert engine._previewer is not None and engine._previewer._weights is not None


def test_warm_up_with_compile_covers_two_shapes():
    from kontext.core.params import TINY_PROFILE

    class FakeEngine:
        speed = SpeedOptions(compile=True)
        profile = TINY_PROFILE

        def __init__(self):
            self.sizes = []

        def edit(self, image, prompt, **kw):
            self.sizes.append(image.size)

        def preview(self, ev):
            pass

    engine = FakeEngine()
    S.warm_up(engine)
    assert len(set(engine.sizes)) == 2


# --- compile wiring (compiling itself takes ~45 s on a CPU: see BENCHMARKS.md) -------------------------
class _FakeTransformer:
    def __init__(self):
        self.calls = []
        self.dtype = torch.float32

    def compile_repeated_blocks(self, **kw):
        self.calls.append(("compile", kw))

    def enable_cache(self, config):
        self.calls.append(("cache", type(config).__name__))


class _FakePipe:
    def __init__(self):
        self.transformer = _FakeTransformer()

    def to(self, device):
        pass


@pytest.mark.parametrize("opts, fullgraph", [
    (SpeedOptions(compile=True), True),
    (SpeedOptions(compile=True, cache="fbcache"), False),  # the cache's skip decision breaks the graph
])
def test_compile_after_cache_and_fullgraph_only_without_cache(opts, fullgraph, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # empty: the default folder; restored afterwards
    monkeypatch.setenv("KONTEXT_CACHE", str(tmp_path))
    pipe = _FakePipe()
    S.apply_speed(pipe, opts, "cpu")
    assert pipe.transformer.calls[-1] == ("compile", {"fullgraph": fullgraph})
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")


@pytest.mark.gpu
@needs_cuda
def test_fp8_on_gpu(tiny_dir):
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < S.FP8_MIN_CAPABILITY:
        pytest.skip("fp8 needs compute capability 8.9 or higher")
    engine = Engine.load("tiny", device="cuda", cache_dir=tiny_dir, speed=SpeedOptions(quantize="fp8"))
    r = engine.edit(picture(), "sky", seed=1, steps=2)
    assert r.image.size == (128, 128) and r.extra["speed"] == "fp8"
