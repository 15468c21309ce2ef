"""LoRA presets (kontext/model/loras.py): a small LoRA made here for the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kontext.errors import UserError
from kontext.model.engine import Engine
from kontext.model.loras import Lora, LoraSet, check_records, parse_active
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
    # The LoRA's change (13 levels alone, 9 after other files ran in the same worker and process):
    # well above the 0-1 of rounding the strength-0 checks below allow.
    assert np.abs(np.asarray(styled.image, np.int16) - plain).max() > 4
    assert styled.extra["loras"] == [{"name": "style", "scale": 1.0}]  # the preset's name: never a server path
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


@pytest.mark.parametrize("text, words", [
    ("junk=0,", "loras: 'junk=0,' has an empty entry"),
    (",,,", "loras: ',,,' has an empty entry"),
    ("style=0.5,,grain", "has an empty entry"),
    ("=1", "loras: '=1' has no LoRA name before '='"),
    ("style=", "loras: 'style=' has no strength after '='"),
    ("style=lots", "loras: in 'style=lots' the strength 'lots' is not a number"),
])
def test_malformed_lora_text_is_refused_in_specific_words(text, words):
    with pytest.raises(UserError, match=words) as e:
        parse_active(text)
    assert "is not offered" not in str(e.value)


class HubPipe:
    """Stands in for diffusers' loader: asks the stand-in hub about the repository, as
    load_lora_weights first does (huggingface_hub's real errors, on the loopback interface only)."""

    def __init__(self, url):
        self.url = url

    def load_lora_weights(self, source, weight_name=None, adapter_name=None):
        import huggingface_hub

        huggingface_hub.HfApi(endpoint=self.url, token=False).model_info(source)


def test_a_hub_lora_that_cannot_be_had_is_told_in_words(monkeypatch, caplog):
    import huggingface_hub.constants
    from hub_stub import Stub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the stub is on this machine
    stub = Stub("missing")
    said = {}
    try:
        for mode in ("missing", "gated-anonymous", "refused"):
            if mode == "refused":
                stub.stop()
            else:
                stub.mode = mode
            loras = LoraSet(HubPipe(stub.url), (Lora("far", "someone/kontext-lora"),))
            with pytest.raises(UserError) as e:
                loras.apply(loras.resolve((("far", 1.0),)))
            said[mode] = str(e.value)
    finally:
        stub.stop()
    assert "the Hugging Face Hub refused its download" in said["missing"]
    assert "the Hugging Face Hub refused its download" in said["gated-anonymous"]
    assert "the Hugging Face Hub cannot be reached" in said["refused"]
    for words in said.values():  # the preset's name, never the repository or the loader's words
        assert words.startswith("LoRA far could not be loaded: ") and "someone" not in words
    assert "someone/kontext-lora" in caplog.text  # the host's log has it


def test_a_hub_lora_offline_and_not_downloaded_says_so(lora_engine):
    loras = LoraSet(lora_engine.pipe, (Lora("far", "someone/kontext-lora"),))  # tests run with HF_HUB_OFFLINE=1
    with pytest.raises(UserError, match="LoRA far could not be loaded: it is not downloaded yet and this server "
                                        "is offline"):
        loras.apply(loras.resolve((("far", 1.0),)))


def test_a_files_lora_record_holds_names_and_strengths_only():
    legacy = [{"name": "style", "source": "/etc/passwd", "weight_name": "x.safetensors", "scale": 0.5}]
    assert check_records(legacy, "step 2") == [{"name": "style", "scale": 0.5}]  # where weights lie: dropped
    for bad, words in (([{"name": "", "scale": 1}], "name must be 1-40"),
                       ([{"name": "../x", "scale": 1}], "name must be 1-40"),
                       ([{"name": "a", "scale": 9}], "strength must be a number from 0 to 2"),
                       ([{"name": "a", "scale": "1"}], "strength must be a number"),
                       ([{"name": "a", "scale": 1, "url": "http://x"}], "holds name and scale only"),
                       ([{"name": "a", "scale": 1}] * 2, "must each be named once"),
                       ([{"name": f"a{i}", "scale": 1} for i in range(5)], "at most 4"),
                       ("a=1", "must be a list"), (["a"], "must be an object")):
        with pytest.raises(UserError, match=words):
            check_records(bad, "step 2")


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
    fresh = Engine.load("tiny")
    with open_export(tmp_path / "l.zip") as reader:  # no presets: the steps' LoRA names are not offered
        with pytest.raises(UserError, match=r"does not offer: style \(steps 2, 3\)"):
            replay(reader, fresh, tmp_path / "out")
    fresh.set_lora_presets(tuple(lora_engine.lora.presets.values()))  # the host's presets
    with open_export(tmp_path / "l.zip") as reader:
        rows = replay(reader, fresh, tmp_path / "out")
    assert all(r.identical in (True, None) for r in rows), [(r.step, r.max_diff) for r in rows]


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
