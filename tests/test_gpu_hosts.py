"""Every GPU host starts: the plan for each tier a Space offers runs from requirements.txt, doctor says
so without a GPU, a GPU that PyTorch cannot use stops the app with the cause, and a GPU memory cap
is applied the way torch accepts it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from kontext.errors import UserError
from kontext.hosting import tiers
from kontext.tools import doctor

ROOT = Path(__file__).resolve().parent.parent
SPACE_SIZES_GB = (16, 24, 48, 70, 80, 141)  # what a Space offers, as the issue lists them


def test_the_tiers_cover_every_size_a_space_offers():
    sizes = {round(t.gib / 0.93) for t in tiers.TIERS}  # torch reports GiB of a nominal-GB card
    for gb in SPACE_SIZES_GB:
        assert any(abs(gb - s) <= 0.1 * gb for s in sizes), gb


@pytest.mark.parametrize("tier", tiers.TIERS, ids=lambda t: f"{t.gib:g}GiB{'-zerogpu' if t.zerogpu else ''}")
def test_every_tier_plan_needs_only_what_requirements_pin_and_this_install_has(tier):
    pins = doctor.requirement_pins(ROOT / "requirements.txt")
    plan = tier.plan
    for name in plan.packages:
        assert name in pins and pins[name], f"{plan.speed.label} on {tier.hardware} needs {name}, not pinned"
        assert tiers.importable(name), name
    assert plan.peak_gib < tier.gib  # the plan fits the card it was chosen for
    assert doctor.check_plan(ROOT, tier.gib, tier.zerogpu)[-1].ok


@pytest.mark.parametrize("label", sorted({t.plan.speed.label for t in tiers.TIERS}))
def test_every_tier_plan_loads_and_edits_on_the_tiny_model(tiny_dir, label):
    """The modes auto chooses on any tier (int8 with group or model offload, model offload, eager)
    load and finish an edit here; on a GPU they differ only in where the parts live."""
    from kontext.model.engine import Engine
    from kontext.model.speed import parse_mode

    engine = Engine.load("tiny", device="cpu", cache_dir=tiny_dir, speed=parse_mode(label))
    result = engine.edit(Image.effect_noise((96, 64), 40).convert("RGB"), "x", seed=1, steps=2)
    assert result.image.size == (result.width, result.height) and result.extra["speed"] == label


def test_doctor_prints_the_24_gb_plan_without_a_gpu(capsys):
    rc = doctor.run(["--path", str(ROOT), "--gpu-memory-gb", "22.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "speed mode int8+offload-model" in out and "needs torchao: in requirements.txt (0.17.0)" in out
    assert "importable here" in out and "expected peak GPU memory of a 1 MP edit: about 13.7 GiB" in out
    assert "one part at a time" in out and "this plan can run from requirements.txt" in out


def test_doctor_fails_a_plan_whose_package_is_not_in_requirements(tmp_path, capsys):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    (tmp_path / "requirements.txt").write_text("\n".join(x for x in lines if not x.startswith("torchao")) + "\n")
    assert doctor.run(["--path", str(tmp_path), "--gpu-memory-gb", "24"]) == 1
    out = capsys.readouterr().out
    assert "FIX  packages: int8+offload-model needs torchao: not in requirements.txt" in out
    assert "fix: add torchao to requirements.txt" in out
    assert doctor.run(["--path", str(tmp_path), "--gpu-memory-gb", "48"]) == 0  # eager needs nothing more
    found = [f.text for f in doctor.check_requirements(tmp_path) if not f.ok]
    assert any("on L4 or A10G (24 GB) --mode auto picks int8+offload-model, which needs torchao" in t for t in found)


def test_doctor_refuses_a_nonsense_size(capsys):
    assert doctor.run(["--path", str(ROOT), "--gpu-memory-gb", "0"]) == 2
    assert "--gpu-memory-gb must be from 1 to 4096" in capsys.readouterr().err


def test_the_zerogpu_plan_is_eager_and_needs_spaces(capsys):
    assert doctor.run(["--path", str(ROOT), "--gpu-memory-gb", "70", "--zerogpu"]) == 0
    out = capsys.readouterr().out
    assert "on ZeroGPU: speed mode eager" in out and "eager needs spaces: in requirements.txt" in out


def test_the_readme_tier_table_is_the_one_the_code_makes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tier_table", ROOT / "scripts" / "tier_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text("utf-8")
    assert f"{module.START}\n{module.table()}\n{module.END}" in readme, "run python scripts/tier_table.py --write"


# --- a GPU that PyTorch cannot use -------------------------------------------------------------------
def old_driver(monkeypatch, built="13.0", driver="535.104.05"):
    from kontext.model import cudacheck

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", built)
    monkeypatch.setattr(cudacheck, "has_nvidia_gpu", lambda: True)
    monkeypatch.setattr(cudacheck, "driver_version", lambda: driver)
    return cudacheck


def test_a_driver_too_old_for_torchs_cuda_is_named_with_the_fix(monkeypatch):
    problem = old_driver(monkeypatch).cuda_problem()
    assert "NVIDIA GPU, but PyTorch cannot use it" in problem
    assert "built for CUDA 13.0, which needs NVIDIA driver 580 or newer; the driver here is 535.104.05" in problem
    assert "--extra-index-url https://download.pytorch.org/whl/cu126" in problem and "--model tiny" in problem


def test_a_cpu_only_torch_on_a_gpu_machine_is_named(monkeypatch):
    problem = old_driver(monkeypatch, built=None).cuda_problem()
    assert "is a CPU-only build" in problem


def test_no_gpu_at_all_is_not_a_problem(monkeypatch):
    from kontext.model import cudacheck

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cudacheck, "has_nvidia_gpu", lambda: False)
    assert cudacheck.cuda_problem() is None


def test_the_driver_version_is_read_from_the_kernel_module(monkeypatch, tmp_path):
    from kontext.model import cudacheck

    f = tmp_path / "version"
    f.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    monkeypatch.setattr(cudacheck, "DRIVER_FILE", f)
    assert cudacheck.driver_version() == "535.104.05"


def test_the_app_stops_instead_of_serving_the_tiny_model_on_a_gpu_it_cannot_use(monkeypatch, tmp_path):
    import app

    old_driver(monkeypatch)
    with pytest.raises(SystemExit, match="error: this machine has an NVIDIA GPU, but PyTorch cannot use it"):
        app.main(["--data-dir", str(tmp_path), "--no-warmup"])
    args = app.parse_args(["--model", "tiny"])
    app.refuse_unusable_gpu(args, zerogpu=False)  # asked for on purpose: allowed
    app.refuse_unusable_gpu(app.parse_args(["--device", "cpu"]), zerogpu=False)


def test_doctor_names_the_unusable_gpu(monkeypatch):
    old_driver(monkeypatch)
    [finding] = doctor.check_gpu(ROOT, doctor.MODEL, "auto")
    assert not finding.ok and "driver 580 or newer" in finding.text


# --- the GPU memory cap -----------------------------------------------------------------------------
class FakeCard:
    total_memory = int(139.8 * 2**30)


def test_the_cap_is_applied_by_device_index(monkeypatch):
    """torch refuses a bare 'cuda' device here (the first H200 run's lowmem step failed on it)."""
    from torch.cuda._utils import _get_device_index

    from kontext.model import gpumem

    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: FakeCard())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda f, d: calls.append((round(f, 4), _get_device_index(d))))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: None)
    gpumem.apply_cap("cuda", 22)
    gpumem.apply_cap("cuda:1", 22)
    assert calls == [(round(22 / 139.8, 4), 0), (round(22 / 139.8, 4), 1)]
    with pytest.raises(UserError, match="more than this GPU has"):
        gpumem.apply_cap("cuda", 200)
    with pytest.raises(UserError, match="from 1 to 4096"):
        gpumem.check_cap(0)


def test_auto_plans_for_the_capped_size(monkeypatch):
    from kontext.hosting.startup import resolve_speed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: FakeCard())
    assert resolve_speed("auto", "cuda")[0].label == "eager"
    opts, reason = resolve_speed("auto", "cuda", gpu_memory_gb=22)
    assert opts.label == "int8+offload-model" and "capped at 22 GiB by --gpu-memory-gb" in reason


def test_a_cap_on_a_cpu_is_refused(tiny_dir):
    from kontext.model.engine import Engine

    with pytest.raises(UserError, match="caps a CUDA GPU's memory"):
        Engine.load("tiny", device="cpu", cache_dir=tiny_dir, gpu_memory_gb=8)


def test_a_mode_that_cannot_run_stops_before_anything_is_loaded(monkeypatch, tiny_dir):
    """A missing torchao stops start-up before from_pretrained (before a 33 GB download)."""
    import builtins

    from diffusers import FluxKontextPipeline

    from kontext.model.engine import Engine
    from kontext.model.speed import parse_mode

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name == "torchao" or name.startswith("torchao."):
            raise ImportError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    def must_not_load(*args, **kwargs):
        raise AssertionError("from_pretrained ran before the mode was checked")

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    monkeypatch.setattr(FluxKontextPipeline, "from_pretrained", must_not_load)
    with pytest.raises(RuntimeError, match=r"quantize='int8' needs torchao, one of this project's requirements"):
        Engine.load("black-forest-labs/FLUX.1-Kontext-dev", device="cpu", speed=parse_mode("int8+offload-model"))


def test_int8_weights_are_torchaos_version_2_tensors(monkeypatch, tiny_dir):
    """torchao 0.17 (the Space's pin) defaults to version 1, which failed under model offload on CUDA."""
    import torchao.quantization as q

    from kontext.model.engine import Engine
    from kontext.model.speed import parse_mode

    seen = []
    real = q.quantize_
    monkeypatch.setattr(q, "quantize_", lambda module, config, **kw: (seen.append(config), real(module, config, **kw)))
    Engine.load("tiny", device="cpu", cache_dir=tiny_dir, speed=parse_mode("int8"))
    assert [type(c).__name__ for c in seen] == ["Int8WeightOnlyConfig"] and seen[0].version == 2


# --- Python on ZeroGPU -------------------------------------------------------------------------------
def test_the_front_matter_asks_for_a_python_zerogpu_offers():
    fm = doctor.front_matter(ROOT / "README.md")
    assert str(fm["python_version"]) in doctor.ZEROGPU_PYTHONS
    readme = (ROOT / "README.md").read_text("utf-8")
    assert re.search(r"Python[^\n]*3\.12\.12[^\n]*3\.10\.13", readme)  # the docs' list, quoted


def test_a_python_zerogpu_does_not_offer_is_flagged(tmp_path):
    readme = (ROOT / "README.md").read_text("utf-8").replace('python_version: "3.12"', 'python_version: "3.11"')
    (tmp_path / "README.md").write_text(readme)
    shutil.copy(ROOT / "app.py", tmp_path)
    shutil.copy(ROOT / "requirements.txt", tmp_path)
    found = [f.text for f in doctor.check_front_matter(tmp_path) if not f.ok]
    assert any("ZeroGPU runs Python 3.12.12 or 3.10.13" in t for t in found), found
