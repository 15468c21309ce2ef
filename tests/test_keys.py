"""Session keys stay where they belong: checked before anything queues, never in a log line, never
read as a new session once the server removed theirs, and the page carries no host secret."""

import io
import logging
import os
import time

import pytest

from kontext.errors import UnknownShare, UserError
from kontext.sessions.admission import TurnQueue
from kontext.sessions.keeper import MAX_EVICTED, SessionRemoved

HOSTILE = [{"$gt": ""}, ["k" * 64], 7, None, ""]


def png(photo) -> bytes:
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    return buf.getvalue()


def age(sessions, key, seconds):
    """Make every file of `key`'s session look last used `seconds` ago."""
    then = time.time() - seconds
    folder = sessions.store.folder(key)
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))


@pytest.mark.parametrize("key", HOSTILE)
def test_the_queue_refuses_a_key_that_is_not_text_before_it_queues(key):
    q = TurnQueue(slots=1, max_waiting=1)
    for call in (lambda: q.has_turn(key), lambda: q.stop(key), lambda: q.turn(key).__enter__()):
        with pytest.raises(UserError, match="^session must be the session key from new_session"):
            call()
    assert q.waiting == 0 and q.wait_idle(0)


def test_an_edit_with_a_json_object_as_key_is_refused_in_plain_words(sessions):
    with pytest.raises(UserError, match="session must be the session key from new_session .text., got dict"):
        sessions.edit({"$gt": ""}, "make it blue")
    with pytest.raises(UserError, match="session key is missing or malformed"):  # text, but not a key's shape
        sessions.edit("$gt", "make it blue")
    assert sessions.queue.waiting == 0 and sessions.queue.wait_idle(0)


def test_a_session_the_sweep_removed_says_so_and_a_new_key_reads_empty(sessions, photo):
    gone, kept, unknown = sessions.new(), sessions.new(), sessions.new()
    for key in (gone, kept):
        sessions.upload(key, png(photo))
    link = sessions.share(gone).token
    age(sessions, gone, sessions.store.max_idle_s + 60)
    sessions.sweep(every_s=0)
    with pytest.raises(UnknownShare, match="shows nothing any more"):  # what a link's viewer is told
        sessions.shared(link)
    for call in (lambda: sessions.history(gone), lambda: sessions.undo(gone),
                 lambda: sessions.upload(gone, png(photo)), lambda: sessions.edit(gone, "x")):
        with pytest.raises(SessionRemoved, match="removed from the server to free space.*start a new session"):
            call()
    assert len(sessions.history(kept)) == 1 and sessions.history(unknown).empty
    sessions.clear(gone)  # starting over: the key holds a new, empty session
    assert sessions.history(gone).empty
    assert sessions._evicted.max_entries == MAX_EVICTED  # bounded: any client can make sessions


def test_a_session_removed_for_disk_space_says_so(engine, tmp_path, photo):
    from kontext.files.store import Store
    from kontext.sessions.session import Sessions

    sessions = Sessions(engine, Store(tmp_path / "sessions"))
    old, new = sessions.new(), sessions.new()
    sessions.upload(old, png(photo))
    age(sessions, old, 3600)  # idle an hour: not expired, but the first to go when space runs out
    sessions.store.max_bytes = sessions.store.used_bytes() + 1000  # no room for a second picture
    sessions.upload(new, png(photo))
    with pytest.raises(SessionRemoved, match="to free space"):
        sessions.history(old)
    assert len(sessions.history(new)) == 1


def test_a_leftover_folder_without_steps_is_not_reported_as_removed(sessions, photo):
    key = sessions.new()
    sessions.add_reference(key, png(photo))  # files, but no step: nothing anyone saw as a session
    age(sessions, key, sessions.store.max_idle_s + 60)
    sessions.sweep(every_s=0)
    assert not sessions.store.folder(key).exists() and sessions.history(key).empty


def test_log_lines_of_the_ui_withhold_keys(caplog):
    from ui.events import log

    key = "a1" * 32
    try:
        raise KeyError(key)
    except KeyError:
        with caplog.at_level(logging.INFO, logger="kontext.ui"):
            log.info("refused %s: step must be a whole number, got %r", "jump", key)
            log.exception("bug in %s", key)
    assert caplog.records and key not in caplog.text and "<withheld>" in caplog.text
    assert "KeyError" in caplog.text and "step must be a whole number" in caplog.text


def test_the_page_never_carries_the_hosts_own_secret(sessions, tmp_path, monkeypatch):
    import json

    from kontext.hosting import Settings, browser_secret
    from ui import build_ui

    settings = Settings(model="tiny", data_dir=tmp_path, secret="the host's own secret")
    derived = browser_secret(settings)
    assert derived != settings.secret and derived == browser_secret(settings)  # stable across restarts
    monkeypatch.setenv("KONTEXT_SECRET", "another host secret")
    assert browser_secret(Settings(data_dir=tmp_path)) not in ("another host secret", derived)
    config = json.dumps(build_ui(sessions, settings).get_config_file(), default=str)
    assert derived in config and settings.secret not in config


def test_monitoring_is_off_unless_behind_the_password(tmp_path):
    from kontext.hosting import Settings, parse_auth
    from ui import launch_kwargs

    assert launch_kwargs(Settings(data_dir=tmp_path))["enable_monitoring"] is False
    # None: gradio's "on" that prints no dashboard URL at start-up; /monitoring* then need the login.
    assert launch_kwargs(Settings(data_dir=tmp_path, auth=parse_auth("ann:pw")))["enable_monitoring"] is None

