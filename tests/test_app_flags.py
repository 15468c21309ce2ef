import app


def test_defaults_listen_locally(monkeypatch):
    for var in ("KONTEXT_HOST", "GRADIO_SERVER_NAME", "KONTEXT_PORT", "GRADIO_SERVER_PORT", "KONTEXT_DATA", "SPACE_ID"):
        monkeypatch.delenv(var, raising=False)
    args = app.parse_args([])
    assert (args.host, args.port, args.data_dir, args.mode) == ("127.0.0.1", 7860, "sessions", "auto")
    assert args.preview == "estimate"


def test_spaces_variables_are_honoured(monkeypatch):
    for var in ("KONTEXT_HOST", "KONTEXT_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = app.parse_args(["--model", "tiny"])
    assert (args.host, args.port, args.model) == ("0.0.0.0", 7861, "tiny")


def test_flags_win_over_environment(monkeypatch):
    monkeypatch.setenv("KONTEXT_MODEL", "tiny")
    monkeypatch.setenv("KONTEXT_PORT", "8000")
    monkeypatch.setenv("KONTEXT_MODE", "eager")
    args = app.parse_args(["--model", "./my-model", "--port", "9000", "--mode", "fast", "--mcp", "--preview", "noisy"])
    assert (args.model, args.port, args.mode, args.mcp, args.preview) == ("./my-model", 9000, "fast", True, "noisy")
    assert app.parse_args([]).mode == "eager"  # and the environment wins over the default


def test_space_flags_and_their_environment(monkeypatch):
    monkeypatch.setenv("KONTEXT_MIRROR", "me/sessions")
    monkeypatch.setenv("KONTEXT_LOGIN", "hf")
    args = app.parse_args(["--gpu-slots", "2", "--max-waiting", "4", "--auth", "ann:pw"])
    assert (args.mirror, args.login, args.gpu_slots, args.max_waiting, args.auth) == ("me/sessions", "hf", 2, 4,
                                                                                       "ann:pw")


def test_mirroring_without_a_token_stops_with_a_plain_message(monkeypatch, tmp_path):
    import pytest

    from kontext.hosting.config import Settings

    monkeypatch.setattr("kontext.model.hub.token", lambda: None)
    with pytest.raises(SystemExit, match="--mirror needs a Hugging Face token"):
        app.start_mirror(Settings(mirror="me/sessions", data_dir=tmp_path))
    assert app.start_mirror(Settings(data_dir=tmp_path)) is None  # off by default


def test_per_visitor_limits_from_flags_and_environment(monkeypatch):
    import pytest

    for var in ("KONTEXT_EXPORT_MB", "KONTEXT_LINKS_PER_SESSION", "KONTEXT_PER_ADDRESS", "SPACE_ID"):
        monkeypatch.delenv(var, raising=False)
    settings, _ = app.read_settings(app.parse_args([]), zerogpu=False)
    assert (settings.export_bytes, settings.links_per_session, settings.per_address) == (640 * 2**20, 20, 2.0)
    monkeypatch.setenv("KONTEXT_PER_ADDRESS", "0")
    settings, _ = app.read_settings(app.parse_args(["--export-mb", "100", "--links-per-session", "5"]), zerogpu=False)
    assert (settings.export_bytes, settings.links_per_session, settings.per_address) == (100 * 2**20, 5, 0.0)
    for flags, words in ((["--export-mb", "0"], "--export-mb must be more than 0"),
                         (["--links-per-session", "0"], "--links-per-session must be at least 1"),
                         (["--per-address", "-1"], "--per-address must be 0")):
        with pytest.raises(SystemExit, match=words):
            app.read_settings(app.parse_args(flags), zerogpu=False)


def test_the_limits_reach_the_share_links_and_the_exports(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from kontext.files.sharing import Shares
    from kontext.hosting.config import Settings
    from ui import share

    monkeypatch.setattr(share, "LIMITS", share.LIMITS)  # restored after the test
    sessions = SimpleNamespace(shares=Shares(tmp_path / "shares.jsonl"))
    app.apply_limits(Settings(export_bytes=5 * 2**20, links_per_session=3, per_address=1.5), sessions)
    assert (sessions.shares.per_session, sessions.shares.per_address) == (3, 1.5)
    assert share.LIMITS == share.ExportLimits(per_visitor=5 * 2**20, per_address=1.5)


def test_upload_session_and_login_limits_from_flags_and_environment(monkeypatch):
    import pytest

    for var in ("KONTEXT_MAX_SESSION_MB", "KONTEXT_UPLOAD_KEEP_MINUTES", "KONTEXT_LOGIN_TRIES",
                "KONTEXT_LOGIN_MAX_WAIT_MINUTES", "KONTEXT_AUTH", "SPACE_ID"):
        monkeypatch.delenv(var, raising=False)
    settings, _ = app.read_settings(app.parse_args([]), zerogpu=False)
    assert (settings.max_session_bytes, settings.upload_keep_s, settings.login_tries,
            settings.login_max_wait_s) == (512 * 2**20, 300, 5, 900)
    monkeypatch.setenv("KONTEXT_LOGIN_TRIES", "3")
    settings, _ = app.read_settings(app.parse_args(["--max-session-mb", "100", "--upload-keep-minutes", "2",
                                                    "--login-max-wait-minutes", "1"]), zerogpu=False)
    assert (settings.max_session_bytes, settings.upload_keep_s, settings.login_tries,
            settings.login_max_wait_s) == (100 * 2**20, 120, 3, 60)
    for flags, words in ((["--max-session-mb", "0"], "--max-session-mb must be more than 0"),
                         (["--max-session-mb", "30000"], "at most --max-disk-gb"),
                         (["--upload-keep-minutes", "0"], "--upload-keep-minutes must be more than 0"),
                         (["--login-tries", "0"], "--login-tries must be at least 1"),
                         (["--auth", "ann:a,bob:b,ann:c"], "--auth names the user 'ann' twice")):
        with pytest.raises(SystemExit, match=words):
            app.read_settings(app.parse_args(flags), zerogpu=False)


def test_raw_uploads_are_as_large_as_a_picture_or_an_import_may_be(tmp_path):
    from starlette.middleware import Middleware

    from kontext.core.images import MAX_FILE_BYTES
    from kontext.hosting.config import Settings
    from ui import launch_kwargs
    from ui.access import LoginLimit

    kw = launch_kwargs(Settings(data_dir=tmp_path))
    assert kw["max_file_size"] == 512 * 2**20  # an import of a full session's share
    assert "auth" not in kw and "middleware" not in kw["app_kwargs"] and callable(kw["app_kwargs"]["lifespan"])
    kw = launch_kwargs(Settings(data_dir=tmp_path, max_session_bytes=10 * 2**20, auth=(("ann", "pw"),)))
    assert kw["max_file_size"] == MAX_FILE_BYTES  # a picture may still be 50 MB
    [guard] = kw["app_kwargs"]["middleware"]
    assert isinstance(guard, Middleware) and guard.cls is LoginLimit and "wrong passwords" in kw["auth_message"]
