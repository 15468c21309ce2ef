"""The ahead-of-time path as a host starts it: the start-up bench (a cold start compiles the package, a
warm one loads it) and ZeroGPU (one start-up GPU call makes the package, the turn's worker loads it).
Kept apart from tests/test_aot.py so `pytest -n` can run the two files on different workers; both use
the package compiled once per run (tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
from PIL import Image


@pytest.mark.compile  # a cold start compiles the aot package
def test_startup_is_timed_cold_then_warm_for_aot(tiny_dir, tmp_path, capsys, aot_package):
    """--startup: a fresh process to the first possible edit, with empty compile caches and then with
    the package the first one left; the warm start only loads it (the timed edits here load the
    package compiled for the run)."""
    from test_bench import bench_args

    from kontext.tools.cli import main

    out = tmp_path / "b.json"
    rc = main(bench_args(tiny_dir, "--modes", "aot", "--runs", "1", "--steps", "2", "--threads", "1",
                         "--startup", "--json", str(out)))
    assert rc == 0
    report = json.loads(out.read_text())
    (aot,) = report["startup"]
    assert aot["mode"] == "aot" and aot["error"] is None
    assert aot["cold_s"] > 0 and aot["warm_s"] > 0
    assert aot["cold_made_package"] and aot["warm_reused_package"]  # the cold one compiled, the warm one loaded
    assert report["results"][0]["speed"] == "aot"
    printed = capsys.readouterr().out
    assert "| mode | start-up, cold caches s | start-up, warm caches s |" in printed
    assert "| aot | " in printed.split("start-up, cold")[1]


@pytest.mark.compile
def test_aot_on_zerogpu_compiles_in_one_gpu_call_and_each_worker_loads_it(tmp_path, tiny_dir, aot_package):
    """--mode aot on ZeroGPU: the package is made (or found) inside one start-up GPU call asking for
    the long duration, the main process never loads it, and the turn's worker runs it compiled. The
    package compiled for the run is in the cache the app inherits, so here the GPU call finds it."""
    import re

    log = tmp_path / "spaces.jsonl"
    src = tmp_path / "src.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(src)
    from gradio_client import handle_file
    from test_zerogpu_app import zerogpu_env

    from apphelpers import launch_app

    proc, client = launch_app(["--model", "tiny", "--device", "cpu", "--data-dir", str(tmp_path / "s"),
                               "--mode", "aot"], tmp_path / "server.log", env=zerogpu_env(log), timeout_s=600)
    try:
        key = client.predict(api_name="/new_session")
        client.predict(key, handle_file(str(src)), api_name="/upload")
        _, history = client.predict(key, "make it blue", "fixed", 7, 0, 2, 0, 0, api_name="/edit")
        step = history["steps"][-1]
        assert step["extra"]["compiled_calls"] == 2 and step["extra"]["speed"] == "aot"
    finally:
        proc.terminate()
        proc.wait(30)
    calls = [json.loads(line) for line in log.read_text().splitlines() if '"call"' in line]
    assert [c["function"] for c in calls] == ["gpu_aot_package", "gpu_turn"]
    assert calls[0]["duration"] == 1500
    server_log = (tmp_path / "server.log").read_text()
    loads = [int(pid) for pid in re.findall(r"compiled transformer \S+ loaded in [\d.]+ s \(process (\d+)\)",
                                            server_log)]
    assert loads and proc.pid not in loads, server_log[-3000:]  # loaded by the worker, not the main process
    assert "transformer compiled ahead of time" in server_log or "aot:" in server_log
