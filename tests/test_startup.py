import pytest

from kontext.hosting.startup import Startup, resolve_speed
from kontext.model.speed import SpeedOptions
from ui.layout import engine_status_text


def test_auto_without_cuda_is_eager():
    opts, reason = resolve_speed("auto", "cpu")
    assert opts == SpeedOptions() and "eager" in reason


def test_explicit_mode_and_bad_mode():
    opts, reason = resolve_speed("fast", None)
    assert opts.cache == "fbcache" and "asked for" in reason
    with pytest.raises(ValueError, match="unknown word"):
        resolve_speed("warp-speed", None)


def test_warm_up_in_background_reports_progress_and_done(engine):
    startup = Startup()
    assert "preparing the model" in engine_status_text(engine, startup)
    startup.start(engine).join(60)
    assert startup.done.is_set() and startup.error is None
    assert startup.message.startswith("ready (warm-up")
    assert "preparing" not in engine_status_text(engine, startup)


def test_warm_up_failure_is_shown_not_raised(engine, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("out of GPU memory")

    monkeypatch.setattr("kontext.hosting.startup.warm_up", boom)
    startup = Startup()
    startup.run(engine)
    assert startup.done.is_set() and "out of GPU memory" in engine_status_text(engine, startup)


def test_fast_mode_is_labelled_on_the_page(engine, monkeypatch):
    monkeypatch.setattr(engine, "speed", SpeedOptions(cache="fbcache"))
    assert "differ slightly" in engine_status_text(engine, None)


def test_zerogpu_is_eager_and_refuses_what_needs_cuda_outside_the_worker():
    opts, reason = resolve_speed("auto", "cuda", zerogpu=True)
    assert opts == SpeedOptions() and "ZeroGPU" in reason
    assert resolve_speed("fast", "cuda", zerogpu=True)[0].cache == "fbcache"  # pure Python hooks are fine
    for mode, word in (("compile", "compile"), ("int8", "quantize"), ("offload-model", "offload")):
        with pytest.raises(ValueError, match=f"uses .*{word}.*ZeroGPU does not support"):
            resolve_speed(mode, "cuda", zerogpu=True)
    with pytest.raises(ValueError, match="offload"):
        resolve_speed("auto", "cuda", offload="model", zerogpu=True)


class FakeProps:
    def __init__(self, gib):
        self.total_memory = int(gib * 2**30)


def fake_gpu(monkeypatch, gib):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: FakeProps(gib))


def test_an_explicit_offload_keeps_the_int8_auto_would_add(monkeypatch):
    fake_gpu(monkeypatch, 24)
    opts, reason = resolve_speed("auto", "cuda")
    assert (opts.offload, opts.quantize) == ("model", "int8")
    opts, reason = resolve_speed("auto", "cuda", offload="group")
    assert (opts.offload, opts.quantize) == ("group", "int8") and "--offload group (asked for)" in reason


def test_the_memory_hint_says_what_auto_does():
    from kontext.model.speed import LOW_MEMORY_TIERS, choose_low_memory, memory_hint

    hint = memory_hint()
    for floor, offload, quantize in LOW_MEMORY_TIERS:
        got = choose_low_memory(int(max(floor, 8) * 2**30))
        assert got[:2] == (offload, quantize)
        assert (f"from {floor} GiB" if floor else "below that") in hint
    assert "model offload with int8 weights from 20 GiB" in hint and "24 GB" not in hint
