"""Shared fixtures: the tiny model is saved once per test run into a temporary cache."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)  # on 2 cores one thread is faster for the tiny model
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test never touches the network


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny model, saved once into a cache that subprocesses find through $KONTEXT_CACHE."""
    from kontext.tiny import ensure_tiny_model

    os.environ["KONTEXT_CACHE"] = str(tmp_path_factory.mktemp("kontext-cache"))
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def engine(tiny_dir):
    from kontext.engine import Engine

    return Engine.load("tiny", cache_dir=tiny_dir)


@pytest.fixture
def store(tmp_path):
    from kontext.store import Store

    return Store(tmp_path / "sessions")


@pytest.fixture
def sessions(engine, store):
    from kontext.session import Sessions

    return Sessions(engine, store)


@pytest.fixture
def photo():
    """A small picture with structure (not flat), 3:2."""
    from PIL import Image

    return Image.effect_noise((96, 64), 40).convert("RGB")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
