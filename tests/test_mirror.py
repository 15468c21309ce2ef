"""Session mirroring to a Hugging Face dataset, with a local folder standing in for the hub."""

import time

from kontext.files.mirror import FolderRemote, HubRemote, Mirror, committed_files
from kontext.files.store import Store
from kontext.sessions.session import EditOptions, Sessions

FAST = EditOptions(steps=2)


def session_with_steps(sessions, photo, n=2):
    key = sessions.new()
    sessions.upload(key, photo, name="photo.png")
    for i in range(n):
        sessions.edit(key, f"turn {i}", FAST)
    return key


def test_a_restarted_space_gets_every_committed_step_back(engine, tmp_path, photo):
    remote = FolderRemote(tmp_path / "dataset")
    data = tmp_path / "disk"
    sessions = Sessions(engine, Store(data))
    key = session_with_steps(sessions, photo)
    sessions.compactor.wait_idle()  # the steps' PNGs as they stay (compressed after each answer)
    (data / ".browser-secret").write_text("s3cret")
    mirror = Mirror(data, remote)
    added, deleted = mirror.push()
    assert (added, deleted) == (5, 0)  # 3 PNGs, history.json and the browser secret
    assert mirror.push() == (0, 0)  # nothing changed, nothing sent

    fresh = tmp_path / "disk-after-restart"  # the Space's disk is empty again
    assert Mirror(fresh, remote).restore() == 1
    again = Sessions(engine, Store(fresh))
    assert again.history(key).to_dict() == sessions.history(key).to_dict()
    for node in sessions.history(key).nodes.values():
        assert again.store.read_image_bytes(key, node.image) == sessions.store.read_image_bytes(key, node.image)
    assert (fresh / ".browser-secret").read_text() == "s3cret"


def test_only_committed_files_go_and_deletions_follow(engine, tmp_path, photo):
    remote = FolderRemote(tmp_path / "dataset")
    data = tmp_path / "disk"
    sessions = Sessions(engine, Store(data))
    key = session_with_steps(sessions, photo, n=1)
    orphan = sessions.store.save_image(key, b"half an edit")  # an edit in flight: not yet in a history
    mirror = Mirror(data, remote)
    mirror.push()
    folder = sessions.store.folder(key).name
    assert f"{folder}/images/{orphan}" not in remote.files()
    assert f"{folder}/history.json" in remote.files()
    sessions.edit(key, "one more", FAST)
    assert mirror.push()[0] == 2  # the new PNG and the new history
    sessions.clear(key)  # start over: gone here, and gone there after the next push
    mirror.push()
    assert not any(f.startswith(folder) for f in remote.files())


def test_background_pushes_and_a_last_push_on_stop(engine, tmp_path, photo):
    remote = FolderRemote(tmp_path / "dataset")
    data = tmp_path / "disk"
    sessions = Sessions(engine, Store(data))
    mirror = Mirror(data, remote, every_s=0.2)
    mirror.start()
    key = session_with_steps(sessions, photo, n=1)
    folder = sessions.store.folder(key).name
    deadline = time.time() + 10
    while f"{folder}/history.json" not in remote.files() and time.time() < deadline:
        time.sleep(0.1)
    assert f"{folder}/history.json" in remote.files()
    sessions.edit(key, "just before shutdown", FAST)
    mirror.stop()  # pushes once more
    assert set(committed_files(data)[0]) == remote.files()


def test_hub_remote_sends_one_commit_with_history_last(monkeypatch, tmp_path):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)

        def create_commit(self, repo_id, ops, **kw):
            calls["commit"] = (repo_id, ops, kw)

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    remote = HubRemote("me/kontext-sessions", token="hf_x")
    assert calls["create"] == ("me/kontext-sessions", {"repo_type": "dataset", "private": True, "exist_ok": True})
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "history.json").write_text("{}")
    remote.push({"f/history.json": tmp_path / "history.json", "f/images/a.png": tmp_path / "a.png"},
                ["g/history.json"], "msg")
    _, ops, kw = calls["commit"]
    assert [type(o).__name__ for o in ops] == ["CommitOperationAdd", "CommitOperationAdd", "CommitOperationDelete"]
    assert ops[1].path_in_repo == "f/history.json" and kw["repo_type"] == "dataset"


def test_a_damaged_local_history_never_deletes_the_good_copy(engine, tmp_path, photo):
    remote = FolderRemote(tmp_path / "dataset")
    data = tmp_path / "disk"
    sessions = Sessions(engine, Store(data))
    key = session_with_steps(sessions, photo, n=1)
    mirror = Mirror(data, remote)
    mirror.push()
    before = remote.files()
    (sessions.store.folder(key) / "history.json").write_text("{damaged")
    mirror.push()
    assert remote.files() == before
