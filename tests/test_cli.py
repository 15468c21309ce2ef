import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from kontext.metadata import read_metadata

ROOT = Path(__file__).resolve().parent.parent


def run(args, tiny_dir):
    e = dict(os.environ, HF_HUB_OFFLINE="1")  # $KONTEXT_CACHE already points at tiny_dir's cache
    return subprocess.run([sys.executable, "-m", "kontext", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=180)


def test_edit_end_to_end_writes_png_with_parameters(tmp_path, tiny_dir, photo):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    photo.save(src)
    r = run(["edit", "--model", "tiny", "--image", str(src), "--prompt", "make it blue", "--seed", "7",
             "--steps", "2", "--guidance", "2.5", "--out", str(out)], tiny_dir)
    assert r.returncode == 0, r.stderr
    assert "seed 7" in r.stdout
    meta = read_metadata(out)
    assert meta["step"]["seed"] == 7 and meta["step"]["prompt"] == "make it blue"
    assert meta["step"]["steps"] == 2 and "Guidance: 2.5" in meta["parameters"]
    w, h = Image.open(out).size
    assert abs(w / h - 1.5) < 0.1


def test_text_to_image_without_image(tmp_path, tiny_dir):
    out = tmp_path / "t2i.png"
    r = run(["edit", "--model", "tiny", "--prompt", "a fox", "--steps", "1", "--out", str(out)], tiny_dir)
    assert r.returncode == 0, r.stderr
    assert read_metadata(out)["step"]["kind"] == "text"


def test_bad_input_is_one_clear_line_and_nonzero_exit(tmp_path, tiny_dir):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    r = run(["edit", "--model", "tiny", "--image", str(bad), "--prompt", "x", "--out", str(tmp_path / "o.png")],
            tiny_dir)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: --image: not an image")
    assert len(r.stderr.strip().splitlines()) == 1
    r = run(["edit", "--model", "tiny", "--prompt", "x", "--steps", "0", "--out", str(tmp_path / "o.png")], tiny_dir)
    assert r.returncode == 2 and "steps must be" in r.stderr


def test_tiny_model_loads_offline_without_network(tmp_path, tiny_dir):
    # A fresh cache folder: the tiny model is built and saved, then read back, all with the hub off.
    code = ("import socket\n"
            "def no_net(*a, **k): raise OSError('network disabled in this test')\n"
            "socket.socket.connect = no_net\n"
            "from kontext.engine import Engine\n"
            "e = Engine.load('tiny')\n"
            "print(e.edit(None, 'x', seed=1, steps=1).image.size)\n")
    e = dict(os.environ, HF_HUB_OFFLINE="1", KONTEXT_CACHE=str(tmp_path / "fresh"))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=e, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fresh").is_dir()
