"""What the web server hands out: session images by their random names, never a session folder's
history (prompts) by its folder name, and no second copy of session images in gradio's cache."""

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from apphelpers import running_app
from kontext.files.store import Store
from kontext.sessions.session import EditOptions, Sessions

pytestmark = pytest.mark.process  # serves the app on a port


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


@pytest.mark.parametrize("inside_cwd", [False, True], ids=["data-elsewhere", "data-under-cwd"])
def test_history_is_not_served_by_folder_name_and_images_need_their_names(engine, tmp_path, monkeypatch,
                                                                         inside_cwd):
    if inside_cwd:
        monkeypatch.chdir(tmp_path)
    data = (tmp_path / "sessions") if inside_cwd else (tmp_path / "elsewhere" / "sessions")
    sessions = Sessions(engine, Store(data))
    src = tmp_path / "src.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(src)
    with running_app(sessions, data) as url:
        c = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))  # not gradio's own folder
        key = c.predict(api_name="/new_session")
        c.predict(key, handle_file(str(src)), api_name="/upload")
        sessions.edit(key, "secret plans", EditOptions(steps=2))
        sessions.compactor.wait_idle()  # the step's PNG as it stays (compressed after the answer)
        folder = sessions.store.folder(key).resolve()
        history = folder / "history.json"
        assert b"secret plans" in history.read_bytes()
        for target in (history, folder / "images", next((folder / "images").iterdir())):
            status, body = fetch(f"{url}gradio_api/file={target}")
            assert status in (403, 404) and b"secret" not in body, target
        served = Path(sessions.image_path(key))
        assert served.parent == sessions.store.public_dir.resolve() or served.parent == sessions.store.public_dir
        status, body = fetch(f"{url}gradio_api/file={served.resolve()}")
        assert status == 200 and body == sessions.store.read_image_bytes(key, sessions.history(key).current_node.image)
        from gradio.utils import get_upload_folder

        c.predict(key, api_name="/undo")  # served again: still in place, no copy in gradio's cache
        names = {n.image for n in sessions.history(key).nodes.values()}
        assert not [p for p in Path(get_upload_folder()).rglob("*.png") if p.name in names]


def test_public_links_go_with_their_session(engine, tmp_path, photo):
    sessions = Sessions(engine, Store(tmp_path / "s"))
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.edit(key, "x", EditOptions(steps=2))
    served = [Path(sessions.image_path(key, n)) for n in (1, 2)] + [Path(sessions.image_path(key, 2, thumbnail=True))]
    assert all(p.is_file() for p in served)
    sessions.clear(key)
    assert not any(p.exists() for p in served)
