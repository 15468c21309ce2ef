"""A reference image (style, character, object) placed beside the current image as the context."""

import io
import os
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from kontext.core.compose import side_by_side
from kontext.sessions.session import EditOptions
from kontext.tools.replay import run_replay

FAST = EditOptions(steps=2)


def test_side_by_side_keeps_the_current_image_and_fits_the_reference():
    cur = Image.new("RGB", (96, 64), "red")
    pair = side_by_side(cur, Image.new("RGB", (300, 100), "blue"))
    assert pair.size == (192, 64)  # a wide reference is narrowed to the current image's width
    assert pair.getpixel((10, 10)) == (255, 0, 0) and pair.getpixel((150, 32)) == (0, 0, 255)
    assert pair.getpixel((150, 2)) == (255, 255, 255)  # centred on white
    tall = side_by_side(cur, Image.new("RGB", (50, 100), "green"))
    assert tall.size == (96 + 32, 64)


@pytest.fixture
def with_reference(sessions, photo):
    key = sessions.new()
    sessions.upload(key, photo, name="photo.png")
    ref = sessions.add_reference(key, Image.effect_noise((64, 64), 80).convert("RGB"))
    return key, ref


def test_edit_with_reference_sees_the_pair_and_keeps_the_size(sessions, with_reference, monkeypatch):
    key, ref = with_reference
    seen = []
    real = sessions.engine.edit

    def spy(image, *a, **kw):
        seen.append(image.size)
        return real(image, *a, **kw)

    monkeypatch.setattr(sessions.engine, "edit", spy)
    h, node = sessions.edit(key, "restyle the left image like the right one", EditOptions(steps=2, reference=ref))
    _, plain = sessions.edit(key, "no reference", FAST, parent=1)
    assert seen[0][0] > seen[1][0]  # the context was the wider pair
    assert (node.width, node.height) == (plain.width, plain.height)  # the output keeps the photo's size
    assert node.extra["reference"] == ref
    sessions.jump(key, node.id)
    _, rolled = sessions.reroll(key)  # a re-roll uses the same reference
    assert rolled.extra["reference"] == ref and rolled.parent == node.parent


def test_reference_needs_a_current_image(sessions):
    key = sessions.new()
    ref = sessions.add_reference(key, Image.new("RGB", (64, 64)))
    with pytest.raises(ValueError, match="needs a current image"):
        sessions.edit(key, "a cat", EditOptions(steps=1, reference=ref))


def test_references_used_by_steps_survive_orphan_cleanup(sessions, with_reference, store):
    key, ref = with_reference
    sessions.edit(key, "x", EditOptions(steps=1, reference=ref))
    unused = sessions.add_reference(key, Image.new("RGB", (64, 64)))
    old = time.time() - 7200
    for name in (ref, unused):
        os.utime(store.image_path(key, name), (old, old))
    store.load(key)
    assert store.image_path(key, ref).is_file() and not store.image_path(key, unused).exists()


def test_export_import_and_replay_carry_the_reference(sessions, with_reference, tmp_path):
    key, ref = with_reference
    sessions.edit(key, "with ref", EditOptions(steps=2, reference=ref, seed_mode="fixed", seed=3))
    sessions.edit(key, "after", FAST)
    buf = io.BytesIO()
    manifest = sessions.export(key, buf, scope="path", extras=False)
    assert list(manifest["references"]) == [ref]
    assert f"references/{ref}" in zipfile.ZipFile(io.BytesIO(buf.getvalue())).namelist()

    other = sessions.new()
    result = sessions.import_zip(other, buf.getvalue())
    imported = [n for n in result.history.nodes.values() if n.extra.get("reference")]
    assert len(imported) == 1
    new_ref = imported[0].extra["reference"]
    assert np.array_equal(np.asarray(sessions.reference_image(other, new_ref)),
                          np.asarray(sessions.reference_image(key, ref)))

    zip_path = tmp_path / "export.zip"
    zip_path.write_bytes(buf.getvalue())
    code = run_replay(SimpleNamespace(export=str(zip_path), out=str(tmp_path / "out"), model="tiny",
                                      device="cpu", dtype=None, offload="none", branding=None))
    assert code == 0  # bit-identical, reference included


def test_import_rejects_a_step_naming_a_missing_reference(sessions, with_reference):
    key, ref = with_reference
    sessions.edit(key, "with ref", EditOptions(steps=1, reference=ref))
    buf = io.BytesIO()
    sessions.export(key, buf, extras=False)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            if not info.filename.startswith("references/"):
                zf.writestr(info, src.read(info))
    with pytest.raises(ValueError, match="references/"):
        sessions.import_zip(sessions.new(), out.getvalue())


@pytest.mark.parametrize("bad", [None, [], 5, "0" * 32 + ".png"])
def test_import_rejects_bad_reference_fields_with_a_plain_error(sessions, with_reference, bad):
    import json

    key, ref = with_reference
    sessions.edit(key, "with ref", EditOptions(steps=1, reference=ref))
    buf = io.BytesIO()
    sessions.export(key, buf, extras=False)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    manifest = json.loads(src.read("manifest.json"))
    manifest["steps"][-1]["extra"]["reference"] = bad
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info in src.infolist():
            zf.writestr(info, json.dumps(manifest) if info.filename == "manifest.json" else src.read(info))
    target = sessions.new()
    with pytest.raises(ValueError, match="reference image"):
        sessions.import_zip(target, out.getvalue())
    assert not sessions.store.folder(target).exists()  # nothing stored, nothing left behind


def test_the_same_reference_is_stored_once_and_scaled_down(sessions, with_reference):
    key, ref = with_reference
    again = sessions.add_reference(key, sessions.reference_image(key, ref))
    assert again == ref
    big = sessions.add_reference(key, Image.new("RGB", (3000, 1500), "white"))
    assert max(sessions.reference_image(key, big).size) == sessions.engine.profile.max_side


def test_a_large_jpeg_reference_is_decoded_scaled(sessions, monkeypatch):
    from PIL import ImageFile

    loads = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: (loads.append(self.size), real(self))[1])
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((2400, 1500)).convert("RGB").save(buf, format="JPEG")
    key = sessions.new()
    ref = sessions.add_reference(key, buf.getvalue())
    assert sessions.engine.profile.max_side == 1024 and (2400, 1500) not in loads and (1200, 750) in loads
    assert sessions.reference_image(key, ref).size == (1024, 640)  # what the full decode, thumbnailed, gave


def test_three_references_with_roles_travel_with_the_step(sessions, tmp_path):
    from kontext.files.importer import open_export
    from kontext.tools.replay import replay

    key = sessions.new()
    sessions.upload(key, Image.effect_noise((96, 64), 40).convert("RGB"))
    refs = [sessions.add_reference(key, Image.effect_noise((64, 64), 10 + 20 * i).convert("RGB")) for i in range(3)]
    opts = EditOptions(steps=2, reference=refs[0], more_references=tuple(refs[1:]),
                       roles=("style", "character", "object"))
    turn = sessions.plan(key, "the person from the second image in the style of the first", opts)
    assert turn.request.context.width == 96 + 3 * 64  # the current picture, then the three, left to right
    h, node = sessions.edit(key, "mix them", opts)
    assert node.extra["more_references"] == refs[1:] and node.extra["reference_roles"][1] == "character"
    assert abs(node.width / node.height - 96 / 64) < 0.1  # the current picture's aspect, not the strip's
    _, rolled = sessions.reroll(key)
    assert rolled.extra["more_references"] == refs[1:]
    sessions.export(key, tmp_path / "r.zip", scope="tree")
    other = sessions.new()
    sessions.import_zip(other, tmp_path / "r.zip")
    imported = sessions.history(other).current_node
    assert len(imported.extra["more_references"]) == 2
    (tmp_path / "out").mkdir()
    with open_export(tmp_path / "r.zip") as reader:
        rows = replay(reader, sessions.engine, tmp_path / "out")
    assert all(r.identical in (True, None) for r in rows)
    with pytest.raises(ValueError, match="at most 3 reference images"):
        sessions.edit(key, "x", EditOptions(steps=2, reference=refs[0], more_references=tuple(refs)))
    with pytest.raises(ValueError, match="role must be one of"):
        sessions.edit(key, "x", EditOptions(steps=2, reference=refs[0], roles=("villain",)))
