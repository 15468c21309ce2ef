"""Live share links without a browser: the change feed (kontext/sessions/live.py), the live flag of a
link, and the room that works out one frame per change for all of a link's viewers (ui/live.py).
The browser test is tests/test_showcase_browser.py::test_a_live_link_follows_the_owner_and_ends_when_revoked."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from gates import WAIT_S, hold_edits
from kontext.errors import UserError
from kontext.sessions.live import Change, Changes
from kontext.sessions.session import EditOptions

FAST = EditOptions(steps=2)


def test_changes_reach_listeners_only_for_followed_sessions():
    changes, heard = Changes(), []
    changes.listen(lambda key, change: heard.append((key, change.kind)))
    changes.publish("a", Change("history"))  # nobody follows "a": nothing is told
    changes.follow("a")
    changes.follow("a")
    changes.publish("a", Change("history"))
    changes.unfollow("a")
    changes.publish("a", Change("idle"))  # one follower left
    changes.unfollow("a")
    changes.publish("a", Change("history"))
    assert heard == [("a", "history"), ("a", "idle")] and not changes.followed("a")


def test_a_session_publishes_each_change_its_viewers_see(sessions, photo):
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.changes.follow(key)
    heard = []
    sessions.changes.listen(lambda k, change: heard.append((change.kind, change.step)) if k == key else None)
    sessions.edit(key, "make it blue", FAST, preview_every=1)
    assert heard == [("progress", 1), ("progress", 2), ("history", 0), ("idle", 0)]
    heard.clear()
    sessions.undo(key)
    sessions.redo(key)
    sessions.share(key, live=True)
    sessions.unshare(key)
    assert [k for k, _ in heard] == ["history", "history", "links", "links"]


def test_a_link_is_live_or_frozen_as_its_owner_last_said(sessions, photo):
    key = sessions.new()
    sessions.upload(key, photo)
    assert sessions.share(key).live is False  # frozen unless asked
    link = sessions.share(key, live=True)
    assert link.live and sessions.shares.resolve(link.token).live
    assert sessions.share(key).token == link.token and not sessions.shares.resolve(link.token).live
    from kontext.files.sharing import Shares

    again = Shares(sessions.shares.path)  # the choice is in the log: it survives a restart
    sessions.share(key, live=True)
    assert again.resolve(link.token).live
    with pytest.raises(UserError, match="live must be true or false"):
        sessions.share(key, live="yes")


def test_the_room_works_out_one_frame_per_change_for_all_viewers(sessions, photo):
    from ui import live

    key = sessions.new()
    sessions.upload(key, photo)
    token = sessions.share(key, live=True).token
    p = SimpleNamespace(message="message", status="status", canvas="canvas", live_badge="badge")
    draws = []

    def draw(t, at=None):
        h = sessions.shared(t)[1]
        draws.append(h.current)
        return {p.message: "", p.status: f"Step #{h.current}"}

    room = live.LiveRoom(sessions, draw)

    async def watch(frames: list, running: asyncio.Event) -> None:
        async for frame in room.follow(token, p):
            frames.append(frame)
            if str(frame.get("status", "")).startswith("The owner's edit is running"):
                running.set()
            if frame.get("status") == "Step #2":  # the finished step
                return

    async def run() -> list:
        viewers = [[] for _ in range(3)]
        running = [asyncio.Event() for _ in viewers]
        tasks = [asyncio.create_task(watch(v, r)) for v, r in zip(viewers, running, strict=True)]
        while sessions.changes._followed.get(key, 0) < 3 or not all(viewers):
            await asyncio.sleep(0.01)  # the streams open, each with what it shows first (drawn in a thread)
        draws.clear()
        with hold_edits(sessions.engine) as gate:  # the edit waits at step 1 until every viewer saw it
            edit = asyncio.create_task(asyncio.to_thread(sessions.edit, key, "make it blue", FAST, preview_every=1))
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in running)), WAIT_S)
            gate.release()
            await edit
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        return viewers

    viewers = asyncio.run(run())
    # Each viewer got the running turn's steps (status and preview only; a step that came before the
    # viewer woke is folded into the next) and then the finished step; the viewers' frames were
    # worked out once per change (the result, the turn's end), not once per viewer.
    running = ["The owner's edit is running: step 1 of 2.", "The owner's edit is running: step 2 of 2."]
    for frames in viewers:
        during = [f.get("status") for f in frames[1:-1]]
        assert during[0] == running[0] and all(s in running for s in during) and during == sorted(during)
        assert all(f and set(f) <= {"status", "canvas"} for f in frames[1:-1])  # not the whole view
        assert frames[1]["canvas"].endswith(".png")  # the preview, a file all viewers load
    assert 1 <= len(draws) <= 2 and set(draws) == {2}
    assert not sessions.changes.followed(key)  # the streams ended with the viewers


def test_a_running_turn_shows_only_to_its_trees_viewers_with_its_own_preview_files(sessions, photo):
    """A session can hold several pictures; a link shares one tree. A turn on another picture (or a
    new one from text) is not shown to the link's viewers, and a later turn's previews never reuse an
    earlier turn's files."""
    from PIL import Image

    from ui import live

    key = sessions.new()
    sessions.upload(key, photo)  # the shared tree: root 1
    sessions.changes.follow(key)
    roots = []
    sessions.changes.listen(lambda k, change: roots.append(change.root) if change.kind == "progress" else None)
    sessions.edit(key, "on the shared picture", FAST, preview_every=1)
    sessions.upload(key, photo)  # another picture: root 3
    sessions.edit(key, "on the other picture", FAST, preview_every=1)
    sessions.edit(key, "a new picture from text", FAST, parent=None, preview_every=1)
    assert roots == [1, 1, 3, 3, None, None]

    token = sessions.share(key, live=True).token
    p = SimpleNamespace(message="message", status="status", canvas="canvas")
    room = live.LiveRoom(sessions, lambda t, at=None: {})
    preview = Image.new("RGB", (8, 8))
    room._bump(key, Change("progress", 1, 2, preview, (), root=1))
    mine = room.frame(token, key, 1, room._state(key), p, False)
    assert mine["status"] == "The owner's edit is running: step 1 of 2." and mine["canvas"].endswith(".png")
    room._bump(key, Change("progress", 2, 2, preview, (), root=3))
    assert room.frame(token, key, 1, room._state(key), p, False) == {}  # another tree's turn: nothing
    room._bump(key, Change("idle"))
    room._bump(key, Change("progress", 1, 2, preview, (), root=1))  # the next turn's step 1
    assert room.frame(token, key, 1, room._state(key), p, False)["canvas"] != mine["canvas"]
    sessions.changes.unfollow(key)


def test_a_turns_tree_is_the_one_its_plan_read(sessions, photo):
    """The tree a running turn reports comes from the snapshot it was planned on, not from a later
    read (a start-over and a new upload in between can give the same step id to another tree)."""
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.edit(key, "first", FAST)
    sessions.upload(key, photo)  # the second tree: its root is step 3
    assert sessions.plan(key, "on the second picture", FAST).root == 3
    assert sessions.plan(key, "on the first picture", FAST, parent=2).root == 1
    assert sessions.plan(key, "from text", FAST, parent=None).root is None


def test_a_turns_end_redraws_only_what_its_result_did_not(sessions):
    """A finished turn's result is one redraw for a link's viewers; its end after that is none. A turn
    that ends without a result (stopped, failed) still takes its running status off their page."""
    from ui import live

    room = live.LiveRoom(sessions, lambda token, at=None: {})
    room._bump("k", Change("progress", 1, 2, root=1))
    running = room._state("k")
    room._bump("k", Change("history"))
    landed = room._state("k")
    room._bump("k", Change("idle"))
    assert room._state("k") == landed and landed[0] == running[0] + 1
    room._bump("k", Change("progress", 1, 2, root=1))
    room._bump("k", Change("idle"))  # stopped: no result came
    assert room._state("k")[0] == landed[0] + 1 and "k" not in room._steps


def test_a_finished_turns_thumbnails_exist_when_its_viewers_hear_of_it(sessions, photo):
    """Live viewers redraw the moment the result is committed: its timeline thumbnails are already
    there (made from the pictures in memory), so that redraw decodes no stored picture."""
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.changes.follow(key)
    thumbs = sessions.store.folder(key) / "thumbs"
    seen: list[set[str]] = []

    def heard(k, change):  # called under the session's lock: read the folder, not the history
        if k == key and change.kind == "history":
            seen.append({f.stem for f in thumbs.glob("*.jpg")})

    sessions.changes.listen(heard)
    sessions.edit(key, "two to pick from", replace(FAST, variations=2))
    made = {Path(n.image).stem for n in sessions.history(key).group()}
    assert len(seen) == 1 and len(made) == 2 and made <= seen[0]


def test_sharing_again_wakes_live_viewers_only_when_the_link_changed(sessions, photo):
    key = sessions.new()
    sessions.upload(key, photo)
    sessions.changes.follow(key)
    heard = []
    sessions.changes.listen(lambda k, change: heard.append(change.kind) if k == key else None)
    sessions.share(key, live=True)  # a new link
    sessions.share(key, live=True)  # the same link, as it was: its viewers see nothing new
    assert heard == ["links"]
    sessions.share(key, live=False)  # made frozen: its live viewers must stop
    sessions.share(key, live=False, names=True)
    assert heard == ["links", "links", "links"]
