"""Who may spend GPU time: an optional Hugging Face sign-in gate for owners who pay for the GPU."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from kontext.env import on_space
from kontext.errors import UserError

from .share import visitor_address


def check_signed_in(login: str, profile: Any) -> None:
    """With `login == "hf"`, refuse a GPU turn from a visitor who has not signed in.

    `profile` is the gr.OAuthProfile gradio injects (None when signed out); on a Space it comes from
    the Space's OAuth (front matter `hf_oauth: true`), locally from `hf auth login`'s account.
    """
    if login == "hf" and profile is None:
        raise UserError("sign in with Hugging Face (the button at the top of the page) to edit: "
                         "this Space's owner pays for its GPU")


def uploaded_path(value: Any, name: str) -> str | None:
    """The server path of a file as gradio hands it over without preprocessing (a FileData dict or a
    path), so the raw upload reaches kontext.core.images, which answers every bad file in plain words.
    Gradio has already checked that the path lies in its upload folder."""
    if value is None or value == "":
        return None
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, str) or not path:
        raise UserError(f"{name} must be an uploaded file")
    return path



def uploaded_name(value: Any) -> str:
    """The file name the client gave (gradio keeps it as orig_name), else the stored file's name;
    "" for a data: URL, which gradio stores as "file.<ext>" (the step is then called "original")."""
    if isinstance(value, dict) and isinstance(value.get("orig_name"), str) and value["orig_name"]:
        name = value["orig_name"]
    else:
        path = value.get("path") if isinstance(value, dict) else value
        name = os.path.basename(path) if isinstance(path, str) else ""
    return "" if re.fullmatch(r"file(\.[A-Za-z0-9]+)?", name) else name


class LoginGuard:
    """Failed sign-ins counted per address and per user at that address: after `tries` failures,
    each further try must wait, 1 s after the first failure over and doubling with each one up to
    `max_wait_s`; a refused try is not counted. A success clears its address and user. A try counts
    as failed from when it starts, so a burst of tries at once is held to `tries` too.

    The count per user at an address is not the address's count again: a success clears the
    address, so someone with an account of their own could otherwise sign in as themselves between
    guesses at another listed user's password. A user is counted per address, not across
    addresses: a count across addresses would let anyone lock a listed user out by failing on
    purpose with that name. Only users of the password list are
    counted by name (others only by address), so invented names cannot grow it; entries are bounded
    by `remember` (the least recently failed are forgotten)."""

    def __init__(self, users: Iterable[str], tries: int = 5, max_wait_s: float = 900.0, *,
                 clock: Callable[[], float] = time.monotonic, remember: int = 10_000):
        self.users = set(users)
        self.tries, self.max_wait_s, self.clock, self.remember = tries, max_wait_s, clock, remember
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()  # -> (count, until)
        self._lock = threading.Lock()

    def _keys(self, address: str, user: str) -> list[tuple[str, str]]:
        return [("address", address)] + ([("user", f"{user}\0{address}")] if user in self.users else [])

    def begin(self, address: str, user: str) -> tuple[str, int] | None:
        """Before a try: None if it may go ahead (it is counted as failed until `succeeded`), else why
        not and the seconds to wait."""
        now = self.clock()
        with self._lock:
            for kind, name in self._keys(address, user):
                count, until = self._failures.get((kind, name), (0, 0.0))
                if until > now:
                    who = ("from this address" if kind == "address"
                           else f"for the user {name.split(chr(0))[0]!r} from this address")
                    wait = math.ceil(until - now)
                    return (f"too many failed sign-ins {who}: try again in {wait} s (after {self.tries} "
                            f"failures each further one doubles the wait, up to {self.max_wait_s / 60:g} "
                            "minutes)"), wait
            for key in self._keys(address, user):
                count, _ = self._failures.pop(key, (0, 0.0))
                count += 1
                wait = 0.0 if count < self.tries else min(self.max_wait_s, 2.0 ** (count - self.tries))
                self._failures[key] = (count, now + wait)
            while len(self._failures) > self.remember:
                self._failures.popitem(last=False)
        return None

    def succeeded(self, address: str, user: str) -> None:
        with self._lock:
            for key in self._keys(address, user):
                self._failures.pop(key, None)


class LoginLimit:
    """ASGI middleware in front of gradio's POST /login: refuses a try while `guard` says to wait
    (429 with the reason and Retry-After) and tells it how each try ended. Nothing sleeps: a refused
    try is answered at once. The address is the one `client_address` gives (ui/share.py): behind a
    proxy it trusts, the visitor's own."""

    MAX_BODY = 64 * 1024  # a login form is a few hundred bytes

    def __init__(self, app: Any, guard: LoginGuard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.MAX_BODY:
                await JSONResponse({"detail": "the sign-in form is too large"}, status_code=413)(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, replay).form()
            user = form.get("username")
            user = user.strip() if isinstance(user, str) else ""  # as gradio reads it
            await form.close()
        except Exception:  # noqa: BLE001 - a malformed form: gradio answers it; counted by address
            user = ""
        forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-for", b"").decode("latin-1") or None
        address = visitor_address((scope.get("client") or ("?", 0))[0], forwarded, on_space()) or "?"
        refusal = self.guard.begin(address, user)
        if refusal:
            reason, wait = refusal
            await JSONResponse({"detail": reason}, status_code=429,
                               headers={"Retry-After": str(wait)})(scope, receive, send)
            return
        replayed = False

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.guard.succeeded(address, user)
            await send(message)

        await self.app(scope, replay, watch)
