"""A session's own files besides its steps: uploaded pictures that start a tree, reference images
and painted masks, each checked like any upload and stored once."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from typing import Any

from PIL import Image

from kontext.core import metadata
from kontext.core.history import History, Node
from kontext.core.images import open_image, source_name
from kontext.core.masks import check_mask
from kontext.errors import UserError
from kontext.sessions.keeper import Keeper, step_dict


class Uploads(Keeper):
    def upload(self, key: str, source: Any, name: str = "", example: str | None = None) -> History:
        """Start a new tree from an uploaded image (path, bytes or PIL). Earlier trees stay.

        The step is named after the file (`name`, a client's file name: only its last part is kept),
        or "original" without one."""
        img = open_image(source, "image")
        w, h = img.size
        name = source_name(name)
        extra: dict[str, Any] = {"source": name} if name else {}
        if example:
            extra["example"] = example  # this tree's fixed-seed turns may come from the result cache
        node = Node(id=0, parent=None, kind="upload", image="", width=w, height=h,
                    prompt=name or "original", extra=extra)
        # Encode outside the lock (seconds at 40 MP) with the id the step will most likely get.
        node = replace(node, id=self.history(key).next_id())
        png = metadata.png_bytes(img, step_dict(node))
        self.make_room(key, len(png))
        with self._lock(key):
            old = self._load(key)
            old.check_room()
            if old.next_id() != node.id:
                node = replace(node, id=old.next_id())
                png = metadata.png_bytes(img, step_dict(node))
            stored = replace(node, image=self.store.save_image(key, png))
            return self._commit(key, old.add(stored, parent=None))

    def add_reference(self, key: str, source: Any) -> str:
        """Store a reference image (style, character, object) for later edits; return its name.

        It is scaled down to the model's largest side (the pair never uses more) and stored once per
        session: adding the same picture again returns the same name.
        """
        img = open_image(source, "reference")
        side = self.engine.profile.max_side
        if max(img.size) > side:
            img.thumbnail((side, side), Image.LANCZOS)
        png = metadata.png_bytes(img, {"kind": "upload", "prompt": "reference image"})
        digest = hashlib.sha256(png).hexdigest()
        self.make_room(key, len(png))
        with self._lock(key):
            known = self._references.get((key, digest))
            if known and self.store.image_path(key, known).is_file():
                return known
            name = self.store.save_image(key, png)
            self._references.put((key, digest), name)  # only a shortcut: the files stay
            return name

    def add_mask(self, key: str, source: Any) -> str:
        """Store a mask (a picture: its alpha if it has one, else non-black means "may change") for
        later masked edits; return its name. Kept exactly as given, so replays use the same pixels."""
        if isinstance(source, Image.Image):
            img = source
        else:
            img = open_image(source, "mask")  # every check an upload gets (format, size, bombs)
            raw_src = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(raw_src) as raw:  # open_image flattens alpha: a painted layer is its alpha
                if raw.mode in ("RGBA", "LA", "PA") or "transparency" in raw.info:
                    img = raw.convert("RGBA")
        m = check_mask(img, img.size)
        png = metadata.png_bytes(m.convert("RGB"), {"kind": "upload", "prompt": "mask"})
        self.make_room(key, len(png))
        with self._lock(key):
            return self.store.save_image(key, png)

    def mask_image(self, key: str, name: str) -> Image.Image:
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the mask is no longer stored: paint it again") from None
        return Image.open(io.BytesIO(data)).convert("L")

    def reference_image(self, key: str, name: str) -> Image.Image:
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the reference image is no longer stored (unused references are removed "
                             "after an hour, and start over removes all): add it again") from None
        return Image.open(io.BytesIO(data)).convert("RGB")
