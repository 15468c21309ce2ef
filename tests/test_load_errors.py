"""Load errors of the real model, told apart through diffusers' real wrapping of huggingface_hub's
errors: a stand-in hub on the loopback interface answers as the hub does (tests/hub_stub.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # a stand-in hub and fresh Pythons
TESTS = Path(__file__).resolve().parent

SCRIPT = r"""
import json, os, sys
from hub_stub import Stub
stub = Stub()
os.environ["HF_ENDPOINT"] = stub.url  # read when huggingface_hub is imported, below
from kontext.model.engine import Engine
from kontext.errors import ModelLoadError
out = {}
for case in sys.argv[1:]:
    if case == "refused":
        stub.stop()
    else:
        stub.mode = case.split("+")[0]
    if "+token" in case:
        os.environ["HF_TOKEN"] = "hf_" + "x" * 34
    else:
        os.environ.pop("HF_TOKEN", None)
    try:
        Engine.load("black-forest-labs/FLUX.1-Kontext-dev", device="cpu")
        out[case] = "loaded?!"
    except ModelLoadError as e:
        out[case] = str(e)
print(json.dumps(out))
"""


def test_gated_missing_no_token_and_unreachable_are_told_apart(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0", PYTHONPATH=str(TESTS),
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1")
    cases = ["gated-anonymous", "gated-no-access+token", "missing", "revision", "refused"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *cases], env=env, capture_output=True, text=True,
                          timeout=240, cwd=TESTS.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "gated and no Hugging Face token is set" in got["gated-anonymous"]
    assert "HF_TOKEN" in got["gated-anonymous"] and "huggingface.co/black-forest-labs" in got["gated-anonymous"]
    assert "the token in use has no access" in got["gated-no-access+token"]
    assert "no such model on the hub" in got["missing"]
    assert "revision does not exist" in got["revision"]
    assert "not in the local cache and the hub cannot be reached" in got["refused"]
    for message in got.values():  # one plain sentence each, never a wrapped traceback
        assert message.startswith("cannot load black-forest-labs/FLUX.1-Kontext-dev: ") and "Traceback" not in message
