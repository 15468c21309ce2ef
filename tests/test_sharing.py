"""Read-only share links (kontext/files/sharing.py, Sessions.share/unshare/shared)."""

from __future__ import annotations

import pytest
from PIL import Image

from kontext.errors import UnknownShare, UserError
from kontext.files.sharing import TOKEN_RE
from kontext.files.store import check_key
from kontext.sessions.session import EditOptions

FAST = EditOptions(steps=2)


def test_a_link_shows_its_tree_and_nothing_else(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), name="a.png")
    sessions.edit(key, "one", FAST)
    sessions.edit(key, "two", FAST)
    share = sessions.share(key)
    assert TOKEN_RE.fullmatch(share.token) and share.key == key and share.root == 1
    assert sessions.share(key).token == share.token  # sharing again gives the same link
    with pytest.raises(UserError, match="session key"):
        check_key(share.token)  # a token is never accepted where a key is

    sessions.upload(key, Image.effect_noise((64, 64), 20).convert("RGB"), name="b.png")  # another tree
    _, view = sessions.shared(share.token)
    assert sorted(view.nodes) == [1, 2, 3] and view.current == 3  # the owner is elsewhere: the tip
    _, at = sessions.shared(share.token, current=2)
    assert at.current == 2
    _, outside = sessions.shared(share.token, current=4)
    assert outside.current == 3  # a step of another tree is not shown
    sessions.edit(key, "three", FAST, parent=2)  # the owner goes on: the link shows it
    assert 5 in sessions.shared(share.token)[1].nodes


def test_revoked_cleared_and_invented_links_say_so(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    token = sessions.share(key).token
    assert sessions.unshare(key) == 1
    with pytest.raises(UnknownShare, match="revoked by its owner, or it never existed"):
        sessions.shared(token)
    for made_up in ("v_" + "A" * 64, "nonsense", None, key):
        with pytest.raises(UnknownShare):
            sessions.shared(made_up)
    token = sessions.share(key).token
    sessions.clear(key)
    with pytest.raises(UnknownShare):
        sessions.shared(token)
    sessions.upload(key, Image.effect_noise((64, 64), 10).convert("RGB"))  # the same id 1, another picture
    with pytest.raises(UnknownShare):
        sessions.shared(token)
    with pytest.raises(UserError, match="nothing to share"):
        sessions.share(sessions.new())


def test_links_survive_a_restart(engine, store):
    from kontext.sessions.session import Sessions

    a = Sessions(engine, store)
    key = a.new()
    a.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    token = a.share(key).token
    b = Sessions(engine, store)
    assert b.shared(token)[0].key == key
    assert a.shares.path.stat().st_mode & 0o077 == 0  # keys inside: owner-only


def test_a_damaged_links_file_never_blocks_sharing_or_start_over(sessions):
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    sessions.share(key)
    sessions.shares.path.write_text("{not json")
    sessions.clear(key)  # still works
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"))
    assert TOKEN_RE.fullmatch(sessions.share(key).token)


def test_links_are_bounded_per_session_and_dead_ones_make_room(sessions, monkeypatch):
    from kontext.files import sharing

    key = sessions.new()
    for i in range(sharing.MAX_PER_SESSION):
        sessions.upload(key, Image.effect_noise((32, 32), 10 + i).convert("RGB"))
        sessions.share(key)
    sessions.upload(key, Image.effect_noise((32, 32), 99).convert("RGB"))
    with pytest.raises(UserError, match="already has 20 share links"):
        sessions.share(key)
    monkeypatch.setattr(sharing, "MAX_SHARES", sharing.MAX_PER_SESSION)
    other = sessions.new()
    sessions.upload(other, Image.effect_noise((32, 32), 5).convert("RGB"))
    with pytest.raises(UserError, match="share links: try again later"):
        sessions.share(other)  # the server is full of live links
    sessions.store.delete(key)  # that session expired: its links make room
    assert sessions.share(other).key == other


# --- the log: one appended line per link, durable, compacted rarely -----------------------------------
def test_a_new_link_appends_one_line_and_links_survive_restarts(tmp_path):
    from kontext.files.sharing import Shares

    path = tmp_path / "shares.jsonl"
    a = Shares(path)
    made = [a.share(f"session-{i:02d}", 1, f"{i:032x}.png") for i in range(40)]
    before, inode = path.read_bytes(), path.stat().st_ino
    new = a.share("session-new", 3, "n.png")
    after = path.read_bytes()
    # Nothing written before is rewritten: the link is one more line in the same file.
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert path.stat().st_ino == inode
    assert a.revoke("session-00") == 1
    b = Shares(path)  # a restart
    assert b.resolve(new.token) == new and b.resolve(made[1].token).key == "session-01"
    with pytest.raises(UnknownShare):
        b.resolve(made[0].token)  # revoked stays revoked
    # A crash cut the last line short: that line is skipped, the next link gets a line of its own.
    with open(path, "ab") as f:
        f.write(b'{"token": "v_half')
    c = Shares(path)
    assert c.resolve(new.token) == new
    newer = c.share("session-newer", 1, "m.png")
    assert Shares(path).resolve(newer.token).key == "session-newer"
    assert a.resolve(newer.token).key == "session-newer"  # another process's links are seen too


def test_the_log_is_rewritten_only_when_dead_lines_outnumber_live_ones(tmp_path, monkeypatch):
    from kontext.files import sharing

    monkeypatch.setattr(sharing, "COMPACT_SLACK", 0)
    path = tmp_path / "shares.jsonl"
    a, follower = sharing.Shares(path), sharing.Shares(path)
    links = [a.share(f"s{i}", 1, "x.png") for i in range(6)]
    assert follower.resolve(links[0].token) == links[0]
    for i in range(4):
        a.revoke(f"s{i}")  # 6 added, 4 revoked: 10 lines for 2 links, so the log was rewritten
    assert path.read_bytes().count(b"\n") <= 2 * 2
    assert path.stat().st_mode & 0o077 == 0
    assert [s.token for s in follower.of("s5")] == [links[5].token]  # it re-reads a rewritten log
    with pytest.raises(UnknownShare):
        follower.resolve(links[0].token)


def test_links_of_the_older_single_file_are_kept(tmp_path):
    import json

    from kontext.files.sharing import Shares

    token = "v_" + "b" * 64
    (tmp_path / "shares.json").write_text(json.dumps({token: {"key": "k" * 40, "root": 2, "image": "i.png",
                                                              "created": 5.0}}))
    shares = Shares(tmp_path / "shares.jsonl")
    assert shares.resolve(token).root == 2 and not shares.resolve(token).names
    assert not (tmp_path / "shares.json").exists() and Shares(tmp_path / "shares.jsonl").resolve(token).key == "k" * 40


def test_links_are_capped_per_address(tmp_path):
    from kontext.files.sharing import Shares

    path = tmp_path / "shares.jsonl"
    shares = Shares(path, per_session=2, per_address=1.5)  # 3 links per address
    for i in range(3):
        shares.share(f"key{i}", 1, "a.png", address="10.0.0.1")
    with pytest.raises(UserError, match=r"3 share links were already made from your network address \(at most 2 "
                                        r"per session, 3 per address\)"):
        shares.share("key3", 1, "a.png", address="10.0.0.1")
    assert shares.share("key3", 1, "a.png", address="10.0.0.2").key == "key3"  # another address
    assert shares.share("key4", 1, "a.png").key == "key4"  # no address known: the session's cap only
    shares.revoke("key0")
    shares.share("key5", 1, "a.png", address="10.0.0.1")  # a revoked link made room
    with pytest.raises(UserError, match="network address"):
        shares.share("key6", 1, "a.png", address="10.0.0.1")
    shares.share("key6", 1, "a.png", address="10.0.0.1", alive=lambda key: key != "key1")  # an expired one did
    assert Shares(path, per_session=2, per_address=1.5).share("key7", 1, "a.png", address="10.0.0.2")
    with pytest.raises(UserError, match="network address"):  # after a restart the count is the same
        Shares(path, per_session=2, per_address=1.5).share("key8", 1, "a.png", address="10.0.0.1")
    assert Shares(path, per_session=2, per_address=0).share("key8", 1, "a.png", address="10.0.0.1")  # 0: no cap
    assert "10.0.0" not in path.read_text()  # the log keeps no address


# --- file names: the owner's to share ----------------------------------------------------------------
PRIVATE = "home GPS 52.37N.jpg"


def _everything_a_viewer_gets(sessions, token) -> bytes:
    """What a link's viewer can read: the view's words, the pictures it serves, the export's files."""
    import zipfile

    from ui import share as ui_share
    from ui import view

    link, h = sessions.shared(token)
    snap = view.snapshot(sessions, link.key, h)
    words = repr((snap.status, snap.choices, snap.tree, snap.gallery, view.history_json(sessions, link.key, h)))
    served = b"".join(open(p, "rb").read() for p in [snap.image, *snap.compare, *(g[0] for g in snap.gallery)])
    files = ui_share.export_files(sessions, link.key, "tree", history=h, visitor=f"link {token}")
    with zipfile.ZipFile(files[0]) as zf:
        zipped = b"".join(zf.read(n) for n in zf.namelist())
    return words.encode() + served + zipped + b"".join(open(f, "rb").read() for f in files[1:])


def test_file_names_are_shared_only_when_the_owner_says_so(sessions, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ui import share as ui_share
    from ui.api import Api
    from ui.showcase import Showcase

    monkeypatch.setattr(ui_share, "get_upload_folder", lambda: str(tmp_path / "gradio"))
    key = sessions.new()
    sessions.upload(key, Image.effect_noise((64, 64), 40).convert("RGB"), name=PRIVATE)
    sessions.edit(key, "one", FAST)
    api = Api(sessions)
    token = api.share(key)["token"]  # the API's default, like the page's: no names
    seen = _everything_a_viewer_gets(sessions, token)
    assert PRIVATE.encode() not in seen and b"GPS" not in seen
    _, h = sessions.shared(token)
    assert h.node(1).prompt == "original" and h.node(1).width == 64
    copy = sessions.store.image_path(key, h.node(1).image)
    copy.unlink()  # the store's clean-up took it (no history names it)
    assert sessions.shared(token)[1].node(1).image == copy.name and copy.is_file()  # made again, same address
    assert sessions.history(key).node(1).extra["source"] == PRIVATE  # the owner's own steps keep it

    assert api.share(key, names=True)["token"] == token  # the same link, now with names
    assert PRIVATE.encode() in _everything_a_viewer_gets(sessions, token)
    assert sessions.share(key).token == token and PRIVATE.encode() not in _everything_a_viewer_gets(sessions, token)
    page = Showcase(SimpleNamespace(s=sessions, p=None), None)  # the page's button, its box ticked
    assert page.share(key, True, SimpleNamespace(client=SimpleNamespace(host="10.0.0.9"))) == token
    assert sessions.shares.resolve(token).names
    with pytest.raises(UserError, match="names must be true or false"):
        api.share(key, names="yes")
