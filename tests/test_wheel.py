"""The wheel holds everything the UI needs and installs it under a name that cannot clash."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.process  # pip builds a wheel, a fresh Python imports it

CHECK = """
import importlib.util, sys
assert importlib.util.find_spec("ui") is None, "a bare 'ui' package was installed"
from kontext.hosting.config import Settings
from kontext_ui import build_ui, launch_kwargs
kw = launch_kwargs(Settings())
assert "keydown" in kw["js"] and kw["css_paths"][0].is_file()
print("ok")
"""


def test_the_wheel_imports_its_ui_with_assets(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "kontext_ui/assets/shortcuts.js" in names and "kontext_ui/app.py" in names
    assert not any(n.startswith("ui/") for n in names)
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)  # what pip puts in site-packages
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
