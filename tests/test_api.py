"""The named endpoints, through gradio_client, against the app launched on the tiny model."""

import threading
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from apphelpers import running_app
from gates import hold_edits, wait_until
from kontext.core.metadata import read_metadata
from kontext.files.store import Store
from kontext.sessions.session import Sessions

pytestmark = pytest.mark.process  # serves the app on a port


@pytest.fixture(scope="module")
def app(engine, tmp_path_factory):
    data = tmp_path_factory.mktemp("app-data")
    sessions = Sessions(engine, Store(data / "sessions"))
    with running_app(sessions, data) as url:
        yield url, sessions


@pytest.fixture
def client(app):
    return Client(app[0], verbose=False)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(path)
    return handle_file(str(path))


def edit(client, key, prompt, **kw):
    args = dict(seed_mode="random", seed=0, guidance=0, steps=2, width=0, height=0)
    args.update(kw)
    return client.predict(key, prompt, *args.values(), api_name="/edit")


def test_five_turn_session_undo_redo_jump_branch(client, source):
    key = client.predict(api_name="/new_session")
    img, h = client.predict(key, source, api_name="/upload")
    assert h["current"] == 1 and Image.open(img).size == (96, 64)
    assert h["step"]["prompt"] == "source.png" and h["step"]["kind"] == "upload"  # named after the file
    for i in range(5):
        img, h = edit(client, key, f"turn {i}")
    assert h["path"] == [1, 2, 3, 4, 5, 6]
    assert h["step"] == next(s for s in h["steps"] if s["id"] == 6) and h["step"]["prompt"] == "turn 4"
    meta = read_metadata(img)
    assert meta["step"]["id"] == 6 and meta["step"]["prompt"] == "turn 4"  # PNG metadata survives download

    _, h = client.predict(key, api_name="/undo")
    _, h = client.predict(key, api_name="/undo")
    assert h["current"] == 4 and h["can_redo"]
    _, h = client.predict(key, api_name="/redo")
    assert h["current"] == 5 and h["timeline"] == [1, 2, 3, 4, 5, 6]

    _, h = client.predict(key, 2, api_name="/jump")
    assert h["current"] == 2
    _, h = edit(client, key, "a new branch")
    assert h["path"] == [1, 2, 7] and h["branch"] == "branch 2 of 2"
    _, h = client.predict(key, 6, api_name="/jump")  # the old branch is still reachable
    assert h["path"] == [1, 2, 3, 4, 5, 6]
    assert len(client.predict(key, api_name="/history")["steps"]) == 7


def test_reroll_gives_a_sibling_with_a_new_seed_and_image(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    first_img, h = edit(client, key, "add a hat")
    first = h["steps"][-1]
    img, h = client.predict(key, api_name="/reroll")
    again = h["steps"][-1]
    assert again["parent"] == first["parent"] and again["prompt"] == first["prompt"]
    assert again["seed"] != first["seed"]
    assert h["branch"] == "branch 2 of 2"
    assert not np.array_equal(np.asarray(Image.open(first_img)), np.asarray(Image.open(img)))


def test_errors_leave_history_unchanged(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    edit(client, key, "one")
    before = client.predict(key, api_name="/history")
    for bad in (dict(steps=1000), dict(seed_mode="fixed", seed=-3)):
        with pytest.raises(Exception, match="steps|seed"):
            edit(client, key, "two", **bad)
    with pytest.raises(Exception, match="prompt is empty"):
        edit(client, key, "  ")
    with pytest.raises(Exception, match="session key"):
        client.predict("not-a-key", api_name="/history")
    assert client.predict(key, api_name="/history") == before
    _, h = edit(client, key, "works again")
    assert h["steps"][-1]["prompt"] == "works again"


def test_cancel_mid_edit_leaves_history_unchanged(client, source, app):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    before = client.predict(key, api_name="/history")
    engine = app[1].engine
    with hold_edits(engine) as gate:  # the edit stays at its first step until it is stopped
        job = client.submit(key, "slow", "random", 0, 0, 4, 0, 0, api_name="/edit")
        gate.wait_reached()
        # The server may run the edit before the client has stored its event id, and a cancel sent
        # without one reaches nothing: cancel once the client knows which event to cancel.
        wait_until(lambda: job.communicator.event_id is not None, what="the job's event id")
        job.cancel()
        # The pipeline is free again while the gate is still closed: the edit ended at its Stop, so
        # no result exists that could land later.
        assert engine._lock.acquire(timeout=60), "the worker never stopped"
        engine._lock.release()
        assert client.predict(key, api_name="/history") == before


def test_two_clients_at_once_see_only_their_own_steps(app, source):
    results = {}

    def user(name):
        c = Client(app[0], verbose=False)
        key = c.predict(api_name="/new_session")
        c.predict(key, source, api_name="/upload")
        for i in range(3):
            edit(c, key, f"{name} {i}")
        results[name] = c.predict(key, api_name="/history")

    threads = [threading.Thread(target=user, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name, other in (("alice", "bob"), ("bob", "alice")):
        prompts = [s["prompt"] for s in results[name]["steps"] if s["kind"] == "edit"]
        assert prompts == [f"{name} {i}" for i in range(3)]
        assert not any(other in p for p in prompts)


def test_undo_answers_while_an_edit_runs(client, source, app):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    edit(client, key, "one")
    with hold_edits(app[1].engine) as gate:
        job = client.submit(key, "slow", "random", 0, 0, 4, 0, 0, api_name="/edit")
        gate.wait_reached()  # the edit is running (held at its first step)
        _, h = client.predict(key, api_name="/undo")
        assert h["current"] == 1
        assert not job.done(), "undo waited for the edit"
        gate.release()
        final = job.result(timeout=120)
    h = final[1]
    assert h["current"] == 3 and h["steps"][-1]["parent"] == 2  # the edit landed where it started
    _, h = client.predict(key, api_name="/undo")
    assert h["current"] == 2


def test_mcp_server_lists_the_tools(engine, tmp_path):
    import httpx

    sessions = Sessions(engine, Store(tmp_path / "sessions"))
    with running_app(sessions, tmp_path, mcp=True) as url:
        schema = httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()
    names = {t["name"] for t in schema}
    assert {"new_session", "upload", "edit", "reroll", "undo", "redo", "jump", "pick", "history"} <= names
    (edit,) = [t for t in schema if t["name"] == "edit"]
    assert edit["meta"]["endpoint_name"] == "edit_variations"  # every candidate as an image (ui/mcp.py)
    assert "edit_variations" not in names and len(names) == len(schema)
    assert not any(n.startswith("ui_") for n in names)  # the page's own events are not tools


def test_variations_answer_every_candidate_and_pick_makes_one_current(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    gallery, h = client.predict(key, "add a hat", "fixed", 11, 0, 2, 0, 0, variations=3,
                                api_name="/edit_variations")
    group = h["group"]
    steps = {s["id"]: s for s in h["steps"]}
    assert len(group) == 3 and h["current"] == group[0] and [steps[i]["seed"] for i in group] == [11, 12, 13]
    files = [item["image"] for item in gallery]
    assert len(set(files)) == 3 and [item["caption"] for item in gallery] == [f"step {i}" for i in group]
    for file, step in zip(files, group, strict=True):  # each picture is its candidate's own PNG
        assert Image.open(file).size == (steps[step]["width"], steps[step]["height"])
        assert read_metadata(file)["step"]["id"] == step
    pixels = [np.asarray(Image.open(f)).tobytes() for f in files]
    assert len(set(pixels)) == 3

    img, h = client.predict(key, group[2], api_name="/pick")
    assert h["current"] == group[2] and h["group"] == group and read_metadata(img)["step"]["id"] == group[2]
    assert client.predict(key, api_name="/history")["current"] == group[2]
    # /edit answers as it always did (the current candidate and the history), with the group in the history.
    img, h = client.predict(key, "and a scarf", "random", 0, 0, 2, 0, 0, variations=2, api_name="/edit")
    assert len(h["group"]) == 2 and h["current"] == h["group"][0] and h["step"]["parent"] == group[2]
    assert read_metadata(img)["step"]["id"] == h["current"]


def test_bad_variations_and_picks_are_refused_in_words(client, source):
    from kontext.core.params import MAX_SEED

    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    before = client.predict(key, api_name="/history")
    for api in ("/edit", "/edit_variations"):
        for bad in (0, 5, "two", 2.5):
            with pytest.raises(Exception, match=r"variations must be a whole number from 1 to 4, got"):
                client.predict(key, "x", "random", 0, 0, 2, 0, 0, variations=bad, api_name=api)
    with pytest.raises(Exception, match=f"with 3 variations the seed must be at most {MAX_SEED - 2}"):
        client.predict(key, "x", "fixed", MAX_SEED, 0, 2, 0, 0, variations=3, api_name="/edit_variations")
    with pytest.raises(Exception, match="step 1 is not one of a group of variations: to go to any step, use jump"):
        client.predict(key, 1, api_name="/pick")
    with pytest.raises(Exception, match="step must be a whole number"):
        client.predict(key, "two", api_name="/pick")
    assert client.predict(key, api_name="/history") == before


def test_export_then_import_into_a_new_session(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    edit(client, key, "one")
    edit(client, key, "two")
    client.predict(key, api_name="/undo")
    _, original = edit(client, key, "branch")
    files = client.predict(key, "tree", api_name="/export")
    names = sorted(Path(f).suffix for f in files)
    assert names == [".gif", ".png", ".zip"]
    zip_path = next(f for f in files if f.endswith(".zip"))

    other = client.predict(api_name="/new_session")
    img, h = client.predict(other, handle_file(zip_path), api_name="/import_zip")
    strip = lambda steps: [{k: s[k] for k in ("id", "parent", "prompt", "seed", "kind")} for s in steps]  # noqa: E731
    assert strip(h["steps"]) == strip(original["steps"])
    assert h["current"] == original["current"]
    a = np.asarray(Image.open(client.predict(key, 3, api_name="/step_image")))
    b = np.asarray(Image.open(client.predict(other, 3, api_name="/step_image")))
    assert np.array_equal(a, b)
    with pytest.raises(Exception, match="not a ZIP|zip"):
        client.predict(other, source, api_name="/import_zip")


def test_uploads_are_checked_by_kontext_not_converted_by_gradio(client, tmp_path):
    key = client.predict(api_name="/new_session")
    rgba = tmp_path / "clear.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(rgba)
    img, h = client.predict(key, handle_file(str(rgba)), api_name="/upload")
    assert Image.open(img).convert("RGB").getpixel((3, 3)) == (255, 255, 255)  # alpha composited on white
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16), "I;16").save(deep)
    img, _ = client.predict(key, handle_file(str(deep)), api_name="/upload")
    assert 120 <= Image.open(img).convert("L").getpixel((0, 0)) <= 135  # scaled, not clipped to white
    psd = _psd(tmp_path)
    assert Image.open(psd).format == "PSD"  # Pillow reads it, so only our format list refuses it
    with pytest.raises(Exception, match="not an image this app reads"):
        client.predict(key, handle_file(str(psd)), api_name="/upload")
    assert len(client.predict(key, api_name="/history")["steps"]) == 2


def _psd(tmp_path):
    """A file in a format Pillow can read but this app refuses (Photoshop's header, as PSD is)."""
    path = tmp_path / "layered.psd"
    # A minimal 1-channel 8-bit 32x32 PSD: header, empty colour-mode/resources/layers, raw image data.
    header = b"8BPS" + (1).to_bytes(2, "big") + bytes(6) + (1).to_bytes(2, "big") + (32).to_bytes(4, "big") * 2
    header += (8).to_bytes(2, "big") + (1).to_bytes(2, "big")
    body = bytes(4) + bytes(4) + bytes(4) + (0).to_bytes(2, "big") + bytes(32 * 32)
    path.write_bytes(header + body)
    return path


def test_combine_endpoint(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    edit(client, key, "one")
    edit(client, key, "two")
    _, h = client.predict(key, api_name="/combine")
    last = h["steps"][-1]
    assert last["parent"] == 1 and last["prompt"] == "one; two" and h["current"] == last["id"]


def test_edit_with_a_reference_image(client, source, tmp_path):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    ref = tmp_path / "style.png"
    Image.effect_noise((64, 64), 90).convert("RGB").save(ref)
    img, h = client.predict(key, "restyle the left image like the right one", "random", 0, 0, 2, 0, 0,
                            handle_file(str(ref)), api_name="/edit")
    step = h["steps"][-1]
    assert step["extra"]["reference"].endswith(".png")
    assert Image.open(img).size == (step["width"], step["height"])
    assert abs(step["width"] / step["height"] - 1.5) < 0.1  # the photo's aspect, not the pair's
    second = tmp_path / "person.png"
    Image.effect_noise((48, 64), 30).convert("RGB").save(second)
    _, h = client.predict(key, "the person from the third image, styled like the second", "random", 0, 0, 2, 0, 0,
                          handle_file(str(ref)), False, "", handle_file(str(second)), None, "style,character",
                          api_name="/edit")
    step = h["steps"][-1]
    assert len(step["extra"]["more_references"]) == 1 and step["extra"]["reference_roles"] == ["style", "character"]
    with pytest.raises(Exception, match="role must be one of"):
        client.predict(key, "x", "random", 0, 0, 2, 0, 0, handle_file(str(ref)), False, "", None, None, "villain",
                       api_name="/edit")


def test_a_masked_edit_keeps_every_pixel_outside_the_mask(client, source, tmp_path):
    key = client.predict(api_name="/new_session")
    original, _ = client.predict(key, source, api_name="/upload")
    layer = Image.new("RGBA", (96, 64), (0, 0, 0, 0))  # painted (opaque) in a box, as the page's painter does
    layer.paste((255, 59, 48, 255), (30, 20, 70, 50))
    layer.save(tmp_path / "mask.png")
    mask = handle_file(str(tmp_path / "mask.png"))
    img, h = client.predict(session=key, prompt="make the box gold", steps=2, mask=mask, api_name="/edit")
    step = h["steps"][-1]
    assert step["extra"]["mask"].endswith(".png") and step["extra"]["masked"] == pytest.approx(0.195, abs=0.01)
    before, after = np.asarray(Image.open(original).convert("RGB")), np.asarray(Image.open(img).convert("RGB"))
    outside = np.asarray(layer.getchannel("A")) == 0
    assert after.shape == before.shape and np.array_equal(after[outside], before[outside])  # bit-exact
    assert not np.array_equal(after[~outside], before[~outside])  # inside, the model repainted
    small = tmp_path / "small.png"
    Image.new("L", (16, 16), 255).save(small)
    with pytest.raises(Exception, match="mask is 16x16 but the picture is 96x64"):  # never stretched
        client.predict(session=key, prompt="x", steps=2, mask=handle_file(str(small)), api_name="/edit")
    assert len(client.predict(key, api_name="/history")["steps"]) == 2  # the refusal changed nothing


def test_draft_then_refine_endpoints(client, source):
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    _, h = client.predict(key, "quick", "fixed", 5, 0, 2, 0, 0, None, True, api_name="/edit")
    draft = h["steps"][-1]
    assert draft["extra"]["draft"] is True
    _, h = client.predict(key, api_name="/refine")
    full = h["steps"][-1]
    assert full["seed"] == 5 and full["parent"] == draft["parent"] and "draft" not in full["extra"]
    assert full["width"] * full["height"] > 3 * draft["width"] * draft["height"]


def test_malformed_payloads_get_a_message(app):
    import json
    import urllib.request

    url = app[0]
    key = Client(url, verbose=False).predict(api_name="/new_session")
    server_file = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    cases = [("edit", [key, "x"], "enough input values"),
             ("edit", [key, "x", "random", 0, 0, 2, 0, 0, server_file, False, "", None, None, "", None, 1],
              "not uploaded by a user"),
             ("edit", [key, "x", "random", 0, 0, 2, 0, 0, None, False, "", None, None, "", server_file, 1],
              "not uploaded by a user"),  # a server file as the mask
             ("upload", [key, server_file], "not uploaded by a user")]
    for api, data, words in cases:
        req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
        event = json.loads(urllib.request.urlopen(req, timeout=10).read())["event_id"]
        body = urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=30).read().decode()
        assert "event: error" in body and words in body, body[:300]


def test_stop_from_another_client_ends_an_edit_started_through_the_api(client, source, app):
    """/stop reaches the session's running turn wherever it was started: here another client stops an
    edit the first one started; nothing is added, and a second /stop finds nothing to stop."""
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    before = client.predict(key, api_name="/history")
    with hold_edits(app[1].engine) as gate:
        job = client.submit(key, "held", "random", 0, 0, 4, 0, 0, api_name="/edit")
        gate.wait_reached()
        other = Client(app[0], verbose=False)
        assert other.predict(key, api_name="/stop") == {"stopped": True}
        with pytest.raises(Exception, match="[Ss]topped"):
            job.result(timeout=120)
    assert client.predict(key, api_name="/history") == before
    assert other.predict(key, api_name="/stop") == {"stopped": False}


def test_share_through_gradio_client_gives_a_link_that_opens_the_view(client, source, app):
    """The result is plain JSON for gradio_client (no "path" key it would take for a file to fetch),
    and its link opens the read-only view of the tree."""
    import urllib.request

    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    shared = client.predict(key, api_name="/share")
    assert set(shared) == {"token", "link", "root", "live"} and shared["link"] == f"/view?share={shared['token']}"
    assert shared["live"] is False  # frozen unless asked; sharing again with live=true makes the same link live
    assert client.predict(key, False, True, api_name="/share") == {**shared, "live": True}
    with urllib.request.urlopen(app[0].rstrip("/") + shared["link"], timeout=60) as page:
        assert page.status == 200
    assert client.predict(shared["token"], api_name="/shared_history")["path"] == [1]


def call_raw(url, api, data):
    """One call through gradio's HTTP API, as any client may send it; the event stream's text."""
    import json
    import urllib.request

    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(req, timeout=10).read())["event_id"]
    return urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event}", timeout=30).read().decode()


def test_hostile_calls_get_plain_words_and_never_put_the_key_in_the_log(app, capfd, caplog):
    """Too few inputs, too many, wrong types: each caller is told what was wrong, and neither gradio's
    output (stderr) nor our log has the key (gradio used to print 'Received inputs: [key, ...]')."""
    import logging

    url = app[0]
    key = Client(url, verbose=False).predict(api_name="/new_session")
    rest = ["x", "random", 0, 0, 2, 0, 0, None, False, "", None, None, "", None, 1]
    cases = [("edit", [key, "x"], "enough input values (needed: 16, got: 2)"),
             ("ui_cmp_a", [key], "enough input values"),  # a page event, as a script may call it
             ("undo", [key, "more", 3], "event: complete"),  # extras are ignored
             ("edit", [{"$gt": ""}, *rest], "session key is missing or malformed"),  # before it queues
             ("ui_undo", [{"$gt": ""}], "session key is missing or malformed"),
             ("edit", [key, "x", "random", key, *rest[3:]], "seed must be a whole number"),
             ("jump", [key, key], "step must be a whole number"),
             ("upload", [key, key], "validation error"),  # gradio's own check of a file payload
             ("upload", [key, {"path": key}], "file not found")]
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="kontext"):
        for api, data, words in cases:
            body = call_raw(url, api, data)
            assert words in body and "went wrong" not in body, (api, body[:300])
    printed = capfd.readouterr()
    assert "refused" in caplog.text  # the refusals are logged, keys withheld
    assert key not in printed.out + printed.err + caplog.text


def test_monitoring_answers_no_visitor(app):
    """gradio's traffic dashboard is off without a password (tests/test_access.py: behind one)."""
    import urllib.error
    import urllib.request

    for path in ("monitoring", "monitoring/summary"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(app[0] + path, timeout=10)
        assert refused.value.code == 403


def test_a_removed_session_says_so_and_the_page_starts_a_new_one(client, source, app):
    import json
    import os
    import time

    url, sessions = app
    key = client.predict(api_name="/new_session")
    client.predict(key, source, api_name="/upload")
    then = time.time() - sessions.store.max_idle_s - 60  # idle past the limit: the next sweep removes it
    for path in [*sessions.store.folder(key).rglob("*"), sessions.store.folder(key)]:
        os.utime(path, (then, then))
    sessions.sweep(every_s=0)
    for api in ("/history", "/undo"):
        with pytest.raises(Exception, match="removed from the server to free space"):
            client.predict(key, api_name=api)
    loaded = json.loads(call_raw(url, "ui_load", [key]).split("data: ", 1)[1])
    assert loaded[0] != key and sessions.history(loaded[0]).empty
    assert any(isinstance(v, str) and "removed from the server to free space" in v for v in loaded)
