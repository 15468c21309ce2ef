"""`python -m kontext replay`: re-running an exported history on the tiny model reproduces it bit for bit."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from kontext.core.metadata import read_metadata
from kontext.files.export import MANIFEST
from kontext.files.importer import open_export
from kontext.files.store import Store
from kontext.sessions.session import EditOptions, Sessions
from kontext.tools.cli import main
from kontext.tools.replay import replay, version_warnings

# `engine` comes from conftest.py, which also points $KONTEXT_CACHE at the tiny model it saved, so
# the CLI's own `Engine.load("tiny")` reads that copy (~0.2 s).


@pytest.fixture(autouse=True)
def no_model_from_env(engine, monkeypatch):
    monkeypatch.delenv("KONTEXT_MODEL", raising=False)  # the CLI would prefer it to the manifest's model


def fixed(seed: int) -> EditOptions:
    return EditOptions(seed_mode="fixed", seed=seed)


@pytest.fixture(scope="module")
def chain(engine, tmp_path_factory) -> bytes:
    """A path export: upload 1 -> edits 2, 3, 4 (with an abandoned branch off step 2)."""
    root = tmp_path_factory.mktemp("chain")
    s = Sessions(engine, Store(root / "s"))
    key = s.new()
    rng = np.random.default_rng(0)
    s.upload(key, Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)), name="src.png")
    s.edit(key, "add a red hat", fixed(21))
    s.edit(key, "make it night", fixed(22))
    s.undo(key)
    s.edit(key, "make it snow", fixed(23))
    s.edit(key, "add a lighthouse", fixed(24))
    buf = io.BytesIO()
    s.export(key, buf, extras=False)
    return buf.getvalue()


def tamper(data: bytes, edit) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            body = src.read(name)
            if name == MANIFEST:
                m = json.loads(body)
                edit(m)
                body = json.dumps(m).encode()
            zf.writestr(name, body)
    return out.getvalue()


def test_replay_reproduces_every_step_bit_exactly(chain, tmp_path, capsys):
    (tmp_path / "chain.zip").write_bytes(chain)
    out = tmp_path / "replayed"
    assert main(["replay", str(tmp_path / "chain.zip"), "--out", str(out), "--model", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "all 3 generated steps reproduced bit-exactly" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "4", "5"]  # the path; step 3 is on another branch
    assert [r[3] for r in rows] == ["source", "yes", "yes", "yes"]
    assert [r[4] for r in rows] == ["-", "0", "0", "0"]
    exported = zipfile.ZipFile(io.BytesIO(chain))
    assert (out / "0001.png").read_bytes() == exported.read("steps/0001.png")
    meta = read_metadata(out / "0005.png")["step"]
    assert meta["seed"] == 24 and meta["prompt"] == "add a lighthouse" and meta["extra"]["replay_of_sha256"]
    assert meta["revision"] == "tiny-v1"


def test_replay_of_a_whole_forest_from_text(engine, tmp_path):
    s = Sessions(engine, Store(tmp_path / "s"))
    key = s.new()
    s.edit(key, "a red barn", fixed(1), parent=None)
    s.edit(key, "add snow", fixed(2))
    s.undo(key)
    s.edit(key, "make it night", EditOptions(seed_mode="fixed", seed=3, guidance=4.0, steps=2))
    s.edit(key, "a lighthouse", EditOptions(seed_mode="fixed", seed=4, width=96, height=64), parent=None)
    s.export(key, tmp_path / "all.zip", scope="all", extras=False)
    (tmp_path / "out").mkdir()
    with open_export(tmp_path / "all.zip") as reader:
        rows = replay(reader, engine, tmp_path / "out")
    assert [(r.step, r.identical, r.max_diff) for r in rows] == [(i, True, 0) for i in (1, 2, 3, 4)]
    assert Image.open(tmp_path / "out" / "0004.png").size == (96, 64)


def test_a_tampered_seed_is_reported_at_its_step(chain, tmp_path, capsys):
    bad = tamper(chain, lambda m: m["steps"][2].update(seed=999))  # step 4 of the path 1, 2, 4, 5
    (tmp_path / "bad.zip").write_bytes(bad)
    # No --model: the manifest's model ("tiny") is used.
    assert main(["replay", str(tmp_path / "bad.zip"), "--out", str(tmp_path / "o")]) == 1
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()[:1].isdigit()}
    assert rows["2"][3] == "yes"
    assert rows["4"][3] == "NO" and int(rows["4"][4]) > 0 and rows["4"][2] == "999"
    assert rows["5"][3] == "NO"  # it started from step 4's (different) replayed image
    assert "MISMATCH at steps 4, 5" in text and "the first is step 4" in text


def test_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    assert main(["replay", str(tmp_path / "x.zip"), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable ZIP" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_an_unknown_recorded_model_needs_model(chain, tmp_path, capsys):
    (tmp_path / "m.zip").write_bytes(tamper(chain, lambda m: m["model"].update(id="/home/someone/model")))
    assert main(["replay", str(tmp_path / "m.zip"), "--out", str(tmp_path / "o")]) == 2
    assert "choose the model to replay it with --model" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "m.zip"), "--out", str(tmp_path / "o"), "--model", "tiny"]) == 0


def test_manifest_and_image_disagreeing_exits_2(chain, tmp_path, capsys):
    big = tamper(chain, lambda m: m["steps"][1].update(width=2048, height=2048))
    (tmp_path / "big.zip").write_bytes(big)
    assert main(["replay", str(tmp_path / "big.zip"), "--out", str(tmp_path / "o")]) == 2
    assert "manifest says 2048x2048" in capsys.readouterr().err


def test_version_differences_are_warned(engine, chain, tmp_path, capsys):
    def older(m):
        m["libraries"]["torch"] = "2.8.0"
        m["model"]["revision"] = "tiny-v0"
        m["steps"][1]["extra"]["speed"] = "fp8+fbcache"
        m["cpu_threads"] = 7

    (tmp_path / "old.zip").write_bytes(tamper(chain, older))
    assert main(["replay", str(tmp_path / "old.zip"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "torch 2.8.0" in err and "model revision tiny-v0" in err
    assert "step 2 was made in speed mode fp8+fbcache" in err and "OMP_NUM_THREADS=7" in err
    with open_export(io.BytesIO(chain)) as reader:
        assert version_warnings(dict(reader.export.manifest), engine) == []


def test_a_lora_is_loaded_from_the_hosts_presets_never_from_the_export(chain, tmp_path, capsys, monkeypatch):
    """A step names its LoRAs; their weights come from --branding's presets, never from where the file says."""
    from kontext.model.engine import Engine

    loads = []
    real_load = Engine.load

    def load(*a, **kw):  # every engine the CLI loads: record any LoRA it is asked to load
        engine = real_load(*a, **kw)
        monkeypatch.setattr(engine.pipe, "load_lora_weights", lambda source, **kw: loads.append(source) or 1 / 0,
                            raising=False)
        return engine

    monkeypatch.setattr(Engine, "load", load)

    def evil(m):
        m["steps"][1]["extra"]["loras"] = [{"name": "evil", "source": "/etc/passwd", "scale": 1.0}]
        m["steps"][2]["extra"]["loras"] = [{"name": "evil", "source": "someone/hub-repo", "scale": 1.0}]

    (tmp_path / "evil.zip").write_bytes(tamper(chain, evil))
    assert main(["replay", str(tmp_path / "evil.zip"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "LoRAs that this replay does not offer: evil (steps 2, 4)" in err and "--branding" in err
    assert loads == [] and not (tmp_path / "o").exists()  # refused before any step ran or anything loaded

    (tmp_path / "mine.safetensors").write_bytes(b"the host's own file")
    (tmp_path / "b.toml").write_text('[[lora]]\nname = "evil"\nsource = "mine.safetensors"\n')
    assert main(["replay", str(tmp_path / "evil.zip"), "--out", str(tmp_path / "o"),
                 "--branding", str(tmp_path / "b.toml")]) == 2
    assert loads == [str((tmp_path / "mine.safetensors").resolve())]  # the host's preset, not /etc/passwd
    assert "step 2 cannot be replayed with this model: LoRA evil could not be loaded" in capsys.readouterr().err


def test_a_picked_candidate_of_a_group_and_the_steps_after_it_replay_bit_exactly(engine, tmp_path, monkeypatch):
    """Variations (issue 27): a batched candidate is made again by its batch (size, seeds from seed -
    index) and taken out; one made one after another is the single call with its own seed. The steps
    edited from a picked candidate start from its replayed picture."""
    s = Sessions(engine, Store(tmp_path / "s"))
    key = s.new()
    rng = np.random.default_rng(1)
    s.upload(key, Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)), name="src.png")
    h, _ = s.edit(key, "add a red hat", EditOptions(seed_mode="fixed", seed=60, steps=2, variations=3))
    batch = [n.id for n in h.group()]  # 2, 3, 4 (seeds 60-62), made in one call
    s.pick(key, batch[2])
    s.edit(key, "make it night", EditOptions(seed_mode="fixed", seed=5, steps=2))  # 5, from candidate 2
    with monkeypatch.context() as m:  # as where a batch does not fit: one call per candidate
        m.setattr("kontext.model.speed.batch_plan", lambda engine, pixels, n: (n <= 1, "one after another"))
        h, _ = s.edit(key, "add snow", EditOptions(seed_mode="fixed", seed=70, steps=2, variations=2))
    apart = [n.id for n in h.group()]  # 6, 7 (seeds 70, 71)
    assert [h.node(i).extra["variations"]["batched"] for i in batch + apart] == [True] * 3 + [False] * 2
    s.pick(key, apart[1])
    s.edit(key, "add a lighthouse", EditOptions(seed_mode="fixed", seed=8, steps=2))  # 8, from candidate 1
    path, tree = tmp_path / "path.zip", tmp_path / "tree.zip"
    s.export(key, path, scope="path", extras=False)
    s.export(key, tree, scope="tree", extras=False)

    calls, batch_seconds = [], []
    real = engine.edit

    def edit(*a, **kw):
        calls.append(kw.get("variations", 1))
        result = real(*a, **kw)
        if kw.get("variations", 1) == 3:
            batch_seconds.append(result.seconds)
        return result

    monkeypatch.setattr(engine, "edit", edit)
    # This replay's own plan would run the batch one candidate at a time: the record decides instead.
    monkeypatch.setattr("kontext.model.speed.batch_plan", lambda engine, pixels, n: (n <= 1, "no room"))
    for zip_path, steps, runs in ((path, [1, 4, 5, 7, 8], [3, 1, 1, 1]),
                                  (tree, [1, 2, 3, 4, 5, 6, 7, 8], [3, 1, 1, 1, 1])):
        out = tmp_path / zip_path.stem
        out.mkdir()
        calls.clear()
        with open_export(zip_path) as reader:
            rows = replay(reader, engine, out)
        assert [r.step for r in rows] == steps
        assert all(r.identical and r.max_diff == 0 for r in rows[1:]), [(r.step, r.max_diff) for r in rows]
        assert calls == runs  # the batch of 3 once (for each of its candidates), the others one call each
        seeds = {r.step: r.seed for r in rows}
        assert seeds[4] == 62 and seeds[7] == 71
        # A candidate records its share of the batch's time, as the app does (Running._steps).
        recorded = read_metadata(out / "0004.png")["step"]["seconds"]
        assert recorded == round(batch_seconds[-1] / 3, 3)
