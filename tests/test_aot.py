"""The aot speed mode and output buckets (kontext/model/aot.py, kontext/core/buckets.py), on the tiny model on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kontext.core import buckets as B
from kontext.core import params as P
from kontext.errors import UserError
from kontext.model.speed import parse_mode

ROOT = Path(__file__).resolve().parent.parent


def test_real_buckets_are_the_trained_resolutions_and_their_drafts():
    full = B.buckets(P.REAL_PROFILE, draft=False)
    assert [(b.width, b.height) for b in full] == list(P.PREFERRED_RESOLUTIONS)
    drafts = B.buckets(P.REAL_PROFILE, draft=True)
    assert all(b.draft and abs(b.tokens - 1024) < 80 for b in drafts)  # about a quarter of 1 MP
    assert B.nearest(1920, 1080, P.REAL_PROFILE).label == "1392×752 (87:47)"
    assert B.nearest(1000, 1000, P.REAL_PROFILE) == B.Bucket(1024, 1024)
    assert B.nearest(100, 400, P.REAL_PROFILE) == B.Bucket(672, 1568)  # past the range: the extreme one
    lo, hi = B.token_range(P.REAL_PROFILE)
    assert lo == min(b.tokens for b in drafts) and hi == 2 * max(b.tokens for b in full)
    with pytest.raises(UserError, match="positive whole numbers"):
        B.nearest(0, 10, P.REAL_PROFILE)


def test_tiny_buckets_have_the_same_aspects_at_the_tiny_area():
    tiny = B.buckets(P.TINY_PROFILE, draft=False)
    assert all(b.width % 16 == 0 and b.height % 16 == 0 for b in tiny)
    assert all(abs(b.width * b.height - P.TINY_PROFILE.default_area) < 0.3 * P.TINY_PROFILE.default_area for b in tiny)


@pytest.mark.parametrize("mode, words", [
    ("aot+compile", "use aot"),
    ("aot+fast", "use fast or compile+fast"),
    ("aot+offload-model", "compile+offload-model"),
    ("aot+offload-group", "compile+offload-model"),
    ("compile+offload-group", "use compile+offload-model, or offload-group without compile"),
    ("compile+offload-sequential", "compile+offload-model"),
])
def test_invalid_combinations_name_a_working_alternative(mode, words):
    with pytest.raises(UserError, match=words.replace("+", r"\+")):
        parse_mode(mode)
    alternative = words.split("use ")[-1].split(",")[0].split(" or ")[0]
    parse_mode(alternative)  # and the alternative really is a valid mode


def test_aot_is_allowed_on_zerogpu_but_not_with_quantized_weights():
    from kontext.hosting.startup import resolve_speed

    opts, reason = resolve_speed("aot", "cuda", zerogpu=True)
    assert opts.aot and "lent GPU" in reason
    with pytest.raises(UserError, match="ZeroGPU does not support"):
        resolve_speed("int8", "cuda", zerogpu=True)


LOAD_AND_EDIT = """
import json, sys
import torch
torch.set_num_threads(1)
from kontext.model.engine import Engine
from kontext.model.speed import parse_mode, warm_up
from PIL import Image
e = Engine.load("tiny", speed=parse_mode("aot"))
said = []
warm_up(e, said.append, sizes=[], steps=1)
img = e.edit(Image.open(sys.argv[1]), "make it blue", seed=3, steps=2, width=128, height=128).image
img.save(sys.argv[2])
print(json.dumps({"said": said, "calls": e.aot.calls, "fallbacks": e.aot.fallbacks}))
"""


@pytest.mark.compile
def test_aot_exports_compiles_packages_and_loads_in_a_fresh_process(aot_package, tiny_dir, tmp_path):
    """Export, AOTInductor compile and package on the first start; the next start only loads; the
    images match eager; no bucket falls back to eager (nothing is compiled again)."""
    from kontext.model import aot
    from kontext.model.engine import Engine

    env_cache = os.environ["KONTEXT_CACHE"]
    engine, path, said = aot_package  # compiled once for the run (tests/conftest.py)
    assert path.is_file() and any("compiling ahead of time" in m for m in said), said
    libs = aot.package_libraries(path)  # ZeroGPU's workers refuse a library that asks for an executable stack
    assert libs and not any(exec_stack for _, exec_stack in libs), libs
    assert aot.aot_dir() == Path(env_cache) / "aot"  # beside the tiny model and the inductor cache

    eager = Engine.load("tiny", cache_dir=tiny_dir)
    src = Image.effect_noise((96, 64), 40).convert("RGB")
    for b in B.buckets(engine.profile):  # every size the page offers, drafts included
        kw = dict(seed=1, steps=1, width=b.width, height=b.height)
        a = np.asarray(engine.edit(src, "x", **kw).image, np.int16)
        e = np.asarray(eager.edit(src, "x", **kw).image, np.int16)
        assert np.abs(a - e).max() <= 2, b  # same image as eager within 2 levels of 255
    engine.edit(None, "text to image", seed=1, steps=1)  # no context: the fewest tokens
    assert engine.aot.fallbacks == 0 and engine.aot.calls > 0
    assert len(list(aot.aot_dir().glob("*.pt2"))) >= 1
    mtime = path.stat().st_mtime_ns

    src_path, out_path = tmp_path / "src.png", tmp_path / "out.png"
    src.save(src_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", LOAD_AND_EDIT, str(src_path), str(out_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    assert fresh["fallbacks"] == 0 and fresh["calls"] == 2
    assert path.stat().st_mtime_ns == mtime  # loaded, not compiled again
    # The fresh start only loaded the package (what made the first start slow never ran).
    assert any("loading the compiled transformer" in m for m in fresh["said"]), fresh["said"]
    assert not any("exporting" in m or "compiling" in m for m in fresh["said"]), fresh["said"]
    here = engine.edit(src, "make it blue", seed=3, steps=2, width=128, height=128).image
    assert np.array_equal(np.asarray(here), np.asarray(Image.open(out_path)))  # the same package, the same image


def test_match_input_picks_the_nearest_bucket_in_aot_mode(tiny_dir, store):
    import dataclasses

    from kontext.model.engine import Engine
    from kontext.model.speed import SpeedOptions
    from kontext.sessions.session import EditOptions, Sessions
    from ui.view import status_text

    engine = Engine.load("tiny", cache_dir=tiny_dir)
    engine.speed = dataclasses.replace(engine.speed, aot=True)  # the rule only; nothing compiled here
    s = Sessions(engine, store)
    key = s.new()
    s.upload(key, Image.effect_noise((300, 100), 40).convert("RGB"))  # 3:1, beyond the widest bucket
    h, node = s.edit(key, "x", EditOptions(steps=1))
    widest = B.nearest(300, 100, engine.profile)
    assert (node.width, node.height) == (widest.width, widest.height)
    assert "nearest compiled size" in status_text(h, "tiny") and node.extra["bucket"] == f"{node.width}×{node.height}"
    _, draft = s.edit(key, "y", EditOptions(steps=1, draft=True), parent=1)
    d = B.nearest(300, 100, engine.profile, draft=True)
    assert (draft.width, draft.height) == (d.width, d.height)
    assert SpeedOptions(aot=True).label == "aot"


def test_hub_attention_names_the_package_it_needs(monkeypatch):
    import importlib.util

    import torch

    from kontext.model.speed import SpeedOptions, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kernels" else object())
    with pytest.raises(RuntimeError, match=r"`kernels` package: pip install 'kontext-playground\[speed\]'"):
        check_device(SpeedOptions(attention="flash_hub"), "cuda")


@pytest.mark.compile
def test_aot_with_int8_weights_binds_the_quantized_tensors(tiny_dir, tmp_path, monkeypatch):
    """int8 weights (torchao tensor subclasses) through the same export -> compile -> package -> load
    path: the package binds the quantized weights' inner tensors, runs every call compiled, and gives
    the int8 eager image within a level; fp8 takes this path on a GPU that has it."""
    pytest.importorskip("torchao")
    from kontext.model import aot
    from kontext.model.engine import Engine
    from kontext.model.speed import warm_up

    monkeypatch.setenv("KONTEXT_AOT_DIR", str(tmp_path / "aot"))
    engine = Engine.load("tiny", cache_dir=tiny_dir, speed=parse_mode("aot+int8"))
    warm_up(engine, sizes=[], steps=1)
    assert aot.artefact_path(engine).parent == tmp_path / "aot" and engine.aot.package is not None
    int8 = Engine.load("tiny", cache_dir=tiny_dir, speed=parse_mode("int8"))
    src = Image.effect_noise((96, 64), 40).convert("RGB")
    got = engine.edit(src, "x", seed=2, steps=2)
    want = int8.edit(src, "x", seed=2, steps=2)
    assert got.extra["compiled_calls"] == 2 and engine.aot.fallbacks == 0
    assert np.abs(np.asarray(got.image, np.int16) - np.asarray(want.image, np.int16)).max() <= 2
    attn = engine.pipe.transformer.transformer_blocks[0].attn
    assert type(attn.to_qkv.weight).__name__ != "Parameter"  # still quantized, and fused
    assert not hasattr(attn, "to_q")  # the separate projections are gone, not kept beside the fused one


def test_fused_qkv_gives_the_same_image_and_holds_no_second_copy(tiny_dir):
    from kontext.model.engine import Engine
    from kontext.model.speed import fuse_qkv

    engine = Engine.load("tiny", cache_dir=tiny_dir)
    src = Image.effect_noise((96, 64), 40).convert("RGB")
    before = np.asarray(engine.edit(src, "x", seed=2, steps=2).image, np.int16)
    tr = engine.pipe.transformer
    count = sum(p.numel() for p in tr.parameters())
    fuse_qkv(tr)
    assert sum(p.numel() for p in tr.parameters()) == count
    assert all(getattr(m, "fused_projections", True) for m in tr.modules() if hasattr(m, "to_qkv"))
    after = np.asarray(engine.edit(src, "x", seed=2, steps=2).image, np.int16)
    assert np.abs(after - before).max() <= 1


def test_a_failed_aot_compile_on_zerogpu_leaves_edits_eager_and_the_page_says_so(capsys):
    from types import SimpleNamespace

    import app
    from ui.layout import engine_status_text

    class Zero:  # kontext.hosting.zerogpu's ZeroGPU half, whose start-up GPU call fails
        @staticmethod
        def zerogpu_aot_function():
            def compile_on_gpu():
                raise RuntimeError("CUDA error: no kernel image is available")
            return compile_on_gpu

    engine = SimpleNamespace(aot=None, model_id="tiny", device="cuda", speed=parse_mode("aot"))
    message, error = app.prepare_aot_on_zerogpu(engine, Zero)
    assert engine.aot is None and message == "ready" and not engine.speed.aot  # recorded as eager from now on
    startup = SimpleNamespace(reason="", error=error, done=SimpleNamespace(is_set=lambda: True), message=message)
    assert "ahead-of-time compile failed (RuntimeError), so edits run eager" in engine_status_text(engine, startup)


def test_a_package_that_cannot_load_in_a_worker_leaves_that_worker_eager(tiny_dir, tmp_path, caplog):
    """On ZeroGPU each worker loads the package itself; one that cannot (a damaged file, another GPU)
    runs the transformer eagerly and says why once, instead of failing every turn."""
    from kontext.model import aot
    from kontext.model.engine import Engine

    engine = Engine.load("tiny", cache_dir=tiny_dir)
    bad = tmp_path / "transformer-damaged.pt2"
    bad.write_bytes(b"not a package")
    engine.aot = aot.install(engine, bad, load_now=False)
    src = Image.effect_noise((96, 64), 40).convert("RGB")
    r = engine.edit(src, "x", seed=1, steps=2)
    r2 = engine.edit(src, "x", seed=1, steps=2)
    assert r.extra["compiled_calls"] == 0 and engine.aot.fallbacks == 4
    assert np.array_equal(np.asarray(r.image), np.asarray(r2.image))
    assert sum("cannot load the compiled transformer" in m for m in caplog.messages) == 1
    # Never silent: the step, the page's engine status and the log each say it ran eagerly, and why.
    assert r.extra["eager_calls"] == 2 and "transformer-damaged.pt2 could not be loaded" in r.extra["eager_cause"]
    assert engine.aot.describe().startswith("compiled: no (4 eager call(s)) — the package transformer-damaged.pt2")
    assert engine.aot.describe().endswith("; running eagerly")


def test_a_call_outside_the_compiled_range_runs_eagerly_and_says_why(tiny_dir, tmp_path, caplog):
    from types import SimpleNamespace

    from kontext.model import aot
    from kontext.model.engine import Engine
    from ui.layout import engine_status_text
    from ui.view import status_text

    engine = Engine.load("tiny", cache_dir=tiny_dir)
    engine.aot = aot.install(engine, tmp_path / "never-loaded.pt2", load_now=False)
    engine.aot.tokens = (1, 2)  # compiled for fewer tokens than any real call has
    r = engine.edit(Image.effect_noise((96, 64), 40).convert("RGB"), "x", seed=1, steps=2)
    assert r.extra["compiled_calls"] == 0 and r.extra["eager_calls"] == 2
    assert "image tokens, outside the compiled range 1-2" in r.extra["eager_cause"]
    assert sum("runs eagerly" in m for m in caplog.messages) == 1  # once per cause, not once per step
    startup = SimpleNamespace(reason="", error=None, done=SimpleNamespace(is_set=lambda: True), message="ready")
    assert "compiled: no (2 eager call(s)) — " in engine_status_text(engine, startup)
    node = SimpleNamespace(id=2, kind="edit", extra=r.extra, seed=1, seconds=0.1, width=r.width, height=r.height,
                           steps=2, guidance=2.5)
    assert "**ran eagerly** (2 transformer calls): " in status_text(SimpleNamespace(current_node=node), "tiny")


def test_the_executable_stack_flag_is_read_and_cleared(tmp_path):
    """kontext/model/elf.py on a real shared library linked with an executable stack, checked against readelf."""
    import shutil
    import subprocess

    from kontext.model import elf

    if not (shutil.which("gcc") and shutil.which("readelf")):
        pytest.skip("needs gcc and readelf")
    src, lib = tmp_path / "x.c", tmp_path / "libx.so"
    src.write_text("int answer(void) { return 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-z,execstack", "-o", str(lib), str(src)], check=True)

    def readelf_stack() -> str:
        out = subprocess.run(["readelf", "-lW", str(lib)], capture_output=True, text=True, check=True).stdout
        return next(line.split()[-2] for line in out.splitlines() if "GNU_STACK" in line)

    assert readelf_stack() == "RWE" and elf.wants_exec_stack(lib.read_bytes())
    assert elf.clear_exec_stack(lib) is True
    assert readelf_stack() == "RW" and not elf.wants_exec_stack(lib.read_bytes())
    assert elf.clear_exec_stack(lib) is False  # nothing left to clear
    with pytest.raises(ValueError, match="not an ELF file"):
        elf.wants_exec_stack(b"PK\x03\x04 a zip, not a library")


def test_a_second_process_waits_for_the_one_compiling_and_uses_its_package(tmp_path, monkeypatch):
    """Pool workers share the cache: while one compiles (holding PACKAGE.lock) another waits, then
    finds the package and does not compile it again. The lock ends with the process holding it."""
    import threading
    from types import SimpleNamespace

    from kontext.model import aot

    path = tmp_path / "transformer-x.pt2"
    monkeypatch.setattr(aot, "artefact_path", lambda engine: path)
    compiled = []
    monkeypatch.setattr(aot, "export_and_compile", lambda engine, p, say: compiled.append(p) or p.write_bytes(b"mine"))
    other = subprocess.Popen(  # the other process: takes the lock, "compiles" for a while, exits
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(1.5); open(sys.argv[2], 'wb').write(b'theirs')",
         f"{path}.lock", str(path)], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "locked"
    said: list[str] = []
    engine = SimpleNamespace(_lock=threading.RLock())
    assert aot.ensure_package(engine, said.append) == path
    other.wait(10)
    assert compiled == [] and path.read_bytes() == b"theirs"
    assert said == ["waiting for another process that is compiling transformer-x.pt2"]
    path.unlink()  # nobody else compiling: this process compiles, without waiting
    said.clear()
    aot.ensure_package(engine, said.append)
    assert compiled == [path] and said == []
