"""Start-up prints nothing a user cannot act on (kontext/quiet.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process  # a fresh Python: the advice is printed once, at import
def test_loading_the_model_prints_no_torchvision_advice(tiny_dir):
    code = "from kontext.model.engine import Engine; Engine.load('tiny')"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "torchvision" not in text
    assert "warn" not in text.lower(), text[-2000:]


def test_the_filter_drops_only_that_message():
    import kontext  # noqa: F401 - installs the filter

    log = logging.getLogger("transformers.utils.import_utils")
    record = lambda msg: logging.LogRecord(log.name, logging.WARNING, __file__, 1, msg, None, None)  # noqa: E731
    fallback = "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil`"
    assert not log.filter(record(fallback))
    assert log.filter(record("some other import problem the user should see"))
