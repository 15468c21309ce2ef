import pytest

from kontext.speed import SpeedOptions
from kontext.startup import Startup, resolve_speed
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

    monkeypatch.setattr("kontext.startup.warm_up", boom)
    startup = Startup()
    startup.run(engine)
    assert startup.done.is_set() and "out of GPU memory" in engine_status_text(engine, startup)


def test_fast_mode_is_labelled_on_the_page(engine, monkeypatch):
    monkeypatch.setattr(engine, "speed", SpeedOptions(cache="fbcache"))
    assert "differ slightly" in engine_status_text(engine, None)
