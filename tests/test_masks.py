"""Masked edits: outside the mask every pixel stays the parent's, bit for bit, turn after turn,
through export, import and replay (kontext/core/masks.py, Engine.edit(mask=...))."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kontext.core.masks import alpha, check_mask
from kontext.errors import UserError
from kontext.sessions.session import EditOptions


def picture():
    return Image.effect_noise((100, 70), 50).convert("RGB")  # not a multiple of 16: pasted back at its size


def box_mask(size=(100, 70), box=(20, 15, 60, 50)):
    m = Image.new("L", size, 0)
    m.paste(255, box)
    return m


def test_the_feather_stays_inside_the_mask():
    m = box_mask()
    a = np.asarray(alpha(m))
    assert a[np.asarray(m) == 0].max() == 0  # nothing outside is touched
    assert a[35, 40] == 255 and 0 < a[16, 40] < 255  # full inside, soft at the inner edge
    with pytest.raises(UserError, match="the mask is empty"):
        check_mask(Image.new("L", (10, 10)), (10, 10))
    painted = Image.new("RGBA", (100, 70), (0, 0, 0, 0))
    painted.paste((255, 0, 0, 255), (10, 10, 30, 30))
    assert np.count_nonzero(np.asarray(check_mask(painted, (100, 70)))) == 400  # a layer's alpha
    with pytest.raises(UserError, match="the mask is 100x70 but the picture is 50x35"):
        check_mask(painted, (50, 35))  # never stretched onto another size


def test_five_masked_turns_leave_everything_outside_identical(sessions, tmp_path):
    key = sessions.new()
    sessions.upload(key, picture())
    original = np.asarray(sessions.image(key, 1).convert("RGB"))
    mask = sessions.add_mask(key, box_mask())
    outside = np.asarray(box_mask()) == 0
    for i in range(5):
        h, node = sessions.edit(key, f"turn {i}", EditOptions(steps=2, mask=mask))
        now = np.asarray(sessions.image(key, node.id).convert("RGB"))
        assert now.shape == original.shape and np.array_equal(now[outside], original[outside]), i
        assert node.extra["mask"] == mask and node.extra["masked"] == pytest.approx(0.2, abs=0.01)
    assert not np.array_equal(now[~outside], original[~outside])  # inside, the model did change it
    _, rolled = sessions.reroll(key)  # a re-roll keeps the mask
    assert rolled.extra["mask"] == mask

    zip_path = tmp_path / "masked.zip"
    sessions.export(key, zip_path, scope="tree")
    other = sessions.new()
    sessions.import_zip(other, zip_path)
    h2 = sessions.history(other)
    last = max(h2.nodes)
    again = np.asarray(sessions.image(other, last).convert("RGB"))
    assert np.array_equal(again[outside], original[outside])
    assert h2.node(last).extra["mask"] != mask and sessions.mask_image(other, h2.node(last).extra["mask"])

    from kontext.files.importer import open_export
    from kontext.tools.replay import replay

    (tmp_path / "replayed").mkdir()
    with open_export(zip_path) as reader:
        rows = replay(reader, sessions.engine, tmp_path / "replayed")
    assert all(r.identical in (True, None) for r in rows), [(r.id, r.max_diff) for r in rows]


def test_masked_edits_refuse_what_they_cannot_do(sessions):
    key = sessions.new()
    sessions.upload(key, picture())
    mask = sessions.add_mask(key, box_mask())
    with pytest.raises(UserError, match="no reference and no draft"):
        sessions.edit(key, "x", EditOptions(steps=2, mask=mask, draft=True))
    with pytest.raises(UserError, match="the mask is empty"):
        sessions.add_mask(key, Image.new("L", (100, 70)))
    assert len(sessions.history(key)) == 1


def test_the_result_cache_tells_masks_apart(engine):
    from kontext.model.turns import plan_step
    from kontext.showcase.examples import ResultCache

    pic = picture()
    a = plan_step(engine, pic, "x", seed=1, guidance=None, steps=2, width=None, height=None, mask=box_mask())
    b = plan_step(engine, pic, "x", seed=1, guidance=None, steps=2, width=None, height=None,
                  mask=box_mask(box=(0, 0, 30, 30)))
    c = plan_step(engine, pic, "x", seed=1, guidance=None, steps=2, width=None, height=None)
    assert len({ResultCache.key(engine, r) for r in (a, b, c)}) == 3
    assert a.tokens == 2 * a.width * a.height // 256  # what the GPU time is reckoned from


def box_in(mode: str, inside, outside, size=(100, 70), box=(20, 15, 60, 50), **info) -> Image.Image:
    img = Image.new(mode, size, outside)
    img.paste(inside, box)
    img.info.update(info)
    return img


@pytest.mark.parametrize("layer", [
    box_in("RGBA", (255, 59, 48, 255), (0, 0, 0, 0)),  # the page's painter: red strokes on transparency
    box_in("LA", (0, 255), (255, 0)),  # opaque is painted, whatever its grey
    box_in("RGB", (255, 255, 255), (0, 0, 0)),  # no alpha: light is painted
    box_in("L", 200, 30),
    box_in("RGB", (255, 255, 255), (0, 0, 0)).convert("P", palette=Image.ADAPTIVE, colors=2),
    Image.fromarray((np.asarray(box_mask(), np.uint16) // 255 * 39700 + 300).astype(np.uint16)),  # 16-bit: 300 is black
    box_in("CMYK", (0, 0, 0, 0), (0, 0, 0, 255)),  # white box on black
], ids=["rgba-page", "la", "rgb", "l", "palette", "16-bit", "cmyk"])
def test_one_mask_rule_for_every_kind_of_layer(layer):
    from kontext.core.masks import read_mask

    m = read_mask([layer], (100, 70))
    assert np.array_equal(np.asarray(m) > 0, np.asarray(box_mask()) > 0)


def test_nothing_painted_is_refused_in_every_mode():
    from kontext.core.masks import read_mask

    for blank in (Image.new("RGB", (100, 70)), Image.new("RGBA", (100, 70), (255, 255, 255, 0)),
                  Image.fromarray(np.full((70, 100), 100, np.uint16)), Image.new("CMYK", (100, 70), (0, 0, 0, 255))):
        with pytest.raises(UserError, match="the mask is empty"):  # never read as "change everything"
            read_mask([blank], (100, 70))


def png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_layers_are_capped_and_checked_before_they_are_decoded():
    from kontext.core.masks import MAX_LAYERS, read_mask

    layer = png(box_in("RGBA", (255, 0, 0, 255), (0, 0, 0, 0)))
    assert read_mask([layer] * MAX_LAYERS, (100, 70))
    with pytest.raises(UserError, match=f"mask has {MAX_LAYERS + 1} layers; at most {MAX_LAYERS}"):
        read_mask([layer] * (MAX_LAYERS + 1), (100, 70))
    huge = png(Image.new("L", (7000, 7000)))  # 7000x7000 of black packs into a few kB
    with pytest.raises(UserError, match="mask layer 2: more than 40,000,000 pixels"):  # the uploads' cap
        read_mask([layer, huge], (100, 70))
    large = png(Image.new("L", (6000, 6000)))
    with pytest.raises(UserError, match="mask layer 2 is 6000x6000 but the picture is 100x70"):
        read_mask([layer, large], (100, 70))
    for size in ((16, 16), (400, 100)):  # once stretched silently onto the picture
        with pytest.raises(UserError, match=f"is {size[0]}x{size[1]} but the picture is 100x70"):
            read_mask([png(Image.new("L", size, 255))], (100, 70))
    with pytest.raises(UserError, match="mask: not an image this app reads"):
        read_mask([b"GIF89a but not really"], (100, 70))


def test_a_mask_belongs_to_the_picture_it_was_painted_on_and_the_steps_made_from_it(sessions):
    key = sessions.new()
    sessions.upload(key, picture())
    mask = sessions.add_mask(key, box_mask())  # painted on step #1
    _, edited = sessions.edit(key, "masked", EditOptions(steps=2, mask=mask))
    sessions.edit(key, "still from step #1", EditOptions(steps=2, mask=mask))  # made from it: allowed
    sessions.upload(key, picture())  # another picture, same size
    before = sessions.history(key).to_dict()
    with pytest.raises(UserError, match=r"painted on step #1, and step #\d+ is another picture"):
        sessions.edit(key, "x", EditOptions(steps=2, mask=mask))
    later = sessions.add_mask(key, box_mask(), step=edited.id)  # painted on step #2
    with pytest.raises(UserError, match=r"painted on step #2, and step #1 is another picture"):
        sessions.edit(key, "x", EditOptions(steps=2, mask=later), parent=1)  # an earlier step
    assert sessions.history(key).to_dict() == before  # nothing changed by the refusals


def test_an_imported_mask_reads_by_the_same_rule(sessions, tmp_path):
    """An export whose mask carries alpha (a painted layer): the import keeps the painted part, as
    the page would, instead of flattening the alpha away."""
    import hashlib
    import json
    import zipfile

    from kontext.core.masks import coverage
    from kontext.files.export import MANIFEST

    key = sessions.new()
    sessions.upload(key, picture())
    sessions.edit(key, "masked", EditOptions(steps=2, mask=sessions.add_mask(key, box_mask())))
    src = tmp_path / "masked.zip"
    sessions.export(key, src, scope="tree")
    with zipfile.ZipFile(src) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(entries[MANIFEST])
    (name,) = manifest["references"]
    layer = png(box_in("RGBA", (255, 59, 48, 255), (0, 0, 0, 0)))  # 20 % painted, alpha only
    manifest["references"][name] = hashlib.sha256(layer).hexdigest()
    entries.update({f"references/{name}": layer, MANIFEST: json.dumps(manifest).encode()})
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for n, data in entries.items():
            zf.writestr(n, data)
    other = sessions.new()
    sessions.import_zip(other, forged)
    stored = sessions.history(other).node(max(sessions.history(other).nodes)).extra["mask"]
    assert coverage(sessions.mask_image(other, stored)) == pytest.approx(0.2, abs=0.001)
