"""`python -m kontext trial`: one visitor against app.py, run with random-small, the full-size code
path narrowed for a CPU (1 MP pictures, the real model's limits), as a GPU run does with random-full."""

from __future__ import annotations

import json

import pytest

from kontext.tools.cli import main


def test_bad_arguments_exit_2_with_one_line(capsys):
    assert main(["trial", "--steps", "0"]) == 2
    assert main(["trial", "--side", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --steps must be from 1 to 100, got 0", "error: --side must be from 64 to 4096 px, got 10"]


@pytest.mark.process  # app.py in its own process
def test_one_visitor_at_full_size_edits_undoes_and_rerolls(tmp_path, capsys):
    out = tmp_path / "trial.json"
    rc = main(["trial", "--model", "random-small", "--steps", "2", "--side", "1024", "--json", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report
    assert report["ready"].startswith("ready (warm-up") and report["ready_s"] >= report["startup_s"] > 0
    assert "random-small" in report["banner"] and "random weights" in report["banner"]
    rows = {r["action"]: r for r in report["actions"]}
    assert list(rows) == ["upload", "edit 1", "edit 2", "edit 3", "undo", "re-roll"]
    assert all(r["ok"] and r["error"] is None for r in rows.values())
    for name in ("edit 1", "edit 2", "edit 3", "re-roll"):
        r = rows[name]
        assert r["size"] == "1024x1024"  # the real model's 1 MP default, not the tiny model's sizes
        # the client waits for the engine, and sees a preview before the result
        assert 0 < r["engine_s"] < r["client_s"] and 0 < r["first_preview_s"] < r["client_s"]
    assert rows["undo"]["step"] == 3 and rows["re-roll"]["step"] == 5
    table = capsys.readouterr().out
    assert "| edit 1 | " in table and "| re-roll | " in table and "model random-small on cpu" in table
    turns = ("edit 1", "edit 2", "edit 3", "re-roll")
    outside = sorted(rows[n]["client_s"] - rows[n]["engine_s"] for n in turns)  # four turns: the middle two
    assert f"outside the engine per turn (client s - engine s): median {(outside[1] + outside[2]) / 2:.3f} s" in table


def test_the_measured_app_ignores_the_callers_app_settings(monkeypatch):
    """A caller's password, host, pool or ZeroGPU setting would change (or hang) what trial and
    loadtest measure: the app they start gets none of them, but keeps the caches."""
    from kontext.tools.appproc import app_env

    for name, value in (("KONTEXT_AUTH", "ann:pw"), ("KONTEXT_HOST", "0.0.0.0"), ("KONTEXT_WORKERS", "ray"),
                        ("SPACES_ZERO_GPU", "true"), ("SPACE_ID", "me/x"), ("KONTEXT_CACHE", "/tmp/c"),
                        ("KONTEXT_AOT_DIR", "/tmp/a"), ("OMP_NUM_THREADS", "2")):
        monkeypatch.setenv(name, value)
    env = app_env("tiny", "cpu")
    assert not {"KONTEXT_AUTH", "KONTEXT_HOST", "KONTEXT_WORKERS", "SPACES_ZERO_GPU", "SPACE_ID"} & env.keys()
    assert env["KONTEXT_CACHE"] == "/tmp/c" and env["KONTEXT_AOT_DIR"] == "/tmp/a" and env["HF_HUB_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == "2"  # the trial measures with the caller's threads
    pinned = app_env("tiny", "cpu", one_thread=True)  # loadtest: one thread in the app and each worker
    assert pinned["OMP_NUM_THREADS"] == "1" and pinned["KONTEXT_WORKER_THREADS"] == "1"
