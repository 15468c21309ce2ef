"""Who may spend GPU time: an optional Hugging Face sign-in gate for owners who pay for the GPU."""

from __future__ import annotations

import os
import re
from typing import Any

from kontext.errors import UserError


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
