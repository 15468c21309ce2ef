"""The example catalog and the cache of example results (kontext/showcase/examples.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kontext.errors import UserError
from kontext.sessions.session import EditOptions, Sessions
from kontext.showcase.examples import Catalog, Chain, ResultCache, load_catalog

SHIPPED = __import__("pathlib").Path(__file__).resolve().parent.parent / "assets" / "examples" / "examples.toml"


def write(tmp_path, text):
    Image.effect_noise((96, 64), 40).convert("RGB").save(tmp_path / "pic.png")
    path = tmp_path / "examples.toml"
    path.write_text(text)
    return path


GOOD = '''
[[example]]
id = "red"
title = "Local edit"
kind = "local edit"
image = "pic.png"
prompt = "make the cup red"
seed = 42

[[chain]]
id = "trip"
title = "A trip"
image = "pic.png"
seed = 7
prompts = ["one", "two", "three"]
'''


def test_a_catalog_is_read_and_checked(tmp_path):
    cat = load_catalog(write(tmp_path, GOOD))
    assert cat.example("red").prompt == "make the cup red" and cat.example("red").seed == 42
    assert cat.chain("trip").prompts == ("one", "two", "three")
    with pytest.raises(UserError, match="example 'nope' does not exist; the examples are red"):
        cat.example("nope")


@pytest.mark.parametrize("bad, words", [
    (GOOD.replace('image = "pic.png"\nprompt', 'image = "missing.png"\nprompt'), "is not a file"),
    (GOOD.replace('seed = 42', 'seed = -1'), "seed must be from 0"),
    (GOOD.replace('prompts = ["one", "two", "three"]', 'prompts = ["one"]'), "3 to 5 instructions"),
    (GOOD.replace('id = "trip"', 'id = "red"'), "used twice"),
    (GOOD.replace('kind = "local edit"', 'kind = "magic"'), "kind must be one of"),
    (GOOD + "\n[[demo]]\nx = 1\n", "unknown table 'demo'"),
    ("[[example]\n", "not valid TOML"),
])
def test_bad_catalogs_are_refused_in_words(tmp_path, bad, words):
    with pytest.raises(UserError, match=words):
        load_catalog(write(tmp_path, bad))


def test_example_pictures_stay_in_the_catalog_folder_and_are_pictures(tmp_path):
    """Every visitor is served an example's picture: nothing outside the folder, nothing but a picture."""
    Image.effect_noise((96, 64), 40).convert("RGB").save(tmp_path / "outside.png")
    (tmp_path / "ex").mkdir()
    write(tmp_path / "ex", GOOD)  # pic.png beside it
    (tmp_path / "ex" / "notes.png").write_text("hostname\n")  # a text file named like a picture
    (tmp_path / "ex" / "link.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "ex" / "sub").mkdir()
    Image.effect_noise((64, 64), 40).convert("RGB").save(tmp_path / "ex" / "sub" / "deep.png")
    cases = {"../outside.png": "is outside the folder of examples.toml",
             "../../../../../../../../etc/hostname": "is outside the folder",
             str(tmp_path / "outside.png"): "is outside the folder",  # an absolute path
             "link.png": "is outside the folder",  # a link out of it
             "notes.png": "is not a picture",
             "sub": "is not a file",
             "pic.png\\u0000.txt": "must name a picture"}  # TOML's escape: a NUL inside the name
    for image, words in cases.items():
        text = GOOD.replace('image = "pic.png"\nprompt', f'image = "{image}"\nprompt')
        with pytest.raises(UserError, match=words):
            load_catalog(write(tmp_path / "ex", text))
    deep = load_catalog(write(tmp_path / "ex", GOOD.replace('"pic.png"\nprompt', '"sub/deep.png"\nprompt')))
    assert deep.example("red").image == (tmp_path / "ex" / "sub" / "deep.png").resolve()  # below it is fine


def test_the_shipped_catalog_is_valid():
    cat = load_catalog(SHIPPED)
    assert len(cat.examples) >= 6 and len(cat.chains) >= 2
    assert {"local edit", "character", "style", "text", "removal"} <= {e.kind for e in cat.examples}
    for e in cat.examples:
        assert Image.open(e.image).size[0] >= 256


class CountingGpu:
    def __init__(self, engine):
        from kontext.model.turns import LocalGpu

        self.inner, self.runs = LocalGpu(engine), 0

    def run(self, *a, **kw):
        self.runs += 1
        return self.inner.run(*a, **kw)


def catalog(*prompts):
    return Catalog(chains=(Chain("c", "C", SHIPPED, tuple(prompts), 1),))


def test_example_turns_are_cached_and_others_are_not(engine, store, tmp_path):
    gpu = CountingGpu(engine)
    cache = ResultCache(tmp_path / "results", catalog=catalog("make the cup red", "now blue"))
    s = Sessions(engine, store, gpu=gpu, results=cache)
    pic = Image.effect_noise((96, 64), 40).convert("RGB")
    fixed = EditOptions(seed_mode="fixed", seed=42, steps=2)

    a = s.new()
    s.upload(a, pic, name="cup.png", example="red")
    _, first = s.edit(a, "make the cup red", fixed)
    assert gpu.runs == 1 and len(cache) == 1 and not first.extra.get("cached")
    b = s.new()
    s.upload(b, pic, name="cup.png", example="red")
    _, second = s.edit(b, "make the cup red", fixed)
    assert gpu.runs == 1 and second.extra["cached"] and second.seed == 42  # no model call
    assert np.array_equal(np.asarray(s.image(a, first.id)), np.asarray(s.image(b, second.id)))
    _, later = s.edit(b, "now blue", fixed)  # a later turn of the same tree: cached too
    assert gpu.runs == 2 and len(cache) == 2

    s.edit(b, "make the cup red", EditOptions(seed_mode="random", steps=2), parent=1)
    assert gpu.runs == 3 and len(cache) == 2  # a random seed is never cached
    c = s.new()
    s.upload(c, pic, name="cup.png")  # not an example
    s.edit(c, "make the cup red", fixed)
    assert gpu.runs == 4 and len(cache) == 2
    s.edit(b, "a visitor's own words", fixed, parent=1)  # not the catalog's: never fills the cache
    assert gpu.runs == 5 and len(cache) == 2


def test_a_cached_result_does_not_wait_for_the_gpu(engine, store, tmp_path):
    import threading

    cache = ResultCache(tmp_path / "results", catalog=catalog("red"))
    s = Sessions(engine, store, results=cache)
    pic = Image.effect_noise((64, 64), 40).convert("RGB")
    fixed = EditOptions(seed_mode="fixed", seed=5, steps=2)
    a, b = s.new(), s.new()
    s.upload(a, pic, example="x")
    s.edit(a, "red", fixed)  # now cached
    s.upload(b, pic, example="x")
    with s.queue.turn("someone-else"):  # the only GPU slot is taken
        done = threading.Event()
        threading.Thread(target=lambda: (s.edit(b, "red", fixed), done.set()), daemon=True).start()
        assert done.wait(30), "a cached example waited for the GPU"
    assert s.history(b).current_node.extra["cached"]


def test_a_failing_cache_write_never_loses_the_turn(engine, store, tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "results", catalog=catalog("red"))
    s = Sessions(engine, store, results=cache)
    key = s.new()
    s.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), example="x")

    def full(*a, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache, "put", full)
    h, node = s.edit(key, "red", EditOptions(seed_mode="fixed", seed=1, steps=2))
    assert node.id == 2 and len(cache) == 0


def test_a_damaged_cache_entry_is_a_miss(engine, store, tmp_path):
    gpu = CountingGpu(engine)
    cache = ResultCache(tmp_path / "results", catalog=catalog("edit"))
    s = Sessions(engine, store, gpu=gpu, results=cache)
    key = s.new()
    s.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), example="x")
    s.edit(key, "edit", EditOptions(seed_mode="fixed", seed=1, steps=2))
    for png in (tmp_path / "results").glob("*.png"):
        png.write_bytes(b"not a png")
    s.edit(key, "edit", EditOptions(seed_mode="fixed", seed=1, steps=2), parent=1)
    assert gpu.runs == 2


def test_the_cache_keeps_its_bound(tmp_path):
    cache = ResultCache(tmp_path, max_entries=3)
    for i in range(5):
        cache.put(f"{i:064x}", Image.new("RGB", (8, 8)), 1.0, {})
    assert len(cache) == 3


def test_an_imported_zip_cannot_mark_its_steps_as_examples(engine, store, tmp_path):
    s = Sessions(engine, store)
    key = s.new()
    s.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), example="cup-red")
    s.edit(key, "x", EditOptions(steps=2))
    s.export(key, tmp_path / "e.zip", scope="all")
    other = s.new()
    s.import_zip(other, tmp_path / "e.zip")
    assert all("example" not in n.extra and "cached" not in n.extra for n in s.history(other).nodes.values())
