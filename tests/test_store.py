import os
import time

import pytest

from kontext.core.history import History, Node
from kontext.files.store import Store, new_key


def committed(store, key, n=1):
    """Commit a chain of n steps whose images are stored (placeholder bytes: the store does not decode)."""
    name = store.save_image(key, b"png 0")
    h = History().add(Node(id=0, parent=None, kind="upload", image=name), parent=None)
    for i in range(1, n):
        name = store.save_image(key, f"png {i}".encode())
        h = h.add(Node(id=0, parent=None, kind="edit", image=name, prompt=str(i)))
    store.commit(key, h)
    return h


def age(folder, seconds):
    """Make every file of a session folder look last used `seconds` ago."""
    t = time.time() - seconds
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (t, t))


def test_commit_and_load_roundtrip(tmp_path):
    store = Store(tmp_path)
    key = new_key()
    h = committed(store, key, 3)
    assert store.load(key).to_dict() == h.to_dict()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_commit_refuses_history_naming_missing_images(tmp_path):
    store = Store(tmp_path)
    key = new_key()
    h = History().add(Node(id=0, parent=None, kind="upload", image="0" * 32 + ".png"), parent=None)
    with pytest.raises(ValueError, match="not stored"):
        store.commit(key, h)
    assert not store.exists(key)


def test_orphan_images_from_a_crash_are_removed(tmp_path):
    store = Store(tmp_path)
    key = new_key()
    committed(store, key, 1)
    orphan = store.image_path(key, store.save_image(key, b"half a turn"))
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    store.load(key)
    assert not orphan.exists()


@pytest.mark.parametrize("bad", ["", "short", "../../etc/passwd", "a" * 31, "a/" * 20, None, 5])
def test_malformed_keys_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="session key"):
        Store(tmp_path).folder(bad)


def test_image_names_cannot_escape(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="image reference"):
        store.image_path(new_key(), "../history.json")


def test_folders_do_not_reveal_keys(tmp_path):
    store = Store(tmp_path)
    key = new_key()
    committed(store, key)
    assert key not in str(store.folder(key))


def test_expiry_deletes_idle_sessions(tmp_path):
    store = Store(tmp_path, max_idle_s=3600)
    old, new = new_key(), new_key()
    committed(store, old)
    committed(store, new)
    age(store.folder(old), 7200)
    removed = store.sweep()
    assert removed == [store.folder(old)]
    assert not store.folder(old).exists() and store.exists(new)


def test_disk_budget_removes_least_recently_used(tmp_path):
    store = Store(tmp_path)
    keys = [new_key() for _ in range(3)]
    for i, k in enumerate(keys):
        committed(store, k)
        age(store.folder(k), 3000 - i)
    store.max_bytes = 1  # the budget shrank (a restart with a smaller --max-disk-gb)
    store.sweep(keep=keys[2])
    assert [store.exists(k) for k in keys] == [False, False, True]


def test_disk_budget_spares_sessions_in_use(tmp_path):
    store = Store(tmp_path)
    idle, busy = new_key(), new_key()
    committed(store, idle)
    committed(store, busy)
    age(store.folder(idle), 3000)
    age(store.folder(busy), 3000)
    store.save_image(busy, b"an edit in flight")  # written just now, before its history
    store.max_bytes = 1
    store.sweep()
    assert not store.exists(idle) and store.exists(busy)


def test_bad_limits_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_idle_s"):
        Store(tmp_path, max_idle_s=0)
    with pytest.raises(ValueError, match="max_bytes"):
        Store(tmp_path, max_bytes=-5)


def test_sweep_only_touches_session_folders(tmp_path):
    store = Store(tmp_path, max_idle_s=1)
    other = tmp_path / "model-cache"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"x" * 1000)
    past = time.time() - 7200
    os.utime(other, (past, past))
    key = new_key()
    committed(store, key)
    age(store.folder(key), 7200)
    store.max_bytes = 1
    store.sweep()
    assert other.is_dir() and (other / "weights.bin").is_file()
    assert not store.exists(key)


def test_a_key_with_a_trailing_newline_is_not_a_key(store):
    from kontext.files.store import check_key, new_key

    key = new_key()
    assert check_key(key) == key
    for bad in (key + "\n", key + "\r\n", "\n" + key, key[:-1] + "\n"):
        with pytest.raises(ValueError, match="malformed"):
            check_key(bad)


def test_thumbnails_are_small_made_once_and_go_with_their_image(tmp_path):
    import io

    from PIL import Image

    store = Store(tmp_path)
    key = new_key()
    buf = io.BytesIO()
    Image.effect_noise((1024, 768), 40).convert("RGB").save(buf, format="PNG")
    name = store.save_image(key, buf.getvalue())
    thumb = store.thumbnail_path(key, name)
    with Image.open(thumb) as t:
        assert t.size == (256, 192)
    made = thumb.stat().st_mtime_ns
    assert store.thumbnail_path(key, name).stat().st_mtime_ns == made  # not made again
    assert thumb.stat().st_size < len(buf.getvalue()) / 10
    store.discard_images(key, [name])
    assert not thumb.exists() and not store.folder(key).exists()


def test_the_sweep_spares_a_session_used_after_its_scan(tmp_path):
    import contextlib
    import threading

    store = Store(tmp_path, max_idle_s=3600)
    key = new_key()
    committed(store, key)
    age(store.folder(key), 7200)  # expired when the sweep scans

    def lock_for(name):
        store.touch(key)  # the owner commits an undo just before the sweep gets the lock
        return contextlib.nullcontext(threading.Lock())

    assert store.sweep(lock_for=lock_for) == [] and store.exists(key)
