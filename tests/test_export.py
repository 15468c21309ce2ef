"""Export to ZIP, import back, GIF and contact sheet, and hostile ZIPs, on the tiny model (CPU)."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kontext.core.metadata import png_bytes, read_metadata
from kontext.files.export import ANIMATION, CONTACT_SHEET, MANIFEST, README
from kontext.files.importer import Limits
from kontext.files.store import Store
from kontext.sessions.session import EditOptions, Sessions

STEP_FIELDS = ("id", "parent", "kind", "prompt", "seed", "guidance", "steps", "width", "height", "model",
               "seconds", "created", "extra")


# `engine` (the tiny model, loaded once per run) and `sessions` come from conftest.py.


def fixed(seed: int) -> EditOptions:
    return EditOptions(seed_mode="fixed", seed=seed)


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def build_forest(s: Sessions, key: str) -> None:
    """Tree 1: upload -> 2 -> 3, and a branch 2 -> 4. Tree 2: text -> 6. Current: 4."""
    s.upload(key, noise(96, 64), name="beach.png")
    s.edit(key, "add a red hat", fixed(11))
    s.edit(key, "make it night", fixed(12))
    s.undo(key)
    s.edit(key, "make it snow", fixed(13))
    s.edit(key, "a lighthouse at dusk", fixed(14), parent=None)
    s.edit(key, "add fog", fixed(15))
    s.jump(key, 4)


def stored_bytes(s: Sessions, key: str) -> dict[int, bytes]:
    h = s.history(key)
    return {n.id: s.store.read_image_bytes(key, n.image) for n in h.nodes.values()}


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- export ---------------------------------------------------------------------------------------
def test_path_export_holds_the_path_with_exact_bytes_and_metadata(sessions, tmp_path):
    key = sessions.new()
    build_forest(sessions, key)
    dest = tmp_path / "path.zip"
    manifest = sessions.export(key, dest)
    with zipfile.ZipFile(dest) as zf:
        names = set(zf.namelist())
        assert names == {"steps/0001.png", "steps/0002.png", "steps/0004.png", MANIFEST, ANIMATION,
                         CONTACT_SHEET, README}
        stored = stored_bytes(sessions, key)
        for step in manifest["steps"]:
            data = zf.read(step["image"])
            assert data == stored[step["id"]]  # the stored bytes, untouched
            assert hashlib.sha256(data).hexdigest() == step["sha256"]
            meta = read_metadata(data)["step"]
            assert meta["kind"] == step["kind"] and meta.get("seed") == step["seed"]
            assert meta["prompt"] == step["prompt"] and meta["width"] == step["width"]
        assert json.loads(zf.read(MANIFEST)) == manifest
        gif = Image.open(io.BytesIO(zf.read(ANIMATION)))
        assert gif.format == "GIF" and gif.n_frames == 3  # one frame per path step
        assert gif.info["duration"] == 1000
    assert [s["id"] for s in manifest["steps"]] == [1, 2, 4]
    assert manifest["scope"] == "path" and manifest["current"] == 4
    assert manifest["model"] == {"id": "tiny", "revision": "tiny-v1"}
    assert manifest["app"]["name"] == "kontext-playground" and manifest["device"] == "cpu"
    assert {"torch", "diffusers", "transformers", "pillow", "numpy"} <= set(manifest["libraries"])
    assert manifest["exported_at"].endswith("Z")
    for step in manifest["steps"]:
        assert set(STEP_FIELDS) | {"image", "sha256"} <= set(step)
    assert [s["seed"] for s in manifest["steps"]] == [None, 11, 13]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_scopes_tree_and_all(sessions, tmp_path):
    key = sessions.new()
    build_forest(sessions, key)
    tree = sessions.export(key, tmp_path / "t.zip", scope="tree", extras=False)
    assert [s["id"] for s in tree["steps"]] == [1, 2, 3, 4]
    everything = sessions.export(key, tmp_path / "a.zip", scope="all", extras=False)
    assert [s["id"] for s in everything["steps"]] == [1, 2, 3, 4, 5, 6]
    assert zipfile.ZipFile(tmp_path / "a.zip").namelist()[-1] == MANIFEST
    with pytest.raises(ValueError, match="scope"):
        sessions.export(key, tmp_path / "x.zip", scope="branch")
    with pytest.raises(ValueError, match="nothing to export"):
        sessions.export(sessions.new(), tmp_path / "e.zip")
    assert not (tmp_path / "e.zip").exists()


def test_animation_and_contact_sheet(sessions):
    from kontext.files import sheets
    from kontext.files.export import select

    key = sessions.new()
    build_forest(sessions, key)

    def pictures(nodes, side):
        return [(sheets.thumbnail(sessions.store.read_image_bytes(key, n.image), side), sheets.caption(n))
                for n in nodes]

    path = pictures(sessions.history(key).path(), 512)
    gif = Image.open(io.BytesIO(sheets.animation(path)))
    assert gif.n_frames == len(sessions.history(key).path())
    sizes = set()
    for i in range(gif.n_frames):
        gif.seek(i)
        sizes.add(gif.size)
    assert len(sizes) == 1  # every frame letterboxed to one size
    webp = Image.open(io.BytesIO(sheets.animation(path, fmt="webp")))
    assert webp.format == "WEBP" and webp.n_frames == 3
    sheet = Image.open(io.BytesIO(sheets.contact_sheet(pictures(select(sessions.history(key), "all"), 256))))
    assert sheet.format == "PNG"
    # 6 steps -> 3 columns x 2 rows of thumbnails (<= 256 px each, plus captions)
    assert 3 * 96 <= sheet.width <= 3 * 300 and 2 * 64 <= sheet.height <= 2 * 400
    with pytest.raises(ValueError, match="format"):
        sheets.animation(path, fmt="mp4")


# --- import ---------------------------------------------------------------------------------------
def test_export_import_round_trip_keeps_the_tree(sessions, tmp_path):
    key = sessions.new()
    build_forest(sessions, key)
    sessions.export(key, tmp_path / "all.zip", scope="all")
    other = sessions.new()
    result = sessions.import_zip(other, tmp_path / "all.zip")
    assert not result.renumbered and result.message == "imported 6 steps"
    a, b = sessions.history(key), sessions.history(other)
    assert b is result.history and b.current == a.current == 4
    for nid, n in a.nodes.items():
        m = b.node(nid)
        assert [getattr(n, f) for f in STEP_FIELDS] == [getattr(m, f) for f in STEP_FIELDS]
    assert dict(b.last_child) == dict(a.last_child)
    assert stored_bytes(sessions, other) == stored_bytes(sessions, key)  # byte- and so pixel-identical
    # Survives a restart: a fresh Sessions reads the committed history from disk.
    again = Sessions(sessions.engine, Store(sessions.store.root)).history(other)
    assert sorted(again.nodes) == sorted(a.nodes)
    assert b.redo().current == 4 and b.undo().redo().current == 4


def test_import_into_a_used_session_renumbers(sessions, tmp_path):
    key = sessions.new()
    build_forest(sessions, key)
    sessions.export(key, tmp_path / "path.zip")  # steps 1, 2, 4
    target = sessions.new()
    sessions.edit(target, "a red barn", fixed(1), parent=None)
    sessions.edit(target, "add snow", fixed(2))
    result = sessions.import_zip(target, (tmp_path / "path.zip").read_bytes())
    assert dict(result.ids) == {1: 3, 2: 4, 4: 5} and result.renumbered
    assert "renumbered" in result.message and "step 1 is now step 3" in result.message
    h = sessions.history(target)
    assert len(h) == 5 and h.current == 5
    assert [n.id for n in h.path()] == [3, 4, 5]
    assert [n.prompt for n in h.path()] == [sessions.history(key).node(i).prompt for i in (1, 2, 4)]
    src = stored_bytes(sessions, key)
    dst = stored_bytes(sessions, target)
    for old, new in result.ids.items():
        assert np.array_equal(pixels(src[old]), pixels(dst[new]))
        meta = read_metadata(dst[new])["step"]  # the PNG names its new place in the tree
        assert meta["id"] == new and meta["parent"] == (None if new == 3 else new - 1)
        assert meta.get("revision") == (None if new == 3 else "tiny-v1")  # kept from the original PNG
        assert read_metadata(dst[new])["parameters"].startswith(meta["prompt"])
    assert h.node(1).prompt == "a red barn"  # the session's own steps are untouched


def test_an_edit_landing_during_an_import_is_kept(sessions, tmp_path, monkeypatch):
    src = sessions.new()
    sessions.edit(src, "a red barn", fixed(1), parent=None)
    sessions.edit(src, "add snow", fixed(2))
    sessions.export(src, tmp_path / "two.zip", extras=False)
    key = sessions.new()
    sessions.edit(key, "a lighthouse", fixed(3), parent=None)
    store_import = Sessions._store_import

    def racing(self, *args):
        if not hasattr(racing, "done"):  # first pass runs outside the lock: an edit lands then
            racing.done = True
            self.edit(key, "add fog", fixed(4))
        return store_import(self, *args)

    monkeypatch.setattr(Sessions, "_store_import", racing)
    result = sessions.import_zip(key, tmp_path / "two.zip")
    h = sessions.history(key)
    assert dict(result.ids) == {1: 3, 2: 4} and [n.prompt for n in h.path()] == ["a red barn", "add snow"]
    assert h.node(2).prompt == "add fog" and h.node(2).parent == 1
    assert len(list((sessions.store.folder(key) / "images").iterdir())) == 4  # no orphans left


def test_import_refuses_more_steps_than_the_session_holds(engine, tmp_path):
    s = Sessions(engine, Store(tmp_path / "s"), max_nodes=3)
    key = s.new()
    s.edit(key, "a red barn", fixed(1), parent=None)
    s.edit(key, "add snow", fixed(2))
    s.export(key, tmp_path / "two.zip", extras=False)
    with pytest.raises(ValueError, match="room for 1 more"):
        s.import_zip(key, tmp_path / "two.zip")
    assert len(s.history(key)) == 2
    assert len(list((s.store.folder(key) / "images").iterdir())) == 2


# --- hostile ZIPs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good(engine, tmp_path_factory) -> dict[str, bytes]:
    """The entries of a valid 3-step path export (no extras), to be tampered with."""
    root = tmp_path_factory.mktemp("good")
    s = Sessions(engine, Store(root / "s"))
    key = s.new()
    s.edit(key, "a red barn", fixed(1), parent=None)
    s.edit(key, "add snow", fixed(2))
    s.edit(key, "make it night", fixed(3))
    data = io.BytesIO()
    s.export(key, data, extras=False)
    with zipfile.ZipFile(io.BytesIO(data.getvalue())) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def make_zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def with_manifest(entries: dict[str, bytes], edit) -> dict[str, bytes]:
    m = json.loads(entries[MANIFEST])
    edit(m)
    return {**entries, MANIFEST: json.dumps(m).encode()}


def png_of(img: Image.Image) -> bytes:
    return png_bytes(img, {"kind": "edit", "prompt": "x"})


def lying_size(entries: dict[str, bytes], name: str) -> bytes:
    """A ZIP whose central directory understates `name`'s unpacked size."""
    raw = bytearray(make_zip(entries))
    at = raw.find(b"PK\x01\x02")  # central directory file headers
    while at != -1:
        n = struct.unpack("<H", raw[at + 28:at + 30])[0]
        if raw[at + 46:at + 46 + n].decode() == name:
            raw[at + 24:at + 28] = struct.pack("<I", 10)  # uncompressed size: 10 bytes
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def _set_seed(m, v):
    m["steps"][1]["seed"] = v


def _cycle(m):
    m["steps"][0]["kind"] = "edit"
    m["steps"][0]["parent"] = 3


def _swap_image(e: dict[str, bytes]) -> dict[str, bytes]:
    other = png_of(noise(128, 128, seed=5))
    return {**e, "steps/0002.png": other}


def _bad_aspect(e: dict[str, bytes]) -> dict[str, bytes]:
    png = png_of(noise(16, 80))
    e = {**e, "steps/0003.png": png}

    def edit(m):
        m["steps"][2].update(width=16, height=80, sha256=hashlib.sha256(png).hexdigest())
    return with_manifest(e, edit)


HOSTILE = {
    "not a zip": (lambda e: b"this is not a zip file", "not a readable ZIP"),
    "truncated zip": (lambda e: make_zip(e)[:200], "not a readable ZIP"),
    "path traversal": (lambda e: make_zip({**e, "../../evil.png": b"x"}), "outside its folder"),
    "absolute path": (lambda e: make_zip({**e, "/etc/evil": b"x"}), "absolute path"),
    "backslash": (lambda e: make_zip({**e, "steps\\..\\..\\evil": b"x"}), "backslashes"),
    "symlink": (lambda e: make_zip({**e, "steps/link": b"/etc/passwd"}, links=("steps/link",)), "symbolic link"),
    "too many entries": (lambda e: make_zip({**e, **{f"junk/{i}": b"" for i in range(2000)}}), "entries"),
    "zip bomb (ratio)": (lambda e: make_zip({**e, "steps/0009.png": bytes(30 * 2**20)}), "zip bomb"),
    "zip bomb (declared size)": (lambda e: make_zip({**e, "steps/0009.png": bytes(60 * 2**20)}), "unpack to"),
    "lying size header": (lambda e: lying_size(e, "steps/0002.png"), "damaged|does not match"),
    "missing manifest": (lambda e: make_zip({k: v for k, v in e.items() if k != MANIFEST}), "no manifest.json"),
    "missing image": (lambda e: make_zip({k: v for k, v in e.items() if k != "steps/0002.png"}),
                      "step 2: the export has no steps/0002.png"),
    "sha mismatch": (lambda e: make_zip(_swap_image(e)), "sha256"),
    "manifest not JSON": (lambda e: make_zip({**e, MANIFEST: b"{not json"}), "not valid JSON"),
    "manifest a list": (lambda e: make_zip({**e, MANIFEST: b"[]"}), "JSON object"),
    "wrong seed type": (lambda e: make_zip(with_manifest(e, lambda m: _set_seed(m, "abc"))), "step 2: seed"),
    "missing kind": (lambda e: make_zip(with_manifest(e, lambda m: m["steps"][1].pop("kind"))), "'kind'"),
    "other app": (lambda e: make_zip(with_manifest(e, lambda m: m.update(app={"name": "x"}))), "not from"),
    "missing parent": (lambda e: make_zip(with_manifest(e, lambda m: m["steps"][2].update(parent=7))),
                       "parent 7 is not in the export"),
    "not a tree (cycle)": (lambda e: make_zip(with_manifest(e, _cycle)), "cannot have a parent|earlier step"),
    "image fails validation": (lambda e: make_zip(_bad_aspect(e)), "aspect ratio"),
    "step id past nine digits": (lambda e: make_zip(with_manifest(e, lambda m: m["steps"][2].update(id=10**9))),
                                 "'id' must be a whole number from 1 to 999999999"),
    "image path in manifest": (lambda e: make_zip(with_manifest(
        e, lambda m: m["steps"][0].update(image="../s/x.png"))), "a file name like steps/0003.png"),
    "LoRA record with a path for a name": (lambda e: make_zip(with_manifest(e, lambda m: m["steps"][1]["extra"].update(
        loras=[{"name": "../evil", "scale": 1.0}]))), "step 2: a LoRA's name must be"),
    "LoRA record with more than a name": (lambda e: make_zip(with_manifest(e, lambda m: m["steps"][1]["extra"].update(
        loras=[{"name": "evil", "scale": 1.0, "url": "https://example.com/evil"}]))), "name and scale only"),
}


def _lora_from(m):
    m["steps"][1]["extra"]["loras"] = [{"name": "evil", "source": "/etc/passwd", "weight_name": "x", "scale": 0.5}]


def test_an_imported_lora_record_keeps_its_name_and_never_a_source(engine, good, tmp_path):
    """Where weights come from is the host's preset list alone: a source in a file is dropped on import."""
    s = Sessions(engine, Store(tmp_path / "s"))
    key = s.new()
    s.import_zip(key, make_zip(with_manifest(good, _lora_from)))
    assert s.history(key).nodes[2].extra["loras"] == [{"name": "evil", "scale": 0.5}]
    manifest = s.export(key, io.BytesIO(), extras=False)
    assert manifest["steps"][1]["extra"]["loras"] == [{"name": "evil", "scale": 0.5}]


def test_an_export_names_a_steps_loras_without_server_paths():
    """Steps stored before records held names only also held their source: the export drops it."""
    from kontext.core.history import Node
    from kontext.files.export import manifest_step

    node = Node(id=2, parent=1, kind="edit", image="x.png", prompt="p", seed=1, guidance=2.5, steps=2, width=64,
                height=64, extra={"loras": [{"name": "style", "source": "/srv/loras/style.safetensors",
                                             "weight_name": "w.safetensors", "scale": 0.8}], "speed": "off"})
    step = manifest_step(node, b"png")
    assert step["extra"] == {"loras": [{"name": "style", "scale": 0.8}], "speed": "off"}
    assert node.extra["loras"][0]["source"]  # the stored step is left as it is
    # Nor does the API's view of the history (/history, and a share link's) carry it.
    from dataclasses import replace

    from kontext.core import History
    from ui.view import history_json

    h = History().add(replace(node, kind="upload"), parent=None)
    api = history_json(None, "k", h)
    assert api["step"]["extra"]["loras"] == [{"name": "style", "scale": 0.8}] and "/srv" not in repr(api)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_zips_are_rejected_and_write_nothing(engine, good, tmp_path, case):
    make, message = HOSTILE[case]
    data = make(good)
    s = Sessions(engine, Store(tmp_path / "s"))
    key = s.new()
    (tmp_path / "s").mkdir()  # the app's store root exists; the session folder does not yet
    before = listing(tmp_path)
    (tmp_path / "in.zip").write_bytes(data)
    with pytest.raises(ValueError, match=message):
        s.import_zip(key, tmp_path / "in.zip")
    assert listing(tmp_path) == before | {"in.zip"}  # nothing written, not even inside the session
    assert s.history(key).empty


def test_failed_import_leaves_a_used_session_as_it_was(engine, good, tmp_path):
    s = Sessions(engine, Store(tmp_path / "s"))
    key = s.new()
    s.edit(key, "a red barn", fixed(1), parent=None)
    s.compactor.wait_idle()  # the step's PNG is compressed after the turn's answer: list it as it stays
    before = listing(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        s.import_zip(key, make_zip(_swap_image(good)))  # fails at the second image, after one was written
    assert listing(tmp_path) == before
    assert len(Sessions(engine, Store(tmp_path / "s")).history(key)) == 1


def test_too_many_steps_for_the_limits(engine, good, tmp_path):
    s = Sessions(engine, Store(tmp_path / "s"))
    with pytest.raises(ValueError, match="at most 2"):
        s.import_zip(s.new(), make_zip(good), limits=Limits(max_steps=2, extra_entries=4))


def test_valid_tampered_zip_still_imports(engine, good, tmp_path):
    """The fixture itself is valid when re-zipped (so each hostile case fails for its own reason)."""
    s = Sessions(engine, Store(tmp_path / "s"))
    assert len(s.import_zip(s.new(), make_zip(good)).history) == 3


def test_huge_central_directory_is_refused_before_parsing(tmp_path):
    import io
    import zipfile

    from kontext.files.importer import Limits, open_export

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(300):
            zf.writestr(f"e{i}", b"")
    with pytest.raises(ValueError, match="300 entries"):
        open_export(buf.getvalue(), Limits(max_steps=10))


# --- exports waiting to be downloaded: each visitor's share ------------------------------------------
MB = 2**20


def test_each_visitor_and_address_gets_a_share_of_the_waiting_exports(tmp_path, monkeypatch):
    import os
    import time

    from kontext.errors import UserError
    from ui import share

    monkeypatch.setattr(share, "get_upload_folder", lambda: str(tmp_path))
    monkeypatch.setattr(share, "_owners", {})
    monkeypatch.setattr(share, "LIMITS", share.ExportLimits(per_visitor=100 * MB, per_address=1.5))
    monkeypatch.setattr(share, "MAX_KEPT_BYTES", 350 * MB)

    def export(visitor, address, size=60 * MB):
        folder = share._fresh_dir(size, visitor, address)
        with open(folder / "a.zip", "wb") as f:
            f.truncate(size)  # sparse: its size counts, no disk is used
        share._written(folder)
        return folder

    first = export("a", "10.0.0.1")
    with pytest.raises(UserError, match="one visitor may have at most 100 MB waiting"):
        export("a", "10.0.0.1")
    export("b", "10.0.0.1")  # another session from the same address: 120 MB of its 150
    with pytest.raises(UserError, match="one address may have at most 150 MB waiting"):
        export("c", "10.0.0.1")
    export("c", "10.0.0.2")
    export("d", None)
    export("e", None)  # 300 MB waiting in all
    with pytest.raises(UserError, match="too many exports are waiting"):
        export("f", None)  # the last line, for everyone
    with pytest.raises(UserError, match="needs 101 MB, more than the 100 MB"):
        export("g", None, 101 * MB)
    old = time.time() - share.KEEP_S - 5
    os.utime(first / "a.zip", (old, old))
    export("a", "10.0.0.1")  # a's first export was removed: room again
    assert not first.exists()
    writing = share._fresh_dir(30 * MB, "h", None)  # still being written: what it claimed counts
    with pytest.raises(UserError, match="one visitor"):
        share._fresh_dir(80 * MB, "h", None)
    assert writing.is_dir()  # and its (empty) folder is not taken for a finished one


def test_an_owner_and_a_links_viewers_have_their_own_shares(sessions, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from kontext.errors import UserError
    from ui import share
    from ui.api import Api
    from ui.viewer import Viewer

    monkeypatch.setattr(share, "get_upload_folder", lambda: str(tmp_path))
    monkeypatch.setattr(share, "_owners", {})
    monkeypatch.setattr(share, "EXTRAS_BYTES", 0)
    key = sessions.new()
    sessions.upload(key, noise(96, 64), name="beach.png")
    sessions.edit(key, "add a red hat", fixed(11))
    need = sum(sessions.store.image_path(key, n.image).stat().st_size for n in sessions.history(key).nodes.values())
    # One export fits (its files weigh more than its pictures), a second one does not.
    monkeypatch.setattr(share, "LIMITS", share.ExportLimits(per_visitor=need * 3 // 2, per_address=1))
    client = SimpleNamespace(client=SimpleNamespace(host="10.0.0.1"))
    assert share.client_address(client) == "10.0.0.1" and share.client_address(None) is None
    # On a Space every request comes from its proxy; the visitor is named in X-Forwarded-For.
    monkeypatch.setenv("SPACE_ID", "someone/kontext")
    proxied = SimpleNamespace(client=SimpleNamespace(host="10.16.3.80"),
                              headers={"x-forwarded-for": "6.6.6.6, 93.184.216.34, 10.1.2.3"})
    assert share.client_address(proxied) == "93.184.216.34"  # 6.6.6.6 is the client's own word
    assert share.client_address(client) == "10.0.0.1"  # no header: the address as seen
    monkeypatch.delenv("SPACE_ID")
    assert share.client_address(proxied) == "10.16.3.80"  # not on a Space: the header is not trusted
    api = Api(sessions)
    api.export(key, "path", client)
    with pytest.raises(UserError, match="one visitor may have at most"):
        api.export(key, "path", client)
    token = sessions.share(key).token
    viewer = Viewer(sessions)
    other = SimpleNamespace(client=SimpleNamespace(host="10.0.0.2"))
    assert viewer.download(token, None, other).visible  # the link's viewers have a share of their own
    with pytest.raises(UserError, match="one visitor may have at most"):
        viewer.download(token, None, SimpleNamespace(client=SimpleNamespace(host="10.0.0.3")))
    second = sessions.new()
    sessions.upload(second, noise(96, 64), name="beach.png")
    with pytest.raises(UserError, match="one address may have at most"):
        api.export(second, "path", client)  # a fresh session from the same address
