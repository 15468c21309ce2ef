"""`python -m kontext edit`, called in-process (the module entry point itself runs as a subprocess in
tests/test_bench.py::test_module_command_exits_0)."""

import socket

from PIL import Image

from kontext.core.metadata import read_metadata
from kontext.tools.cli import main


def test_edit_end_to_end_writes_png_with_parameters(tmp_path, tiny_dir, photo, capsys):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    photo.save(src)
    rc = main(["edit", "--model", "tiny", "--image", str(src), "--prompt", "make it blue", "--seed", "7",
               "--steps", "2", "--guidance", "2.5", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "seed 7" in captured.out
    meta = read_metadata(out)
    assert meta["step"]["seed"] == 7 and meta["step"]["prompt"] == "make it blue"
    assert meta["step"]["steps"] == 2 and "Guidance: 2.5" in meta["parameters"]
    w, h = Image.open(out).size
    assert abs(w / h - 1.5) < 0.1


def test_text_to_image_without_image(tmp_path, tiny_dir, capsys):
    out = tmp_path / "t2i.png"
    rc = main(["edit", "--model", "tiny", "--prompt", "a fox", "--steps", "1", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert read_metadata(out)["step"]["kind"] == "text"


def test_bad_input_is_one_clear_line_and_nonzero_exit(tmp_path, tiny_dir, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    rc = main(["edit", "--model", "tiny", "--image", str(bad), "--prompt", "x", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().startswith("error: --image: not an image")
    assert len(err.strip().splitlines()) == 1
    rc = main(["edit", "--model", "tiny", "--prompt", "x", "--steps", "0", "--out", str(tmp_path / "o.png")])
    assert rc == 2 and "steps must be" in capsys.readouterr().err


def test_tiny_model_loads_offline_without_network(tmp_path, monkeypatch):
    # A fresh cache folder: the tiny model is built and saved, then read back, all with the network off.
    def no_net(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KONTEXT_CACHE", str(tmp_path / "fresh"))
    from kontext.model.engine import Engine

    e = Engine.load("tiny")
    assert e.edit(None, "x", seed=1, steps=1).image.size
    assert (tmp_path / "fresh").is_dir()
