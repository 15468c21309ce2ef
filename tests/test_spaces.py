"""What a Hugging Face Space reads from this checkout: requirements.txt, the README's front matter,
and `python -m kontext doctor`'s verdict on a good and a broken checkout."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kontext.tools import doctor

ROOT = Path(__file__).resolve().parent.parent


def pins():
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return out


def test_requirements_pin_every_dependency_within_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    have = pins()
    for dep in deps:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in have, f"requirements.txt lacks {name}"
        assert req.specifier.contains(have[name]), f"{name}=={have[name]} is outside {dep}"
    assert "spaces" in have
    major, minor = (int(x) for x in have["torch"].split(".")[:2])
    assert (2, 8) <= (major, minor) <= (2, 11)  # what the ZeroGPU runtime offers


def test_front_matter_is_complete_and_matches_the_pins():
    fm = doctor.front_matter(ROOT / "README.md")
    for key in doctor.REQUIRED_KEYS:
        assert key in fm, key
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == pins()["gradio"]
    assert fm["models"] == ["black-forest-labs/FLUX.1-Kontext-dev"]
    assert fm["suggested_hardware"] in doctor.ROOMY_HARDWARE
    assert len(fm["short_description"]) <= 60
    assert doctor.check_front_matter(ROOT) == [doctor.Finding(True, "front matter", "complete for a Gradio Space")]


def test_suggested_hardware_is_a_real_flavor():
    from huggingface_hub import SpaceHardware

    names = {h.value for h in SpaceHardware}
    assert set(doctor.ROOMY_HARDWARE) <= names


def checkout(tmp_path):
    dest = tmp_path / "checkout"
    dest.mkdir()
    for name in ("README.md", "requirements.txt", "pyproject.toml", "app.py"):
        shutil.copy(ROOT / name, dest / name)
    return dest


def doctor_run(path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "kontext", "doctor", "--path", str(path), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_doctor_passes_a_good_checkout(tmp_path):
    out = doctor_run(checkout(tmp_path), "--model", "tiny", "--offline")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ready for a Space" in out.stdout and "FIX" not in out.stdout


def test_doctor_names_what_to_fix_in_a_broken_checkout(tmp_path):
    path = checkout(tmp_path)
    readme = (path / "README.md").read_text()
    readme = re.sub(r"short_description: .*\n", "", readme)
    readme = readme.replace("startup_duration_timeout: 1h", "startup_duration_timeout: 10m")
    readme = readme.replace("suggested_hardware: l40sx1", "suggested_hardware: t4-small")
    (path / "README.md").write_text(readme)
    reqs = (path / "requirements.txt").read_text()
    reqs = reqs.replace("diffusers==0.42.1\n", "").replace("torch==2.11.0", "torch==2.1.0")
    (path / "requirements.txt").write_text(reqs)
    out = doctor_run(path, "--model", "tiny", "--offline")
    assert out.returncode == 1
    for words in ("missing key 'short_description'", "startup_duration_timeout must allow",
                  "suggested_hardware 't4-small' cannot hold the model", "requirements.txt lacks diffusers",
                  "torch==2.1.0 is outside"):
        assert words in out.stdout, words


def test_doctor_without_a_token_says_to_set_hf_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = doctor_run(ROOT, env=env)
    assert out.returncode == 1 and "set the secret HF_TOKEN" in out.stdout


@pytest.mark.process  # a stand-in hub
def test_doctor_checks_access_to_the_gated_model(tmp_path):
    from hub_stub import Stub

    stub = Stub("gated-no-access")
    try:
        env = dict(os.environ, HF_ENDPOINT=stub.url, HF_HUB_OFFLINE="0", HF_TOKEN="hf_" + "x" * 34,
                   HF_HOME=str(tmp_path / "hf"))
        out = doctor_run(ROOT, env=env)
    finally:
        stub.stop()
    assert out.returncode == 1
    assert "the token in use has no access" in out.stdout and "Accept its licence" in out.stdout


def test_the_gpu_function_is_plain_off_zerogpu(monkeypatch):
    from kontext.env import on_zerogpu
    from kontext.hosting import zerogpu as gpu

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not on_zerogpu()
    assert gpu.zerogpu_function() is gpu.gpu_turn  # spaces.GPU is a no-op outside ZeroGPU
