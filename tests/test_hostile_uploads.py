"""Every bad upload answered in plain words through the intake and the API, the ones too large
refused before any pixel is decoded; the odd-but-valid ones accepted as plain RGB with no foreign
metadata (tests/hostile_corpus.py). How fast the intake answers is in BENCHMARKS.md."""

import io
import os
import time
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from hostile_corpus import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from apphelpers import running_app
from kontext.core.images import open_image
from kontext.errors import UserError
from kontext.files.store import Store
from kontext.sessions.session import EditOptions, Sessions

CORPUS = corpus()


def test_the_corpus_is_large_and_mixed():
    assert len(CORPUS) >= 60
    assert {e for _, _, e in CORPUS} == {"ok", "refused"}


# Refused for their declared size: no pixel of these may be decoded (the expensive part of a bomb).
SIZE_REFUSALS = ("bomb", "tiny-", "side-too-long", "aspect-", "too-big-file")


@pytest.fixture
def decodes(monkeypatch):
    """The sizes of every image whose pixels were decoded (Pillow's ImageFile.load) while it runs."""
    from PIL import ImageFile

    seen: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        seen.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


@pytest.mark.parametrize("name, data, expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_intake_answers_each_file(name, data, expected, decodes):
    if expected == "refused":
        with pytest.raises(UserError, match=r"^image: "):
            open_image(data, "image")
        if name.startswith(SIZE_REFUSALS):
            assert decodes == [], f"{name}: pixels decoded before the size was refused"
        assert len(decodes) <= 1  # a damaged file is found out by one decode, not retried
    else:
        img = open_image(data, "image")
        assert img.mode == "RGB" and img.info == {}


def png_chunks(data: bytes) -> list[bytes]:
    out, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 8])
        i += 12 + n
    return out


def test_a_foreign_profile_never_reaches_our_pngs_and_the_step_edits_and_exports(sessions, tmp_path):
    data = dict((n, d) for n, d, _ in CORPUS)["big-icc-profile.jpg"]
    key = sessions.new()
    sessions.upload(key, data, name="icc.jpg")
    stored = sessions.store.read_image_bytes(key, sessions.history(key).current_node.image)
    assert b"iCCP" not in png_chunks(stored) and b"eXIf" not in png_chunks(stored)
    sessions.edit(key, "make it blue", EditOptions(steps=2))
    out = io.BytesIO()
    sessions.export(key, out)
    again = Sessions(sessions.engine, Store(tmp_path / "other"))
    k2 = again.new()
    assert len(again.import_zip(k2, out.getvalue()).history) == 2


def test_gps_exif_is_not_kept(sessions):
    data = dict((n, d) for n, d, _ in CORPUS)["with-gps-exif.jpg"]
    key = sessions.new()
    sessions.upload(key, data)
    stored = sessions.store.read_image_bytes(key, sessions.history(key).current_node.image)
    assert Image.open(io.BytesIO(stored)).getexif().get(0x8825) is None


def _valid_png() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((48, 32), 40).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _valid_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((48, 32), 40).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


SEEDS = [_valid_png(), _valid_jpeg()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, 1), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       keep=st.integers(0, 10_000), compressed=st.booleans())
def test_fuzzed_files_are_either_pictures_or_plain_refusals(which, cuts, keep, compressed):
    data = bytearray(SEEDS[which])
    for pos, value in cuts:
        data[pos % len(data)] = value
    data = bytes(data[: max(1, keep % (len(data) + 1))])
    if compressed:
        data = zlib.compress(data)
    try:
        img = open_image(data, "image")
    except UserError as e:
        assert str(e).startswith("image: ")
    else:
        assert img.mode == "RGB"


@pytest.mark.process  # serves the app on a port
def test_every_corpus_file_through_the_api(engine, tmp_path, decodes):
    from gradio.processing_utils import hash_bytes
    from gradio.utils import get_upload_folder
    from gradio_client.utils import strip_invalid_filename_characters

    sessions = Sessions(engine, Store(tmp_path / "sessions"))
    with running_app(sessions, tmp_path) as url:
        c = Client(url, verbose=False)
        key = c.predict(api_name="/new_session")
        accepted = 0
        for name, data, expected in CORPUS:
            if len(data) > 20 * 2**20:
                continue  # the oversized file is covered by the intake test; uploading 50 MB twice is slow
            path = tmp_path / name
            path.write_bytes(data)
            decodes.clear()
            # Where gradio keeps the upload: its folder, the bytes' hash, the name (gradio/route_utils.py).
            kept = Path(get_upload_folder()) / hash_bytes(data) / strip_invalid_filename_characters(name)
            if expected == "refused":
                with pytest.raises(Exception, match=r"image: ") as info:
                    c.predict(key, handle_file(str(path)), api_name="/upload")
                assert "upstream" not in str(info.value) and "&#x27;" not in str(info.value)
                assert not kept.exists(), f"{name}: the refused upload was left in gradio's folder"
            else:
                _, h = c.predict(key, handle_file(str(path)), api_name="/upload")
                accepted += 1
                assert len(h["steps"]) == accepted
                assert kept.exists()  # an accepted one stays until the sweep (ui/uploads.py)
            if expected == "refused" and name.startswith(SIZE_REFUSALS):
                assert decodes == [], f"{name}: the server decoded pixels before refusing it"
            # The reference input goes through the same intake.
            if expected == "refused" and name.startswith("bomb"):
                with pytest.raises(Exception, match=r"reference: "):
                    c.predict(key, "x", "random", 0, 0, 2, 0, 0, handle_file(str(path)), False, api_name="/edit")
        assert len(sessions.history(key)) == accepted  # refusals never touched the history


@pytest.mark.parametrize("name", ["ztxt-bomb.png", "iccp-bomb.png"])
def test_a_compressed_chunk_that_expands_past_the_limit_is_called_so(name):
    data = dict((n, d) for n, d, _ in CORPUS)[name]
    with pytest.raises(UserError) as info:
        open_image(data, "image")
    assert str(info.value) == ("image: a compressed text or colour-profile chunk expands to more than 1 MB "
                               "when unpacked (a decompression bomb)")


def test_text_chunks_that_together_pass_the_limit_are_called_so(monkeypatch):
    from PIL import PngImagePlugin

    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 2**20)  # 64 MB of text would make a slow test
    info = PngImagePlugin.PngInfo()
    for i in range(3):
        info.add_text(f"comment{i}", "x" * 400_000)  # each chunk small, together past the limit
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG", pnginfo=info)
    with pytest.raises(UserError) as raised:
        open_image(buf.getvalue(), "image")
    assert str(raised.value) == "image: its text chunks together hold more than 1 MB (a decompression bomb)"


class FakeApp:
    """What ui/uploads.py reads of a gradio Blocks: its upload list and its blocks' cached files."""

    def __init__(self, kept=()):
        from types import SimpleNamespace

        self.upload_file_set: set[str] = set()
        self.blocks = {1: SimpleNamespace(keep_in_cache=set(kept), temp_files=set())}

    def upload(self, folder, name: str, data: bytes = b"x", age_s: float = 0) -> str:
        import os
        import time

        path = folder / name[:4] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        past = time.time() - age_s
        os.utime(path, (past, past))
        self.upload_file_set.add(str(path))
        return str(path)


def test_a_refused_upload_is_deleted_at_once_and_nothing_else(tmp_path):
    from gradio.context import LocalContext

    from ui.events import friendly

    example = tmp_path / "cache" / "example.png"
    example.parent.mkdir()
    example.write_bytes(b"x")
    blocks = FakeApp(kept={str(example)})
    refused = blocks.upload(tmp_path, "big.png")
    other = blocks.upload(tmp_path, "other.png")
    blocks.upload_file_set.add(str(example))  # an upload of the same bytes and name as an example picture

    def upload(key, value, layers):
        raise UserError("image: file is larger than 50 MB")

    token = LocalContext.blocks.set(blocks)
    try:
        with pytest.raises(Exception, match="larger than 50 MB"):
            friendly(upload)("k", {"path": refused, "orig_name": "big.png"},
                             {"layers": [{"path": str(example)}], "background": None})
    finally:
        LocalContext.blocks.reset(token)
    assert not Path(refused).exists() and not Path(refused).parent.exists()
    assert Path(other).exists() and example.exists()  # another upload and the app's own file stay
    assert blocks.upload_file_set == {other, str(example)}


def test_uploads_left_behind_go_after_the_keep_time(tmp_path):
    from ui import uploads

    blocks = FakeApp()
    old = blocks.upload(tmp_path, "old1.png", age_s=400)
    new = blocks.upload(tmp_path, "new1.png", age_s=10)
    partial = tmp_path / "tmpab_cd123"  # a client that went away mid-upload
    partial.write_bytes(b"half")
    past = time.time() - 400
    os.utime(partial, (past, past))
    fresh_partial = tmp_path / "tmpzzzzzzzz"  # still being written
    fresh_partial.write_bytes(b"x")
    mine = tmp_path / "kontext-exports"
    mine.mkdir()
    os.utime(mine, (past, past))
    assert uploads.sweep(blocks, keep_s=300, folder=tmp_path) == 2
    assert not Path(old).exists() and Path(new).exists() and not partial.exists() and fresh_partial.exists()
    assert mine.exists() and blocks.upload_file_set == {new}


def test_the_server_sweeps_uploads_while_it_runs(tmp_path, monkeypatch):
    import asyncio
    import threading
    from types import SimpleNamespace

    from ui import uploads

    swept = threading.Event()
    seen = []

    def sweep(blocks, keep_s):
        seen.append((blocks, keep_s))
        swept.set()
        return 0

    monkeypatch.setattr(uploads, "sweep", sweep)
    blocks = FakeApp()

    async def serve():
        async with uploads.sweeper(keep_s=120, every_s=0)(SimpleNamespace(get_blocks=lambda: blocks)):
            assert await asyncio.to_thread(swept.wait, 10)

    asyncio.run(serve())
    assert seen[0] == (blocks, 120)
