"""The page's redraw sends only what changed for this tab: on undo/redo along one branch, the
timeline and the step menus are not sent again (long chains stay fast)."""

import asyncio
import time
from dataclasses import replace

from gradio.state_holder import SessionState
from PIL import Image

from kontext.core import metadata
from kontext.core.history import History, Node
from kontext.files.store import Store, new_key
from kontext.hosting.config import Settings
from kontext.sessions.session import EditOptions, Sessions
from ui import build_ui


def chain(store, n):
    key, h = new_key(), History()
    for i in range(1, n + 1):
        node = Node(id=i, parent=None if i == 1 else i - 1, kind="upload" if i == 1 else "edit", image="",
                    width=64, height=64, prompt="" if i == 1 else f"edit {i}", seed=None if i == 1 else i,
                    guidance=2.5, steps=2, model="tiny", seconds=0.1, created=time.time())
        png = metadata.png_bytes(Image.effect_noise((64, 64), 30 + i).convert("RGB"), node.to_dict())
        h = h.add(replace(node, image=store.save_image(key, png)), parent=node.parent)
    store.commit(key, h)
    return key


def call(demo, name, inputs, state):
    fn = next(f for f in demo.fns.values() if f.api_name == name)
    return asyncio.run(demo.process_api(block_fn=fn, inputs=inputs, state=state, request=None))["data"]


def test_undo_and_redo_send_a_selection_not_the_timeline(engine, tmp_path):
    store = Store(tmp_path / "s")
    sessions = Sessions(engine, store)
    key = chain(store, 30)
    demo = build_ui(sessions, Settings(data_dir=tmp_path / "s"))
    tab = SessionState(demo)
    first = call(demo, "ui_undo", [key, None], tab)
    assert len(first[1]["value"]) == 30 and first[1]["selected_index"] == 28
    assert len(first[8]["choices"]) == 30
    second = call(demo, "ui_undo", [key, None], tab)
    assert "value" not in second[1] and second[1]["selected_index"] == 27
    assert "choices" not in second[8] and second[8]["value"] == 28
    other_tab = call(demo, "ui_redo", [key, None], SessionState(demo))  # another tab has nothing yet
    assert len(other_tab[1]["value"]) == 30
    # A new step changes the timeline: it is sent again, with the new thumbnail.
    sessions.edit(key, "one more", EditOptions(steps=2))
    after = call(demo, "ui_undo", [key, None], tab)
    assert "one more" in after[1]["value"][-1]["caption"]  # the branch now ends with the new step


def test_the_tree_of_a_long_chain_is_flat(engine, tmp_path):
    from ui.view import tree_markdown

    store = Store(tmp_path / "s")
    key = chain(store, 200)
    text = tree_markdown(Sessions(engine, store).history(key))
    assert len(text.splitlines()) == 200 and max(len(line) for line in text.splitlines()) < 60


def test_our_own_served_picture_is_never_taken_for_an_upload(engine, tmp_path):
    """If a redraw replaces the canvas while an upload is in flight, the event carries the picture we
    serve; it must not become a new chain."""
    store = Store(tmp_path / "s")
    sessions = Sessions(engine, store)
    key = chain(store, 2)
    demo = build_ui(sessions, Settings(data_dir=tmp_path / "s"))
    upload = next(f for f in demo.fns.values() if f.api_name == "ui_upload").fn
    upload(key, None, {"path": sessions.image_path(key), "orig_name": "x.png"})
    assert len(sessions.history(key)) == 2


HOSTILE_PROMPTS = [
    "![t](http://host/track.png)",
    "[link](http://x) and <http://y>",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "`code` and ```fence```",
    "# heading",
    "line one\n\n    indented code\n## two\n- item\n1. item\n> quote\n| a | b |\n|---|---|",
    "$$\\href{http://x}{y}$$ www.example.com a@b.co",
    "&lt;img src=x&gt; *em* _em_ ~~del~~",
]


def rendered(markdown_text):
    """The HTML a CommonMark renderer makes (gradio's marked follows CommonMark for all of this) and
    the tags in it."""
    import re

    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown_text)
    return html, set(re.findall(r"<\s*([a-zA-Z0-9]+)", html))


def shown_text(html):
    import html as H
    import re

    return H.unescape(re.sub(r"<[^>]*>", "", html))


def hostile_chain(store):
    key, h = new_key(), History()
    for i, prompt in enumerate(["", *HOSTILE_PROMPTS], start=1):
        node = Node(id=i, parent=None if i == 1 else i - 1, kind="upload" if i == 1 else "edit", image="",
                    width=64, height=64, prompt=prompt or "original", seed=None if i == 1 else i,
                    guidance=2.5, steps=2, model="tiny", seconds=0.1, created=time.time(),
                    extra={"source": "![s](http://host/name.png)"} if i == 1 else {})
        png = metadata.png_bytes(Image.new("RGB", (64, 64)), node.to_dict())
        h = h.add(replace(node, image=store.save_image(key, png)), parent=node.parent)
    return key, h


def test_prompts_show_as_text_in_the_tree_and_the_presentation(tmp_path):
    from types import SimpleNamespace

    from ui.present import slide
    from ui.view import tree_markdown

    store = Store(tmp_path / "s")
    key, h = hostile_chain(store)
    tree = tree_markdown(h)
    html, tags = rendered(tree)
    assert tags <= {"ul", "li", "strong"}, tags  # no img, a, script, code, h1, table, em, del ...
    for prompt in HOSTILE_PROMPTS:
        if len(" ".join(prompt.split())) < 40:  # the tree shortens long ones
            assert " ".join(prompt.split()) in shown_text(html)
    for i in range(len(HOSTILE_PROMPTS) + 1):
        caption = slide(SimpleNamespace(store=store), key, h, i).caption
        html, tags = rendered(caption)
        assert tags <= {"p", "strong", "br", "small"}, (i, tags)
        shown = " ".join(shown_text(html).split())
        assert shown.startswith(" ".join(HOSTILE_PROMPTS[i - 1].split()) if i else "The original · ![s](http://host/")
    # What the renderer above does not do but gradio's marked does: link bare addresses, run $$ formulas.
    for value in (tree, *(slide(SimpleNamespace(store=store), key, h, i).caption for i in range(len(h)))):
        assert "://" not in value and "www." not in value and "$$" not in value and "@" not in value.replace("\\@", "")


def test_texts_an_import_may_carry_show_as_text_in_the_status():
    from types import SimpleNamespace

    from ui.view import status_text

    node = Node(id=2, parent=1, kind="edit", image="", width=64, height=64, prompt="x", seed=1, guidance=2.5,
                steps=2, model="tiny", seconds=0.1, created=0.0,
                extra={"reference": "r.png", "reference_roles": ["![t](http://host/t.png)"],
                       "bucket": "<img src=x>", "eager_calls": 2, "eager_cause": "[a](http://x)"})
    html, tags = rendered(status_text(SimpleNamespace(current_node=node), "tiny"))
    assert tags <= {"p", "strong", "code"}, tags  # `seed` is ours; nothing of theirs becomes markup
    assert "![t](http://host/t.png)" in shown_text(html) and "<img src=x>" in shown_text(html)


def test_the_variations_grid_shows_the_current_steps_group(engine, tmp_path):
    """The grid under the canvas: the candidates of the current step's group, captioned with their
    number and seed, the current one selected; hidden for a single step; back with undo."""
    from ui import view

    store = Store(tmp_path / "s")
    sessions = Sessions(engine, store)
    key = chain(store, 1)
    sessions.edit(key, "four", EditOptions(steps=2, variations=4))
    snap = view.snapshot(sessions, key)
    group = sessions.history(key).group()
    assert [c for _, c in snap.variants] == [f"{i} · seed {n.seed}" for i, n in enumerate(group, 1)]
    assert snap.variant == 0 and "variation 1 of 4" in snap.status and "made together" in snap.status
    sessions.pick(key, group[2].id)
    sessions.edit(key, "from the third", EditOptions(steps=2))
    assert view.snapshot(sessions, key).variants == []
    demo = build_ui(sessions, Settings(data_dir=tmp_path / "s"))
    tab = SessionState(demo)
    grid = call(demo, "ui_undo", [key, None], tab)[-1]  # the grid is the last of the page's outputs
    assert grid["visible"] and len(grid["value"]) == 4 and grid["selected_index"] == 2
    assert [c["caption"] for c in grid["value"]] == [c for _, c in snap.variants]
    grid = call(demo, "ui_redo", [key, None], tab)[-1]
    assert grid["visible"] is False and not grid.get("value")
    grid = call(demo, "ui_undo", [key, None], tab)[-1]
    assert grid["visible"] and grid["selected_index"] == 2
    grid = call(demo, "ui_undo", [key, None], tab)[-1]  # to the original: no group, nothing to send again
    assert grid["visible"] is False and "value" in grid
    grid = call(demo, "ui_redo", [key, None], tab)[-1]
    assert grid["selected_index"] == 2


def test_candidates_made_one_after_another_say_so_and_why():
    from types import SimpleNamespace

    from ui.view import preview_cells, status_text

    record = {"size": 2, "first": 2, "batched": False, "seconds": 3.0,
              "note": "with offloading the GPU holds one picture's work at a time: the 2 variations run one "
                      "after another"}
    nodes = [Node(id=2 + i, parent=1, kind="edit", image="", width=64, height=64, prompt="x", seed=7 + i,
                  guidance=2.5, steps=2, model="tiny", seconds=1.5, created=0.0,
                  extra={"variations": {**record, "index": i}}) for i in range(2)]
    h = SimpleNamespace(current_node=nodes[1], group=lambda node_id=None: nodes)
    text = status_text(h, "tiny")
    assert "**variation 2 of 2**" in text and "**made one after another** (3.00 s for all 2)" in text
    assert "with offloading the GPU holds one picture" in text
    preview = Image.new("RGB", (40, 30))
    cells = preview_cells((None, preview))
    assert [c for _, c in cells] == ["1 · waiting", "2 · preview"] and cells[0][0].size == (40, 30)


def test_a_pick_shows_the_picked_seed_unless_the_visitor_fixed_one(engine, tmp_path):
    """The seed box shows the current step's seed after a turn; a pick makes another candidate current,
    so the box follows it, except in fixed mode, where it holds the visitor's own seed for the next
    instruction."""
    import gradio as gr

    store = Store(tmp_path / "s")
    sessions = Sessions(engine, store)
    key = chain(store, 1)
    sessions.edit(key, "three", EditOptions(steps=2, variations=3))
    group = sessions.history(key).group()
    demo = build_ui(sessions, Settings(data_dir=tmp_path / "s"))
    fn = next(f for f in demo.fns.values() if f.api_name == "ui_pick")
    seed_box = fn.outputs.index(next(b for b in fn.outputs if getattr(b, "elem_id", None) == "seed"))

    def pick(index, mode):
        out = asyncio.run(demo.process_api(block_fn=fn, inputs=[key, None, mode], state=SessionState(demo),
                                           event_data=gr.SelectData(None, {"index": index, "value": None})))
        return out["data"]

    shown = pick(2, "random")
    assert sessions.history(key).current == group[2].id
    assert shown[seed_box] == group[2].seed and "variation 3 of 3" in shown[2]
    assert pick(1, "locked")[seed_box] == group[1].seed
    fixed = pick(0, "fixed")
    assert sessions.history(key).current == group[0].id
    assert fixed[seed_box] == {"__type__": "update"}  # untouched: the visitor's fixed seed stays
