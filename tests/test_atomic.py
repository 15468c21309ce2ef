"""write_atomic: the old file or the new one, never half of one, and nothing left behind."""

import os
import stat

import pytest

from kontext.core.atomic import write_atomic


def test_bytes_replace_the_file_and_no_temporary_file_stays(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    assert write_atomic(path, b"new", durable=True) is None
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half of it")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_a_writers_result_is_returned_and_the_mode_applied(tmp_path):
    path = tmp_path / "secret"
    old = os.umask(0o022)
    try:
        assert write_atomic(path, lambda f: f.write(b"key") * 10, mode=0o600) == 30
    finally:
        os.umask(old)
    assert path.read_bytes() == b"key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
