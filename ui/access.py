"""Who may spend GPU time: an optional Hugging Face sign-in gate for owners who pay for the GPU."""

from __future__ import annotations

from typing import Any


def check_signed_in(login: str, profile: Any) -> None:
    """With `login == "hf"`, refuse a GPU turn from a visitor who has not signed in.

    `profile` is the gr.OAuthProfile gradio injects (None when signed out); on a Space it comes from
    the Space's OAuth (front matter `hf_oauth: true`), locally from `hf auth login`'s account.
    """
    if login == "hf" and profile is None:
        raise ValueError("sign in with Hugging Face (the button at the top of the page) to edit: "
                         "this Space's owner pays for its GPU")
