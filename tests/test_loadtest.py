"""`python -m kontext loadtest`: the setups it takes, and a real run against app.py (local, and a
pool of two Ray Serve workers: 8 visitors x 5 turns through gradio_client)."""

from __future__ import annotations

import json

import pytest

from kontext.tools.cli import main
from kontext.tools.loadtest import parse_setups


def test_setups_are_local_or_ray_with_a_count():
    assert parse_setups("local, ray:2") == [("local", 1), ("ray", 2)]
    for bad in ("ray", "ray:0", "gpu:2", ",", "ray:x"):
        with pytest.raises(ValueError, match="--workers"):
            parse_setups(bad)


def test_bad_arguments_exit_2_with_one_line(capsys):
    assert main(["loadtest", "--workers", "ray:0"]) == 2
    assert main(["loadtest", "--clients", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --workers takes local or ray:N (N from 1 to 64), comma-separated; got 'ray:0'",
                   "error: --clients must be from 1 to 256, got 0"]


@pytest.mark.ray
def test_eight_visitors_five_turns_lose_nothing_and_use_both_workers(tiny_dir, tmp_path, capsys):
    pytest.importorskip("ray.serve")
    out = tmp_path / "load.json"
    rc = main(["loadtest", "--workers", "ray:2", "--clients", "8", "--turns", "5", "--steps", "2",
               "--json", str(out)])
    (pool,) = json.loads(out.read_text())["results"]
    assert rc == 0, pool
    assert pool["lost"] == 0 and pool["turns"] == 40 and pool["workers_used"] == 2  # both workers took turns
    assert 0 < pool["p50_s"] <= pool["p95_s"] and pool["turns_per_min"] > 0 and pool["startup_s"] > 0
    table = capsys.readouterr().out
    assert "| setup | start-up s | turns | lost |" in table and "| ray:2 |" in table
