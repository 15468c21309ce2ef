"""kill -9 in the middle of an edit loses no committed turn and shows nothing half-written."""

import signal
import time
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image

from apphelpers import free_port, launch_app

pytestmark = pytest.mark.process  # app.py, killed and started again


def launch(data: Path, port: int):
    return launch_app(["--model", "tiny", "--data-dir", str(data / "sessions")], data / f"server-{port}.log")


def test_kill_9_during_an_edit_keeps_committed_turns(tmp_path, tiny_dir):
    src = tmp_path / "src.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(src)
    proc, client = launch(tmp_path, free_port())
    try:
        key = client.predict(api_name="/new_session")
        client.predict(key, handle_file(str(src)), api_name="/upload")
        for i in range(3):
            client.predict(key, f"turn {i}", "random", 0, 0, 2, 0, 0, api_name="/edit")
        before = client.predict(key, api_name="/history")
        job = client.submit(key, "never lands", "random", 0, 0, 100, 512, 512, api_name="/edit")
        deadline = time.time() + 60
        while time.time() < deadline and not any("progress" in str(o) for o in job.outputs()):
            time.sleep(0.05)
        assert any("progress" in str(o) for o in job.outputs())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    proc, client = launch(tmp_path, free_port())
    try:
        after = client.predict(key, api_name="/history")
        assert after == before
        assert [s["prompt"] for s in after["steps"] if s["kind"] == "edit"] == ["turn 0", "turn 1", "turn 2"]
        img, h = client.predict(key, "after the restart", "random", 0, 0, 2, 0, 0, api_name="/edit")
        assert h["path"][-1] == 5 and Image.open(img).size[0] > 0
    finally:
        proc.terminate()
        proc.wait(30)
