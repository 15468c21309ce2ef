"""app.py on a (simulated) ZeroGPU Space: `spaces` comes before torch, the edit runs through the
decorated GPU function in a forked child (tests/fake_spaces), and nothing else touches the GPU."""

import json
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from apphelpers import ROOT, launch_app

pytestmark = pytest.mark.process  # app.py with a stand-in spaces package
FAKE = ROOT / "tests" / "fake_spaces"


def zerogpu_env(log: Path) -> dict:
    return {"SPACES_ZERO_GPU": "true", "PYTHONPATH": f"{FAKE}:{ROOT / 'tests'}", "FAKE_SPACES_LOG": str(log)}


def test_an_edit_on_zerogpu_goes_through_the_gpu_function(tmp_path, tiny_dir):
    log = tmp_path / "spaces.jsonl"
    src = tmp_path / "src.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(src)
    proc, client = launch_app(["--model", "tiny", "--device", "cpu", "--data-dir", str(tmp_path / "s")],
                              tmp_path / "server.log", env=zerogpu_env(log))
    try:
        key = client.predict(api_name="/new_session")
        client.predict(key, handle_file(str(src)), api_name="/upload")
        job = client.submit(key, "make it blue", "fixed", 7, 0, 3, 0, 0, api_name="/edit")
        image, history = job.result(timeout=120)
        assert any("progress" in str(o) for o in job.outputs()[:-1])  # progress came back from the child
        assert history["steps"][-1]["seed"] == 7 and history["path"] == [1, 2]
        assert Image.open(image).size == (history["steps"][-1]["width"], history["steps"][-1]["height"])
    finally:
        proc.terminate()
        proc.wait(30)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0] == {"event": "import", "before_torch": True}
    calls = [r for r in records if r["event"] == "call"]
    assert len(calls) == 1 and calls[0]["function"] == "gpu_turn"
    assert isinstance(calls[0]["duration"], int) and 0 < calls[0]["duration"] <= 120
    server_log = (tmp_path / "server.log").read_text()
    assert "kontext-warm-up" not in server_log and "ZeroGPU" in server_log


def test_jit_compile_is_refused_on_zerogpu(tmp_path):
    import subprocess
    import sys

    env = dict(__import__("os").environ, **zerogpu_env(tmp_path / "log"))
    out = subprocess.run([sys.executable, "app.py", "--model", "tiny", "--device", "cpu", "--mode", "compile"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ZeroGPU does not support" in out.stderr and "compile" in out.stderr
