"""`python -m kontext bench` on the tiny model (CPU, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kontext.tools.cli import main

ROW_KEYS = {"mode", "label", "size", "width", "height", "steps", "runs", "error", "load_s", "warmup_s",
            "size_warmup_s", "edit_s_median", "edit_s_min", "edit_s_max", "step_s", "first_preview_s",
            "peak_gib", "diff_max", "diff_mean", "full_steps", "speed"}


def bench_args(tiny_dir, *extra: str) -> list[str]:
    return ["bench", "--model", "tiny", "--device", "cpu", "--cache-dir", str(tiny_dir), *extra]


def test_two_modes_write_json_and_a_table(tiny_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(bench_args(tiny_dir, "--modes", "fast,eager", "--sizes", "edit1024,t2i1024", "--runs", "2",
                         "--steps", "3", "--json", str(out)))
    assert rc == 0
    report = json.loads(out.read_text())
    assert {"model", "device", "torch", "diffusers", "runs"} <= set(report["meta"])
    rows = report["results"]
    assert [(r["mode"], r["size"]) for r in rows] == [
        ("fast", "edit1024"), ("fast", "t2i1024"), ("eager", "edit1024"), ("eager", "t2i1024")]
    for r in rows:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["error"] is None
        assert (r["width"], r["height"], r["steps"], r["runs"]) == (128, 128, 3, 2)
        assert 0 < r["edit_s_min"] <= r["edit_s_median"] <= r["edit_s_max"]
        assert r["step_s"] > 0 and 0 < r["first_preview_s"] < r["edit_s_max"]
        assert r["peak_gib"] is None  # CPU
    fast, eager = rows[0], rows[2]
    # The eager output came after the fast one; diffs are filled in at the end all the same.
    assert eager["diff_max"] is None and isinstance(fast["diff_max"], int) and fast["diff_mean"] >= 0
    assert fast["full_steps"] is not None and 1 <= fast["full_steps"] <= 3 and eager["full_steps"] is None
    assert (fast["speed"], eager["speed"]) == ("fast", "eager")
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| mode | size | load s |") and len(table) == 2 + len(rows)
    assert table[2].startswith("| fast | edit1024 128x128 |")


def test_edit512_is_scaled_to_the_model(tiny_dir, tmp_path):
    out = tmp_path / "b.json"
    assert main(bench_args(tiny_dir, "--modes", "eager,draft", "--sizes", "edit512", "--runs", "1",
                           "--steps", "2", "--json", str(out))) == 0
    eager, draft = json.loads(out.read_text())["results"]
    assert (eager["width"], draft["width"]) == (64, 32)  # tiny: 1024 -> 128; draft halves each side
    assert draft["diff_max"] is None  # different sizes are not compared


def test_variations_table_costs_each_candidate_against_one(tiny_dir, tmp_path, capsys):
    """--variations: one instruction's N candidates, batched and one after another, per candidate and
    against N = 1 (always timed as the baseline)."""
    out = tmp_path / "v.json"
    assert main(bench_args(tiny_dir, "--modes", "eager", "--sizes", "edit512", "--runs", "1", "--steps", "2",
                           "--variations", "4,2", "--json", str(out))) == 0
    rows = json.loads(out.read_text())["variations"]
    assert [(r["n"], r["way"]) for r in rows] == [(1, "single"), (2, "batch"), (2, "one by one"), (4, "batch"),
                                                  (4, "one by one")]
    for r in rows:
        assert r["error"] is None and (r["mode"], r["size"], r["width"], r["steps"]) == ("eager", "edit512", 64, 2)
        assert r["per_candidate_s"] == pytest.approx(r["edit_s_median"] / r["n"], abs=1e-4)
        assert r["all_vs_one"] == pytest.approx(r["per_candidate_vs_one"] * r["n"], rel=0.01)
    assert rows[0]["all_vs_one"] == 1.0 and {r["plan"] for r in rows[1:]} == {"batch"}  # eager on a CPU batches
    table = capsys.readouterr().out.split("| mode | size | candidates |")[1].splitlines()
    assert len(table) == 2 + len(rows) and table[4].startswith("| eager | edit512 64x64, 2 steps | 2 | one by one |")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_a_failing_mode_is_reported_and_the_rest_still_runs(tiny_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(bench_args(tiny_dir, "--modes", "fp8,eager", "--runs", "1", "--steps", "2", "--json", str(out)))
    assert rc == 1
    fp8, eager = json.loads(out.read_text())["results"]
    assert "compute capability" in fp8["error"] and eager["error"] is None
    assert "| fp8 | edit1024 | error: RuntimeError: quantize='fp8' needs" in capsys.readouterr().out


@pytest.mark.parametrize("extra, says", [
    (["--modes", "eager,warp"], "warp"),
    (["--sizes", "edit2048"], "--sizes"),
    (["--runs", "0"], "--runs"),
    (["--steps", "0"], "steps"),
    (["--model", "random-full", "--device", "cpu"], "CUDA"),
    (["--variations", "2,5"], "--variations: variations must be a whole number from 1 to 4, got 5"),
    (["--variations", "two"], "--variations must be candidate counts"),
    (["--variations", "4", "--seed", "4294967295"], "with 4 variations the seed must be at most"),
])
def test_bad_arguments_exit_2_with_one_line(tiny_dir, extra, says, capsys):
    assert main(bench_args(tiny_dir) + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and says in err[-1]


def test_random_small_is_the_random_full_code_path_narrowed():
    """random-small: random-full's configs with the widths shrunk, built by the same code, with the real
    model's profile (full-size images and limits), loaded by name like any model."""
    from kontext.core.params import REAL_PROFILE
    from kontext.model.engine import Engine
    from kontext.model.randomfull import random_full_configs, random_small_configs

    full, small = random_full_configs(), random_small_configs()
    assert full["transformer"] == {"guidance_embeds": True}
    assert small.keys() == full.keys() and all(small[k] != full[k] for k in full)
    assert small["vae"]["latent_channels"] == 16 and small["t5"]["vocab_size"] == full["t5"]["vocab_size"]
    engine = Engine.load("random-small", device="cpu")
    assert torch.get_default_dtype() == torch.float32
    assert engine.profile == REAL_PROFILE and engine.model_id == "random-small"
    assert engine.revision == "random-seed0-cpu"  # CPU and CUDA draw different weights: the name says which
    result = engine.edit(None, "a kite", seed=0, steps=2, width=256, height=256)
    assert result.image.size == (256, 256) and result.model == "random-small"
    again = Engine.load("random-small", device="cpu").edit(None, "a kite", seed=0, steps=2, width=256, height=256)
    assert again.image.tobytes() == result.image.tobytes()  # seeded: the same weights every build


def test_random_full_parts_go_to_the_gpu_while_they_fit_and_the_rest_to_the_cpu():
    """On a 24 GB card the 23.8 GB transformer cannot be built on the GPU (built in CPU memory, slow);
    the encoders and the VAE can. Sizes from a build on the meta device."""
    from kontext.model.randomfull import _build, placer, random_full_configs

    free = [24e9]
    gpu = placer("random-full", "cuda", lambda: free[0])
    sizes = {}

    def where(name, size):
        sizes[name] = size
        return "meta", "meta"
    _build(torch.bfloat16, random_full_configs(), where)
    assert round(sizes["transformer"] / 1e9, 1) == 23.8 and round(sizes["text_encoder_2"] / 1e9, 1) == 9.5
    assert {n: gpu(n, b)[1] for n, b in sizes.items()} == {"transformer": "cpu", "vae": "cuda",
                                                            "text_encoder_2": "cuda", "text_encoder": "cuda"}
    assert gpu("transformer", sizes["transformer"]) == ("cpu", "cpu")  # drawn on the CPU too: it does not fit
    free[0] = 141e9  # an H200: everything on the GPU
    assert {gpu(n, b) for n, b in sizes.items()} == {("cuda", "cuda")}
    assert placer("random-full", "cuda", None)("vae", 1) == ("cpu", "cpu")  # no usable GPU (ZeroGPU's main process)


def test_random_full_under_a_memory_cap_is_drawn_on_the_gpu_and_kept_in_cpu_memory():
    """--gpu-memory-gb 22 on an H200: every part is drawn on the GPU (fast), then kept in CPU memory,
    where from_pretrained leaves a real model, for the speed mode to place within the cap."""
    from kontext.model.randomfull import placer

    capped = placer("random-full", "cuda", lambda: 141e9, capped=True)
    assert capped("transformer", 23.8e9) == ("cuda", "cpu")
    assert capped("vae", 0.2e9) == ("cuda", "cpu")
    assert placer("random-full", "cuda", lambda: 141e9)("transformer", 23.8e9) == ("cuda", "cuda")


def test_random_full_is_refused_without_a_gpu():
    from kontext.errors import ModelLoadError
    from kontext.model.engine import Engine

    with pytest.raises(ModelLoadError, match="random-full .*needs a CUDA GPU.*random-small"):
        Engine.load("random-full", device="cpu")


@pytest.mark.process  # python -m kontext
def test_module_command_exits_0(tiny_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), KONTEXT_CACHE=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "kontext", *bench_args(tiny_dir, "--modes", "eager", "--sizes", "edit512",
                                                       "--runs", "1", "--steps", "2", "--threads", "1")],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| eager | edit512 64x64 |" in proc.stdout


def test_random_full_is_the_real_architecture():
    """Built on the meta device (no memory): the parameter counts of FLUX.1 Kontext [dev]'s parts."""
    from kontext.model.randomfull import build_random_pipeline

    pipe = build_random_pipeline("meta", torch.bfloat16)
    billions = {name: round(sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e9, 2)
                for name in ("transformer", "text_encoder_2", "text_encoder", "vae")}
    assert billions == {"transformer": 11.9, "text_encoder_2": 4.76, "text_encoder": 0.12, "vae": 0.08}
    assert next(pipe.transformer.parameters()).dtype == torch.bfloat16
