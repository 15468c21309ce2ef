"""Export a history as a ZIP: every step's PNG (the stored bytes, so their metadata is kept) plus
`manifest.json`, and optionally an animated GIF of the path, a contact sheet and a README.

Reading an export back lives in `kontext.files.importer`; both share the names and format defined here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from kontext import __version__
from kontext.core.atomic import write_atomic
from kontext.core.history import History, Node, attached_images
from kontext.core.metadata import APP_NAME
from kontext.errors import UserError
from kontext.files import sheets
from kontext.model.loras import public_step

FORMAT = 1
MANIFEST = "manifest.json"
SCOPES = ("path", "tree", "all")  # root -> current step; the current step's tree; every tree
ANIMATION = "path.gif"
CONTACT_SHEET = "contact-sheet.png"
README = "README.txt"
LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "gradio", "pillow", "numpy")
FRAME_SIDE = 512  # longer side of an animation frame
THUMB_SIDE = 256  # longer side of a contact-sheet thumbnail

_README = """Kontext Playground export ({scope}, {count} steps, current step {current})

manifest.json      every step: parent, kind, prompt, seed, guidance, steps, size, model, sha256 of its PNG
steps/NNNN.png     the images as the app stored them (their PNG text chunks hold the same parameters)
{extras}
Re-run the chain and compare bit for bit:   python -m kontext replay THIS.zip --out replayed/
Load it back into the playground:           the "Import" button, or Sessions.import_zip

Images of kind "text" and "edit" were generated or modified with AI (FLUX.1 Kontext [dev]).
"""


def file_name(scope: str = "path", ext: str = "zip") -> str:
    """A download name such as kontext-20260126-1402-path.zip (local time, sorts by date)."""
    return f"kontext-{time.strftime('%Y%m%d-%H%M%S')}-{scope}.{ext}"


def step_file(node_id: int) -> str:
    return f"steps/{node_id:04d}.png"


def reference_file(name: str) -> str:
    return f"references/{name}"


def select(history: History, scope: str = "path") -> list[Node]:
    """The steps an export of `scope` holds, in id order (parents before children)."""
    if scope not in SCOPES:
        raise UserError(f"export scope must be one of {SCOPES}, got {scope!r}")
    if history.current is None:
        raise UserError("nothing to export: this session has no steps yet")
    if scope == "path":
        return history.path()
    if scope == "all":
        return sorted(history.nodes.values(), key=lambda n: n.id)
    root = history.path()[0].id
    keep = {root}
    for n in sorted(history.nodes.values(), key=lambda n: n.id):  # a parent's id is always smaller
        if n.parent in keep:
            keep.add(n.id)
    return [history.nodes[i] for i in sorted(keep)]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that decide the pixels (read without importing them)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def engine_info(engine: Any | None) -> dict[str, str]:
    """Model id, revision, device, dtype and speed mode of `engine` (all '' without one)."""
    torch = sys.modules.get("torch")  # loaded whenever an engine is; never imported just for this
    # On a CPU, float sums are split across threads: another thread count changes the last bits.
    threads = torch.get_num_threads() if torch is not None else 0
    if engine is None:
        return {"id": "", "revision": "", "device": "", "dtype": "", "speed": "", "cpu_threads": threads}
    try:
        dtype = str(engine.pipe.dtype).removeprefix("torch.")
    except Exception:  # noqa: BLE001 - the dtype is a hint for replay, never required
        dtype = ""
    speed = getattr(getattr(engine, "speed", None), "label", "")  # quantizing or caching changes pixels
    return {"id": engine.model_id, "revision": engine.revision or "", "device": str(engine.device),
            "dtype": dtype, "speed": speed or "", "cpu_threads": threads}


def manifest_step(node: Node, png: bytes) -> dict[str, Any]:
    d = public_step(node.to_dict())  # preset names and strengths; where weights lie is the host's own
    d.update(image=step_file(node.id), sha256=hashlib.sha256(png).hexdigest(), bytes=len(png))
    return d


def build_manifest(history: History, steps: list[dict[str, Any]], scope: str,
                   engine: Any | None = None) -> dict[str, Any]:
    ids = {s["id"] for s in steps}
    info = engine_info(engine)
    return {
        "format": FORMAT,
        "app": {"name": APP_NAME, "version": __version__},
        "model": {"id": info["id"], "revision": info["revision"]},
        "device": info["device"],
        "dtype": info["dtype"],
        "speed": info["speed"],
        "cpu_threads": info["cpu_threads"],
        "libraries": library_versions(),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scope": scope,
        "current": history.current,
        # Where redo leads from each step, so an import navigates like the original.
        "last_child": {str(k): v for k, v in history.last_child.items() if k in ids and v in ids},
        "steps": steps,
    }


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = 0o644 << 16  # a plain file, readable, never executable or a link
    return info


def write_export(
    history: History,
    read_image: Callable[[str], bytes],
    dest: str | Path | BinaryIO,
    *,
    scope: str = "path",
    engine: Any | None = None,
    extras: bool = True,
) -> dict[str, Any]:
    """Write the ZIP to `dest` (a path, replaced atomically, or a binary file); return the manifest.

    `read_image(node.image)` gives a step's stored PNG bytes. With `extras`, the ZIP also holds an
    animated GIF of the path, a contact sheet of the exported steps and a README.
    """
    nodes = select(history, scope)
    if isinstance(dest, (str, Path)):
        return write_atomic(dest, lambda f: write_export(history, read_image, f, scope=scope, engine=engine,
                                                         extras=extras))

    path_ids = {n.id for n in history.path()}
    frames: dict[int, Image.Image] = {}
    thumbs: dict[int, Image.Image] = {}
    steps = []
    references: dict[str, str] = {}  # reference image name -> sha256
    with zipfile.ZipFile(dest, "w") as zf:
        for node in nodes:
            png = read_image(node.image)
            # PNGs are already compressed: store them as they are (fast, and the bytes stay exact).
            zf.writestr(_zip_info(step_file(node.id)), png, compress_type=zipfile.ZIP_STORED)
            steps.append(manifest_step(node, png))
            for ref in attached_images(node.extra):  # references and masks travel together
                if ref not in references:
                    data = read_image(ref)
                    zf.writestr(_zip_info(reference_file(ref)), data, compress_type=zipfile.ZIP_STORED)
                    references[ref] = hashlib.sha256(data).hexdigest()
            if extras:
                # Keep only small copies, so memory stays bounded on a 200-step tree at 1 MP.
                im = sheets.thumbnail(png, FRAME_SIDE)
                if node.id in path_ids:
                    frames[node.id] = im
                thumbs[node.id] = im
        manifest = build_manifest(history, steps, scope, engine)
        if references:
            manifest["references"] = references
        zf.writestr(_zip_info(MANIFEST), json.dumps(manifest, indent=1, ensure_ascii=False),
                    compress_type=zipfile.ZIP_DEFLATED)
        if extras:
            by_id = {n.id: n for n in nodes}
            zf.writestr(_zip_info(ANIMATION), sheets.animation(
                [(frames[i], sheets.caption(by_id[i])) for i in sorted(frames)], max_side=FRAME_SIDE),
                compress_type=zipfile.ZIP_STORED)
            zf.writestr(_zip_info(CONTACT_SHEET), sheets.contact_sheet(
                [(thumbs[n.id], sheets.caption(n)) for n in nodes], thumb=THUMB_SIDE),
                compress_type=zipfile.ZIP_STORED)
            listing = f"{ANIMATION}           the path, one step per second\n{CONTACT_SHEET}  every exported step\n"
            zf.writestr(_zip_info(README), _README.format(
                scope=scope, count=len(nodes), current=history.current, extras=listing),
                compress_type=zipfile.ZIP_DEFLATED)
    return manifest
