"""A turn's picture is stored uncompressed before the turn is answered (the wait is the model's, not
zlib's), then compressed in the background; the file is a whole PNG of the same picture throughout."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

from kontext.core import metadata
from kontext.sessions.session import EditOptions

FAST = EditOptions(steps=2)
STEP = {"id": 3, "kind": "edit", "prompt": "a <b> & \"c\"", "seed": 7, "model": "tiny"}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_the_stored_form_is_the_same_png(mode):
    rng = np.random.default_rng(0)
    bands = {"RGB": 3, "RGBA": 4}.get(mode, 1)
    pixels = rng.integers(0, 256, (48, 80, bands), dtype=np.uint8).squeeze()
    img = Image.fromarray(pixels, mode if bands > 1 else "L").convert(mode)
    stored, packed = metadata.stored_png_bytes(img, STEP), metadata.png_bytes(img, STEP)
    a, b = Image.open(io.BytesIO(stored)), Image.open(io.BytesIO(packed))
    assert (a.mode, a.size) == (b.mode, b.size)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert metadata.read_metadata(stored) == metadata.read_metadata(packed)
    assert metadata.read_metadata(stored)["step"] == STEP


def test_a_turn_is_answered_stored_and_compressed_after(sessions, photo, monkeypatch):
    jobs = []
    # hold the compression back
    monkeypatch.setattr(sessions.compactor, "submit", lambda job, name="": jobs.append(job))
    key = sessions.new()
    sessions.upload(key, Image.new("RGB", (96, 64), (200, 120, 40)))
    _, node = sessions.edit(key, "make it blue", FAST)
    path = sessions.store.image_path(key, node.image)
    stored = path.read_bytes()
    public = sessions.store.public_path(key, node.image)  # a link served before the compression
    assert metadata.read_metadata(stored)["step"]["id"] == node.id
    used = sessions.store.used_bytes()

    assert len(jobs) == 1
    jobs[0]()  # the compression, as the background thread runs it
    packed = path.read_bytes()
    assert len(packed) < len(stored)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(packed))), np.asarray(Image.open(io.BytesIO(stored))))
    assert metadata.read_metadata(packed) == metadata.read_metadata(stored)
    assert public.read_bytes() == packed  # the public link names the compressed file too
    assert sessions.store.used_bytes() == used - (len(stored) - len(packed))


def test_a_removed_picture_is_not_brought_back(sessions, photo, monkeypatch):
    jobs = []
    monkeypatch.setattr(sessions.compactor, "submit", lambda job, name="": jobs.append(job))
    key = sessions.new()
    sessions.upload(key, photo)
    _, node = sessions.edit(key, "x", FAST)
    sessions.clear(key)  # start over: the session's files are deleted before the compression runs
    jobs[0]()
    assert not sessions.store.image_path(key, node.image).exists()


def test_compression_runs_in_the_background(sessions, photo):
    key = sessions.new()
    sessions.upload(key, Image.new("RGB", (96, 64), (10, 200, 40)))
    _, node = sessions.edit(key, "x", FAST)
    sessions.compactor.wait_idle()
    data = sessions.store.image_path(key, node.image).read_bytes()
    assert data == metadata.png_bytes(Image.open(io.BytesIO(data)), metadata.read_metadata(data)["step"])


def test_the_next_edit_starts_from_the_picture_in_memory(sessions, photo, monkeypatch):
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.edit(key, "one", FAST)
    read = []
    original = sessions.store.read_image_bytes
    monkeypatch.setattr(sessions.store, "read_image_bytes", lambda *a: read.append(a) or original(*a))
    _, second = sessions.edit(key, "two", FAST)
    assert read == []  # the parent came from memory, not from its PNG
    sessions._pictures.drop(lambda k: True)
    sessions.edit(key, "three", FAST, parent=second.parent)
    assert len(read) == 1  # forgotten: read from disk, as after a restart


def test_an_export_waits_for_its_own_pictures_only(sessions, photo):
    from kontext.files.compactor import Compactor

    c = Compactor()
    mine = threading.Event()
    c.submit(mine.set, "mine.png")
    assert mine.wait(60)
    held = threading.Event()
    c.submit(held.wait, "other-session.png")  # another session's compression, held
    c.submit(lambda: None, "other-session-2.png")  # ...and one queued behind it
    c.wait_for(["mine.png"])  # returns although the other session's two are still pending
    assert not held.is_set()
    held.set()
    c.wait_idle()
    c.wait_for(["other-session.png", "other-session-2.png"])


def test_a_large_picture_is_neither_kept_in_memory_nor_queued(sessions, monkeypatch):
    from kontext.sessions import keeper

    monkeypatch.setattr(keeper, "KEEP_PIXELS", 32 * 32)
    monkeypatch.setattr("kontext.sessions.running.KEEP_PIXELS", 32 * 32)
    queued = []
    monkeypatch.setattr(sessions.compactor, "submit", lambda job, name="": queued.append(job))
    key = sessions.new()
    sessions.upload(key, Image.new("RGB", (96, 64), (10, 20, 30)))
    _, node = sessions.edit(key, "x", FAST)
    assert queued == [] and len(sessions._pictures) == 0  # compressed at once, read from its file next time
    data = sessions.store.image_path(key, node.image).read_bytes()
    assert data == metadata.png_bytes(Image.open(io.BytesIO(data)), metadata.read_metadata(data)["step"])
