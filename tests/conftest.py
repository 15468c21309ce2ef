"""Shared fixtures: the tiny model (and its aot package) is saved once per test run into a temporary
cache that every `pytest -n` worker shares."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # on 2 cores one thread is faster for the tiny model
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test never touches the network
# Inductor otherwise builds a probe program per vector ISA in every process that compiles (about 6 s
# of g++ each, and the start-up bench's cold child has empty caches by design). The ISAs are still
# picked from the CPU's own flags; only the compiler probe is skipped. Children inherit it.
os.environ.setdefault("TORCHINDUCTOR_VEC_ISA_OK", "1")


def _run_dir(tmp_path_factory) -> Path:
    """A folder shared by every worker of this run (`pytest -n` gives each worker a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def _torch_compilers_untraced():
    """Under `--cov`, run torch's exporter and AOTInductor compiler with the line tracer paused: they
    are tens of thousands of Python lines outside kontext/ and ui/ that coverage never reports but
    would trace, which doubled the compile's time. The kontext code around them is still measured."""
    import coverage

    cov = coverage.Coverage.current()
    if cov is None:
        yield
        return
    import torch._inductor

    def untraced(fn):
        def call(*args, **kwargs):
            cov.stop()
            try:
                return fn(*args, **kwargs)
            finally:
                cov.start()

        return call

    patch = pytest.MonkeyPatch()
    patch.setattr(torch.export, "export", untraced(torch.export.export))
    patch.setattr(torch._inductor, "aot_compile", untraced(torch._inductor.aot_compile))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny model, saved once per run into a cache that every worker and subprocess finds through
    $KONTEXT_CACHE; the first worker saves it, the others wait on the lock and find it."""
    from filelock import FileLock

    from kontext.model.tiny import ensure_tiny_model

    run = _run_dir(tmp_path_factory)
    os.environ["KONTEXT_CACHE"] = str(run / "kontext-cache")
    with FileLock(str(run / "kontext-cache.lock")):
        return ensure_tiny_model()


@pytest.fixture(scope="session")
def aot_package(tiny_dir):
    """The tiny model's aot package, exported and compiled once per run for the tests that need it:
    the first worker compiles it into the shared cache and writes down what the compile said; the
    others wait on the lock and load it. Returns (engine with the package installed, package path,
    what the compile said)."""
    from filelock import FileLock

    from kontext.model import aot
    from kontext.model.engine import Engine
    from kontext.model.speed import parse_mode, warm_up

    cache = Path(os.environ["KONTEXT_CACHE"])
    with FileLock(str(cache / "aot-package.lock")):
        engine = Engine.load("tiny", cache_dir=tiny_dir, speed=parse_mode("aot"))
        path, told = aot.artefact_path(engine), cache / "aot-compile-said.json"
        if told.is_file():  # another worker of this run compiled it
            warm_up(engine, sizes=[], steps=1)
            return engine, path, json.loads(told.read_text())
        path.unlink(missing_ok=True)  # this run's cache is new, so this is only a guard: compile anew
        said: list[str] = []
        warm_up(engine, said.append, sizes=[], steps=1)
        told.write_text(json.dumps(said))
        return engine, path, said


@pytest.fixture(scope="session")
def engine(tiny_dir):
    from kontext.model.engine import Engine

    return Engine.load("tiny", cache_dir=tiny_dir)


@pytest.fixture
def store(tmp_path):
    from kontext.files.store import Store

    return Store(tmp_path / "sessions")


@pytest.fixture
def sessions(engine, store):
    from kontext.sessions.session import Sessions

    return Sessions(engine, store)


@pytest.fixture
def photo():
    """A small picture with structure (not flat), 3:2."""
    from PIL import Image

    return Image.effect_noise((96, 64), 40).convert("RGB")


# Markers that say why a test is slow; each one also makes it `slow`, so `pytest -m "not slow"` is the
# quick inner loop (README) and the whole suite runs in CI.
SLOW_BECAUSE = ("browser", "ray", "compile", "process")


def pytest_itemcollected(item):
    if any(m in item.keywords for m in SLOW_BECAUSE):
        item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(config, items):
    _heaviest_files_first(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# `pytest -n` hands out whole files (--dist loadfile: a file's app, browser or Ray pool starts once) in
# collection order, a new one to each worker about to run dry (--no-loadscope-reorder keeps this order);
# handing out the longest first keeps both workers busy to the end. A file's expected seconds, from
# the markers that say why its tests are slow: each test's own cost, plus the start-up its file pays once.
TEST_SECONDS = {"compile": 30, "ray": 5, "browser": 6, "process": 3}
FILE_START_SECONDS = {"ray": 25, "browser": 15}


def _heaviest_files_first(items):
    cost: dict[str, float] = {}
    kinds: dict[str, set[str]] = {}
    for item in items:
        mine = [m for m in TEST_SECONDS if m in item.keywords]
        cost[item.fspath] = cost.get(item.fspath, 0) + max((TEST_SECONDS[m] for m in mine), default=0.3)
        kinds.setdefault(item.fspath, set()).update(mine)
    for path, found in kinds.items():
        cost[path] += sum(FILE_START_SECONDS.get(m, 0) for m in found)
    items.sort(key=lambda item: -cost[item.fspath])  # stable: a file's tests keep their order

