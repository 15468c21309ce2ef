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
    assert np.count_nonzero(np.asarray(check_mask(painted, (50, 35)))) == 100  # a layer's alpha, scaled


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
