"""LoRA presets (kontext/model/loras.py): a small LoRA made here for the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kontext.errors import UserError
from kontext.model.engine import Engine
from kontext.model.loras import Lora, parse_active
from kontext.sessions.session import EditOptions, Sessions


def make_lora(engine, folder, seed):
    """A LoRA for the tiny transformer's attention, with random (not zero) weights so it changes images."""
    from diffusers import FluxKontextPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    tr = engine.pipe.transformer
    tr.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                   adapter_name="making")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tr.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    state = get_peft_model_state_dict(tr, adapter_name="making")
    tr.delete_adapters("making")
    FluxKontextPipeline.save_lora_weights(str(folder), transformer_lora_layers=state)
    return str(folder / "pytorch_lora_weights.safetensors")


@pytest.fixture(scope="module")
def lora_engine(tiny_dir, tmp_path_factory):
    engine = Engine.load("tiny", cache_dir=tiny_dir)
    base = tmp_path_factory.mktemp("loras")
    (base / "a").mkdir()
    (base / "b").mkdir()
    broken = base / "broken.safetensors"
    broken.write_bytes(b"not a LoRA at all")
    presets = (Lora("style", make_lora(engine, base / "a", 1)), Lora("grain", make_lora(engine, base / "b", 2)),
               Lora("broken", str(broken)))
    engine.set_lora_presets(presets)
    return engine


def run(engine, loras=()):
    image = Image.effect_noise((64, 64), 40).convert("RGB")
    return engine.edit(image, "x", seed=3, steps=2, width=64, height=64, loras=loras)


def test_a_lora_changes_the_image_and_is_recorded(lora_engine):
    plain = np.asarray(run(lora_engine).image, np.int16)
    styled = run(lora_engine, (("style", 1.0),))
    assert np.abs(np.asarray(styled.image, np.int16) - plain).max() > 10
    assert styled.extra["loras"] == [{"name": "style", "source": lora_engine.lora.presets["style"].source,
                                      "scale": 1.0}]
    off = np.asarray(run(lora_engine, (("style", 0.0),)).image, np.int16)  # strength 0 = off
    # Back to the base model, through peft's wrapped (disabled) layers: the same picture up to one level
    # of 255 of rounding (measured: 0 or 1), far from the LoRA's own change above.
    assert np.abs(off - np.asarray(run(lora_engine).image, np.int16)).max() <= 1
    assert np.abs(off - plain).max() <= 1


def test_several_at_once_and_no_reload(lora_engine, monkeypatch):
    transformer = lora_engine.pipe.transformer
    run(lora_engine, (("style", 1.0),))
    calls = []
    real = lora_engine.pipe.load_lora_weights
    monkeypatch.setattr(lora_engine.pipe, "load_lora_weights", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    both = np.asarray(run(lora_engine, (("style", 0.7), ("grain", 1.2))).image, np.int16)
    one = np.asarray(run(lora_engine, (("style", 0.7),)).image, np.int16)
    assert np.abs(both - one).max() > 0 and lora_engine.pipe.transformer is transformer
    assert len(calls) <= 1  # "grain" loaded once on first use; "style" was already there


@pytest.mark.parametrize("loras, words", [
    ((("nope", 1.0),), "not offered here; the LoRAs are: style, grain, broken"),
    ((("style", 3.0),), "strength must be a number from 0 to 2"),
    ((("style", 1.0), ("style", 0.5)), "each LoRA once"),
])
def test_bad_lora_requests_are_refused(lora_engine, loras, words):
    with pytest.raises(UserError, match=words):
        run(lora_engine, loras)


def test_a_broken_lora_file_is_named_by_its_preset_never_by_its_server_path(lora_engine, caplog):
    with pytest.raises(UserError, match="LoRA broken could not be loaded") as e:
        run(lora_engine, (("broken", 1.0),))
    path = lora_engine.lora.presets["broken"].source
    assert path not in str(e.value) and "/" not in str(e.value)  # no server path reaches a client
    assert path in caplog.text  # the host's log has it
    assert run(lora_engine, (("style", 1.0),)).extra["loras"][0]["name"] == "style"  # and the engine works on


def test_parse_and_aot_refusal():
    assert parse_active("style=0.8, grain") == (("style", 0.8), ("grain", 1.0))
    assert parse_active("") == ()
    with pytest.raises(UserError, match="name=strength"):
        parse_active("style=lots")


def test_reroll_keeps_the_loras_and_replay_reproduces_them(lora_engine, store, tmp_path):
    from kontext.core.metadata import read_metadata
    from kontext.files.importer import open_export
    from kontext.tools.replay import replay

    s = Sessions(lora_engine, store)
    key = s.new()
    s.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    _, node = s.edit(key, "x", EditOptions(steps=2, loras=(("style", 0.9),)))
    assert node.extra["loras"][0]["scale"] == 0.9
    assert read_metadata(s.image_path(key))["step"]["extra"]["loras"][0]["name"] == "style"  # in the PNG
    _, rolled = s.reroll(key)
    assert rolled.extra["loras"] == node.extra["loras"]
    s.export(key, tmp_path / "l.zip", scope="tree")
    (tmp_path / "out").mkdir()
    with open_export(tmp_path / "l.zip") as reader:
        rows = replay(reader, Engine.load("tiny"), tmp_path / "out")  # a fresh engine: no presets at all
    assert all(r.identical in (True, None) for r in rows), [(r.id, r.max_diff) for r in rows]


def test_branding_reads_lora_presets(tmp_path):
    from kontext.showcase.branding import load_branding

    (tmp_path / "w.safetensors").write_bytes(b"x")
    (tmp_path / "b.toml").write_text('[[lora]]\nname = "w"\nsource = "w.safetensors"\nscale = 0.8\n'
                                     '[[lora]]\nname = "hub"\nsource = "someone/kontext-lora"\n')
    b = load_branding(tmp_path / "b.toml")
    assert b.loras[0].source == str((tmp_path / "w.safetensors").resolve()) and b.loras[0].scale == 0.8
    assert b.loras[1].source == "someone/kontext-lora"
    (tmp_path / "c.toml").write_text('[[lora]]\nname = "bad name!"\nsource = "x"\n')
    with pytest.raises(UserError, match="name must be"):
        load_branding(tmp_path / "c.toml")
