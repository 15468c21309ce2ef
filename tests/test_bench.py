"""`python -m kontext bench` on the tiny model (CPU, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kontext import bench
from kontext.cli import main

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
])
def test_bad_arguments_exit_2_with_one_line(tiny_dir, extra, says, capsys):
    assert main(bench_args(tiny_dir) + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and says in err[-1]


def test_random_full_builder_on_small_configs():
    """The random-full code path (configs, tokenizers, placement) with the widths shrunk for a CPU."""
    from kontext.engine import Engine
    from kontext.params import TINY_PROFILE

    cfg = bench.random_full_configs()
    assert cfg["transformer"] == {"guidance_embeds": True}
    cfg["transformer"].update(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                              joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
    cfg["vae"].update(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)
    cfg["t5"].update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1)
    cfg["clip"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                       projection_dim=32)
    pipe = bench.build_random_pipeline("cpu", torch.float32, cfg)
    assert torch.get_default_dtype() == torch.float32
    engine = Engine.from_pipeline(pipe, bench.RANDOM_FULL, TINY_PROFILE, "cpu")
    result = engine.edit(None, "a kite", seed=0, steps=2, width=64, height=64)
    assert result.image.size == (64, 64) and result.model == "random-full"


@pytest.mark.slow
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
    pipe = bench.build_random_pipeline("meta", torch.bfloat16)
    billions = {name: round(sum(p.numel() for p in getattr(pipe, name).parameters()) / 1e9, 2)
                for name in ("transformer", "text_encoder_2", "text_encoder", "vae")}
    assert billions == {"transformer": 11.9, "text_encoder_2": 4.76, "text_encoder": 0.12, "vae": 0.08}
    assert next(pipe.transformer.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_startup_is_timed_cold_then_warm_for_aot(tiny_dir, tmp_path, capsys):
    """--startup: a fresh process to the first possible edit, with empty compile caches and then with
    the package the first one left; the warm start only loads, so it is the faster one."""
    out = tmp_path / "b.json"
    rc = main(bench_args(tiny_dir, "--modes", "aot", "--runs", "1", "--steps", "2", "--threads", "1",
                         "--startup", "--json", str(out)))
    assert rc == 0
    report = json.loads(out.read_text())
    (aot,) = report["startup"]
    assert aot["mode"] == "aot" and aot["error"] is None
    assert aot["warm_s"] < aot["cold_s"]  # the cold one exported and compiled, the warm one loaded
    assert report["results"][0]["speed"] == "aot"
    printed = capsys.readouterr().out
    assert "| mode | start-up, cold caches s | start-up, warm caches s |" in printed
    assert "| aot | " in printed.split("start-up, cold")[1]
