"""Talking to the Hugging Face Hub: why a model could not be loaded, and who we are there.

Load errors are told apart by walking the exception chain for huggingface_hub's own error classes:
diffusers wraps them (a GatedRepoError arrives inside an OSError that says "not fully cached
locally"), so neither the outer type nor its message says what went wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterator


def exception_chain(e: BaseException) -> Iterator[BaseException]:
    """`e`, then what caused it, and so on (each exception once)."""
    seen: set[int] = set()
    x: BaseException | None = e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        yield x
        x = x.__cause__ or x.__context__


def token() -> str | None:
    """The Hugging Face token this process would use ($HF_TOKEN, else `hf auth login`'s), if any."""
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no token is the answer, whatever went wrong
        return os.environ.get("HF_TOKEN") or None


def is_local(model: str) -> bool:
    """A folder on this machine rather than a hub id ("owner/name")."""
    return os.path.exists(model) or model.startswith((".", "~", os.path.sep)) or model.count("/") > 1


def explain_load_error(model: str, e: BaseException) -> str:
    """One plain sentence: what failed when loading `model`, and what to do about it."""
    from huggingface_hub import errors as hf

    if is_local(model):
        if not os.path.isdir(model):
            return (f"cannot load {model}: no such folder. "
                    "Pass a diffusers folder with model_index.json, a hub id, or 'tiny'.")
        return f"cannot load {model}: it is not a FluxKontextPipeline folder ({type(e).__name__}: {str(e)[:200]})"
    chain = list(exception_chain(e))

    def found(*types: type) -> BaseException | None:
        return next((x for x in chain if isinstance(x, types)), None)

    page = f"https://huggingface.co/{model}"
    if found(hf.GatedRepoError):
        if not token():
            return (f"cannot load {model}: the repository is gated and no Hugging Face token is set. Accept its "
                    f"licence at {page}, then set HF_TOKEN to a token of that account (on a Space: Settings, "
                    "Variables and secrets, New secret HF_TOKEN), or run `hf auth login`.")
        return (f"cannot load {model}: the repository is gated and the token in use has no access to it. Accept "
                f"its licence at {page} with the account the token belongs to, or use a token that may read "
                "gated repositories.")
    if found(hf.RevisionNotFoundError):
        return f"cannot load {model}: that revision does not exist on the hub. Check the branch, tag or commit."
    if found(hf.RepositoryNotFoundError):
        return (f"cannot load {model}: no such model on the hub (or it is private and the token cannot see it). "
                "Check the id, or pass a local folder or 'tiny'.")
    if found(hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError, ConnectionError, TimeoutError):
        why = "offline mode is on (HF_HUB_OFFLINE)" if found(hf.OfflineModeIsEnabled) else "the hub cannot be reached"
        return (f"cannot load {model}: it is not in the local cache and {why}. Download it once with network "
                "access (about 33 GB), or pass a local folder, or use --model tiny.")
    import torch

    if found(MemoryError, torch.OutOfMemoryError):
        return f"cannot load {model}: out of memory. Try --offload model, or a machine with more memory."
    return f"cannot load {model}: {type(e).__name__}: {str(e)[:300]}"
