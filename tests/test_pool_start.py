"""Starting the worker pool: a model the workers cannot load stops the app with the workers' own words.

(Its own module, after tests/test_pool.py: that module's Ray instance is shut down by then.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apphelpers import ROOT

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.ray


def test_workers_that_cannot_load_the_model_stop_the_app_with_the_reason(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "app.py", "--workers", "ray", "--replicas", "1", "--device", "cpu",
                          "--model", "no-such/model", "--data-dir", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode != 0
    line = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert line and line[-1].startswith("error: the pool's workers could not start: cannot load no-such/model"), \
        out.stderr[-2000:]
    assert "offline" in line[-1]  # the load error's own advice comes through


@pytest.mark.parametrize("kw, words", [
    (dict(replicas=-1), "--replicas must be from 1 to 64"),
    (dict(replicas=65), "--replicas must be from 1 to 64"),
    (dict(replicas=1, name="my pool!"), "--pool-name must be 1 to 64 letters"),
])
def test_bad_pool_settings_are_refused_before_ray_starts(kw, words):
    import ray

    from kontext.errors import UserError
    from kontext.hosting.pool import start_pool

    replicas = kw.pop("replicas")
    with pytest.raises(UserError, match=words):
        start_pool("tiny", "eager", "cpu", replicas, say=lambda m: None, **kw)
    assert not ray.is_initialized()


def test_a_front_that_started_ray_takes_it_down_whole_and_a_joined_cluster_keeps_running(monkeypatch):
    """stop_pool: a Ray instance this front started goes down with ray.shutdown() alone (Serve's delete
    would wait out each worker's graceful stop); on a cluster it joined, its pool is deleted first."""
    import ray
    from ray import serve

    from kontext.hosting.pool import stop_pool

    calls = []
    monkeypatch.setattr(serve, "delete", lambda name: calls.append(("delete", name)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown",)))
    stop_pool("mine", owns_ray=True)
    assert calls == [("shutdown",)]
    calls.clear()
    stop_pool("mine", owns_ray=False)
    assert calls == [("delete", "mine"), ("shutdown",)]
