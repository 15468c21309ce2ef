"""Who may edit: the Hugging Face sign-in gate, password auth when self-hosted, the busy answers,
and what the page says about storage and hardware."""

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from apphelpers import running_app
from kontext.files.store import Store
from kontext.hosting.config import Settings, parse_auth, storage_note
from kontext.sessions.session import Sessions
from ui.layout import demo_banner

pytestmark = pytest.mark.process  # serves the app on a port


def source(tmp_path):
    path = tmp_path / "source.png"
    Image.effect_noise((96, 64), 40).convert("RGB").save(path)
    return handle_file(str(path))


def on_a_space_with_oauth(monkeypatch):
    """What a Space with `hf_oauth: true` sets (gradio then serves the real OAuth routes)."""
    import gradio.oauth

    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "me/kontext")
    for name, value in (("OAUTH_CLIENT_ID", "id"), ("OAUTH_CLIENT_SECRET", "secret"),
                        ("OAUTH_SCOPES", "openid profile"), ("OPENID_PROVIDER_URL", "http://127.0.0.1:9")):
        monkeypatch.setattr(gradio.oauth, name, value)


def test_with_the_hf_gate_a_signed_out_visitor_cannot_spend_gpu_time(engine, tmp_path, monkeypatch):
    on_a_space_with_oauth(monkeypatch)
    sessions = Sessions(engine, Store(tmp_path / "sessions"))
    with running_app(sessions, tmp_path, login="hf") as url:
        c = Client(url, verbose=False)
        key = c.predict(api_name="/new_session")
        c.predict(key, source(tmp_path), api_name="/upload")  # no GPU needed: allowed
        for call in (lambda: c.predict(key, "x", "random", 0, 0, 2, 0, 0, api_name="/edit"),
                     lambda: c.predict(key, api_name="/reroll"),
                     # the page's own edit (its States are not parameters): ..., draft, the three roles
                     lambda: c.predict(key, "x", "random", 0, 2.5, 2, "Match input", False, "style",
                                       "character", "object", api_name="/ui_edit")):
            with pytest.raises(Exception, match="sign in with Hugging Face.*Space's owner"):
                call()
        assert len(sessions.history(key)) == 1
        assert c.predict(key, api_name="/history")["path"] == [1]  # everything else is served


def test_self_hosted_password_auth_guards_the_api(engine, tmp_path):
    sessions = Sessions(engine, Store(tmp_path / "sessions"))
    with running_app(sessions, tmp_path, auth=parse_auth("ann:pw1")) as url:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own auth error type
            Client(url, verbose=False).predict(api_name="/new_session")
        client = Client(url, auth=("ann", "pw1"), verbose=False)
        key = client.predict(api_name="/new_session")
        assert len(key) == 64
        # Images by public name (ui/public.py) are behind the same login as gradio's file route.
        import io
        import urllib.error
        import urllib.parse
        import urllib.request

        from PIL import Image

        buf = io.BytesIO()
        Image.effect_noise((64, 48), 40).convert("RGB").save(buf, "PNG")
        sessions.upload(key, buf.getvalue())
        name = sessions.store.public_path(key, sessions.history(key).node(1).image).name
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}images/{name}", timeout=10)
        assert refused.value.code == 401
        # gradio's traffic summary is on only here, behind the password (ui/app.py launch_kwargs).
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}monitoring/summary", timeout=10)
        assert refused.value.code == 401
        import http.cookiejar

        signed_in = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        signed_in.open(f"{url}login", b"username=ann&password=pw1", timeout=10)
        assert b"functions" in signed_in.open(f"{url}monitoring/summary", timeout=10).read()

        # Five wrong passwords, then even the right one waits (ui/access.py LoginLimit).
        def login(password: str) -> int:
            form = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
            try:
                return urllib.request.urlopen(urllib.request.Request(f"{url}login", form), timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code

        assert [login("wrong") for _ in range(5)] == [400] * 5
        assert login("pw1") == 429


def test_auth_flag_is_checked():
    assert parse_auth("a:b, c:d:e") == (("a", "b"), ("c", "d:e"))
    with pytest.raises(ValueError, match="user:password"):
        parse_auth("nopassword")


def test_the_page_says_how_long_sessions_last(tmp_path):
    assert "until the Space restarts" in storage_note(Settings(on_space=True, data_dir=tmp_path / "s"))
    assert "survive restarts" in storage_note(Settings(data_dir=tmp_path / "s"))
    note = storage_note(Settings(on_space=True, mirror="me/sessions", mirror_every_s=60, data_dir=tmp_path))
    assert "mirrored to a private dataset within 60 s" in note and "restart keeps them" in note


def test_the_demo_banner_names_hardware_on_a_space_and_auto_mode_elsewhere():
    on_space = demo_banner("tiny", Settings(on_space=True))
    assert "ZeroGPU" in on_space and "L40S" in on_space and "HF_TOKEN" in on_space
    here = demo_banner("tiny", Settings())
    assert "model offload with int8 weights from 20 GiB" in here and "24 GB" not in here


def test_random_weight_models_get_a_banner_that_says_so_and_a_real_model_none():
    full = demo_banner("random-full", Settings())
    assert "random weights" in full and "speed and memory are the real model's" in full and "noise" in full
    small = demo_banner("random-small", Settings())
    assert "random weights" in small and "speed is not the real model's" in small
    on_space = demo_banner("random-full", Settings(on_space=True), "cuda")
    assert "has no GPU" not in on_space and "KONTEXT_MODEL" in on_space and "HF_TOKEN" in on_space
    assert "has no GPU" in demo_banner("random-small", Settings(on_space=True), "cpu")
    assert demo_banner("black-forest-labs/FLUX.1-Kontext-dev", Settings()) is None


def test_an_auth_list_naming_a_user_twice_is_refused_naming_the_user():
    with pytest.raises(ValueError, match="--auth names the user 'ann' twice"):
        parse_auth("ann:pw1,bob:x,ann:pw2")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_failed_logins_wait_longer_per_address_and_per_user():
    from ui.access import LoginGuard

    clock = Clock()
    guard = LoginGuard(["ann"], tries=3, max_wait_s=8, clock=clock)
    for _ in range(3):  # three failures: the third sets the first wait
        assert guard.begin("1.1.1.1", "ann") is None
    reason, wait = guard.begin("1.1.1.1", "ann")
    assert wait == 1 and reason.startswith("too many failed sign-ins from this address: try again in 1 s")
    # Another address is not held back, even for the same user: failing on purpose with a listed
    # user's name cannot lock that user out everywhere.
    assert guard.begin("2.2.2.2", "ann") is None and guard.begin("2.2.2.2", "bob") is None
    guard.succeeded("2.2.2.2", "ann")
    waits = []
    for _ in range(5):  # each further failure doubles the wait, up to max_wait_s; refused tries do not count
        clock.now += 100
        assert guard.begin("1.1.1.1", "ann") is None
        waits.append(guard.begin("1.1.1.1", "ann")[1])
    assert waits == [2, 4, 8, 8, 8]
    # A refused try is not counted; a success clears its address and user.
    clock.now += 8
    assert guard.begin("1.1.1.1", "ann") is None
    guard.succeeded("1.1.1.1", "ann")
    assert guard.begin("1.1.1.1", "ann") is None and guard.begin("2.2.2.2", "ann") is None


def test_signing_in_as_oneself_does_not_reset_the_count_for_another_user():
    """The count per user at an address is what holds someone with an account of their own: their
    success clears the address's count, not the one for the user they are guessing."""
    from ui.access import LoginGuard

    clock = Clock()
    guard = LoginGuard(["ann", "eve"], tries=3, max_wait_s=8, clock=clock)
    for _ in range(3):
        assert guard.begin("1.1.1.1", "ann") is None
    clock.now += 1  # the first wait is over
    assert guard.begin("1.1.1.1", "eve") is None
    guard.succeeded("1.1.1.1", "eve")  # eve's own password: the address starts again
    assert guard.begin("1.1.1.1", "ann") is None  # the 4th failure for ann here...
    reason, wait = guard.begin("1.1.1.1", "ann")  # ...doubles her wait all the same
    assert wait == 2 and "for the user 'ann' from this address" in reason


def test_invented_user_names_are_not_remembered_and_addresses_are_bounded():
    from ui.access import LoginGuard

    guard = LoginGuard(["ann"], tries=1, clock=Clock(), remember=100)
    for i in range(1000):
        guard.begin(f"10.0.{i // 250}.{i % 250}", f"user{i}")
    assert len(guard._failures) == 100
    assert guard.begin("9.9.9.9", "user5") is None  # an unknown name is only counted by its address


def test_the_login_route_refuses_a_burst_of_wrong_passwords_without_sleeping():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from ui.access import LoginGuard, LoginLimit

    seen = []

    async def login(request):  # gradio's /login: 200 for the right password, 400 otherwise
        form = await request.form()
        seen.append(form["username"])
        ok = (form["username"], form["password"]) == ("ann", "right")
        return JSONResponse({"success": True} if ok else {"detail": "Incorrect credentials."}, 200 if ok else 400)

    guard = LoginGuard(["ann"], tries=5, clock=Clock())
    app = Starlette(routes=[Route("/login", login, methods=["POST"])],
                    middleware=[Middleware(LoginLimit, guard=guard)])
    with TestClient(app) as client:
        # The page sends a multipart form (gradio's Login.svelte); gradio_client an urlencoded one.
        codes = [client.post("/login", files={"username": (None, "ann"), "password": (None, f"wrong{i}")}).status_code
                 for i in range(200)]
        assert codes[:5] == [400] * 5 and set(codes[5:]) == {429} and len(seen) == 5
        refused = client.post("/login", data={"username": "ann", "password": "right"})
        assert refused.status_code == 429 and len(seen) == 5  # even the right password waits
        assert refused.json()["detail"].startswith("too many failed sign-ins")
        assert refused.headers["retry-after"] == "1"
        guard.clock.now += 1
        assert client.post("/login", data={"username": "ann", "password": "right"}).status_code == 200
        assert client.post("/login", data={"username": "ann", "password": "wrong"}).status_code == 400
        assert client.get("/login").status_code == 405  # anything but a sign-in passes through untouched
