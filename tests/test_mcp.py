"""The MCP tools as an agent sees them, through the `mcp` package's streamable-HTTP client."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image

from apphelpers import running_app
from kontext.files.store import Store
from kontext.sessions.session import Sessions

pytestmark = pytest.mark.process  # serves the app on a port


def data_url(size=(96, 64)) -> str:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def kinds(result) -> list[str]:
    return [c.type for c in result.content]


def image_of(result) -> Image.Image:
    item = next(c for c in result.content if c.type == "image")
    assert item.mimeType == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(item.data)))


def json_of(result) -> dict:
    texts = [c.text for c in result.content if c.type == "text" and not c.text.startswith("Image URL:")]
    assert len(texts) == 1, texts
    return json.loads(texts[0])


async def transcript(url: str) -> dict:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    out: dict = {}
    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as s:
            await s.initialize()
            out["tools"] = {t.name: t for t in (await s.list_tools()).tools}
            key = (await s.call_tool("new_session", {})).content[0].text
            out["upload"] = await s.call_tool("upload", {"session": key, "image": data_url()})
            out["edit"] = await s.call_tool("edit", {"session": key, "prompt": "make it red", "steps": 2,
                                                     "seed_mode": "fixed", "seed": 7})
            messages: list[str] = []
            counts: list[tuple] = []

            async def on_progress(progress, total, message):
                messages.append(message or "")
                counts.append((progress, total))

            out["edit_with_progress"] = await s.call_tool(
                "edit", {"session": key, "prompt": "now blue", "steps": 3}, progress_callback=on_progress)
            out["progress"], out["progress_counts"] = messages, counts
            # A masked edit: white (may change) in a box on black, the current picture's size.
            step = json_of(out["edit_with_progress"])["step"]
            box = Image.new("L", (step["width"], step["height"]), 0)
            box.paste(255, (30, 20, 70, 50))
            buf = io.BytesIO()
            box.save(buf, "PNG")
            out["mask"] = box
            out["masked"] = await s.call_tool("edit", {
                "session": key, "prompt": "a gold box", "steps": 2,
                "mask": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()})
            out["masked_parent"] = await s.call_tool("step_image", {"session": key, "step": 3})
            import urllib.request

            (link,) = [c.text.split(": ", 1)[1] for c in out["masked"].content
                       if c.type == "text" and c.text.startswith("Image URL:")]
            with urllib.request.urlopen(link, timeout=10) as answer:  # while the server runs
                out["link"], out["link_bytes"] = link, answer.read()
            try:
                urllib.request.urlopen(link.rsplit("/", 1)[0] + "/history.json", timeout=10)
            except Exception as e:  # noqa: BLE001 - checked in the test
                out["not_an_image"] = str(e)
            out["history"] = await s.call_tool("history", {"session": key})
            out["undo"] = await s.call_tool("undo", {"session": key})
            out["undo"] = await s.call_tool("undo", {"session": key})
            out["bad"] = await s.call_tool("jump", {"session": key, "step": 99})
            out["export"] = await s.call_tool("export", {"session": key, "scope": "path"})
            out["variants"] = await s.call_tool("edit", {"session": key, "prompt": "add a hat", "steps": 2,
                                                         "variations": 3})
            group = json.loads([c.text for c in out["variants"].content if c.type == "text"][-1])["group"]
            out["picked"] = await s.call_tool("pick", {"session": key, "step": group[1]})
            out["bad_variations"] = await s.call_tool("edit", {"session": key, "prompt": "x", "variations": 5})
            out["bad_pick"] = await s.call_tool("pick", {"session": key, "step": 1})
    return out


@pytest.fixture(scope="module")
def mcp_run(engine, tmp_path_factory):
    data = tmp_path_factory.mktemp("mcp-data")
    sessions = Sessions(engine, Store(data / "sessions"))
    with running_app(sessions, data, mcp=True) as url:
        return {**asyncio.run(transcript(url)), "data_dir": str(data)}


def test_every_tool_and_parameter_is_described(mcp_run):
    tools = mcp_run["tools"]
    assert {"new_session", "upload", "edit", "undo", "redo", "jump", "branch", "history", "export"} <= set(tools)
    for name, tool in tools.items():
        assert tool.description, name
        for param, schema in tool.inputSchema.get("properties", {}).items():
            assert schema.get("description"), f"{name}.{param} has no description"
    steps = tools["edit"].inputSchema["properties"]["steps"]["description"]
    assert "0: the model's default, 4" in steps and "1 to 100" in steps  # the tiny model's default


def test_edit_with_variations_answers_every_candidate_and_pick_makes_one_current(mcp_run):
    tools = mcp_run["tools"]
    assert "variations" in tools["edit"].inputSchema["properties"] and "pick" in tools
    assert "edit_variations" not in tools and not any(n.startswith("edit_") for n in tools)  # one edit tool
    r = mcp_run["variants"]
    assert not r.isError and kinds(r) == ["image", "text"] * 3 + ["text"], kinds(r)
    h = json_of(r)
    group = h["group"]
    steps = {s["id"]: s for s in h["steps"]}
    assert len(group) == 3 and h["current"] == group[0]
    images = [Image.open(io.BytesIO(base64.b64decode(c.data))) for c in r.content if c.type == "image"]
    for image, step in zip(images, group, strict=True):  # one image per candidate, in the group's order
        assert image.size == (steps[step]["width"], steps[step]["height"])
    assert len({i.tobytes() for i in images}) == 3
    picked = mcp_run["picked"]
    assert not picked.isError and kinds(picked) == ["image", "text", "text"]
    assert json_of(picked)["current"] == group[1] and json_of(picked)["group"] == group
    for name, words in (("bad_variations", "variations must be a whole number from 1 to 4, got 5"),
                        ("bad_pick", "step 1 is not one of a group of variations")):
        bad = mcp_run[name]
        assert bad.isError and words in bad.content[0].text, bad.content


def test_upload_from_a_data_url_answers_with_the_image_and_json(mcp_run):
    r = mcp_run["upload"]
    assert not r.isError and kinds(r) == ["image", "text", "text"]
    assert image_of(r).size == (96, 64)
    h = json_of(r)
    assert h["current"] == 1 and h["step"]["prompt"] == "original"  # a data URL has no file name


def test_edit_answers_with_the_image_and_the_step(mcp_run):
    for name in ("edit", "edit_with_progress"):  # without and with a progress token (two gradio paths)
        r = mcp_run[name]
        assert not r.isError and kinds(r) == ["image", "text", "text"], name
        step = json_of(r)["step"]
        assert {"id", "prompt", "seed", "width", "height", "seconds"} <= set(step)
        assert image_of(r).size == (step["width"], step["height"])
    assert json_of(mcp_run["edit"])["step"]["seed"] == 7
    assert any("Step 3 of 3" in m for m in mcp_run["progress"]), mcp_run["progress"]
    counts = mcp_run["progress_counts"]  # the step of the step count, growing as MCP wants
    assert (3, 3) in counts and {t for _, t in counts if _ > 0} == {3}, counts
    assert all(a[0] < b[0] for a, b in zip(counts, counts[1:], strict=False)), counts


def test_a_masked_edit_keeps_every_pixel_outside_the_mask(mcp_run):
    import numpy as np

    r = mcp_run["masked"]
    assert not r.isError, r.content
    assert json_of(r)["step"]["extra"]["masked"] > 0
    before = np.asarray(image_of(mcp_run["masked_parent"]).convert("RGB"))
    after = np.asarray(image_of(r).convert("RGB"))
    outside = np.asarray(mcp_run["mask"]) == 0
    assert np.array_equal(after[outside], before[outside])  # bit-exact
    assert not np.array_equal(after[~outside], before[~outside])


def test_history_undo_and_errors(mcp_run):
    h = json_of(mcp_run["history"])
    assert kinds(mcp_run["history"]) == ["text"]
    assert h["current"] == 4 and [s["prompt"] for s in h["steps"]] == ["original", "make it red", "now blue",
                                                                         "a gold box"]
    u = mcp_run["undo"]  # undone twice
    assert kinds(u) == ["image", "text", "text"] and json_of(u)["current"] == 2
    bad = mcp_run["bad"]
    assert bad.isError and "99" in bad.content[0].text


def test_image_links_name_no_server_path_and_open(mcp_run):
    link = mcp_run["link"]
    assert "/images/" in link and "gradio_api/file=" not in link and mcp_run["data_dir"] not in link, link
    served = Image.open(io.BytesIO(mcp_run["link_bytes"])).convert("RGB")
    assert served.tobytes() == image_of(mcp_run["masked"]).convert("RGB").tobytes()  # the step's own picture
    assert "404" in mcp_run["not_an_image"]  # only images, by their names


def test_export_answers_file_by_file(mcp_run):
    r = mcp_run["export"]
    assert not r.isError
    urls = [c.text for c in r.content if c.type == "text"]
    assert any(u.endswith(".zip") for u in urls), urls
    assert "image" in kinds(r)  # the contact sheet and GIF come as images
