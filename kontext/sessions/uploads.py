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
from kontext.core.masks import read_mask
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
        self.make_room(key, len(png), "the uploaded picture")
        with self._lock(key):
            old = self._load(key)
            old.check_room()
            if old.next_id() != node.id:
                node = replace(node, id=old.next_id())
                png = metadata.png_bytes(img, step_dict(node))
            stored = replace(node, image=self.store.save_image(key, png))
            committed = self._commit(key, old.add(stored, parent=None))
        self.keep_picture(key, stored.image, img)  # the first edit starts from it without decoding
        return committed

    def add_reference(self, key: str, source: Any) -> str:
        """Store a reference image (style, character, object) for later edits; return its name.

        It is scaled down to the model's largest side (the pair never uses more) and stored once per
        session: adding the same picture again returns the same name.
        """
        img = open_image(source, "reference", fit=self.engine.profile.max_side)  # a JPEG: decoded scaled
        png = metadata.png_bytes(img, {"kind": "upload", "prompt": "reference image"})
        digest = hashlib.sha256(png).hexdigest()
        self.make_room(key, len(png), "the reference image")
        with self._lock(key):
            known = self._references.get((key, digest))
            if known and self.store.image_path(key, known).is_file():
                return known
            name = self.store.save_image(key, png)
            self._references.put((key, digest), name)  # only a shortcut: the files stay
            return name

    def add_mask(self, key: str, source: Any, *, step: int | None = None) -> str:
        """Store a mask painted on step `step`'s picture (default: the current step) for later masked
        edits; return its name. `source`: one painted layer or a list of them (a path, bytes or a
        picture each), read by the one mask rule (kontext.core.masks.RULE) and required to have the
        picture's size. It is kept as 0/255 with the step it was painted on, so that it is used only
        on that picture and the steps made from it."""
        h = self.history(key)
        step = h.current if step is None else step
        if step is None:
            raise UserError("a mask is painted on a picture: upload one first")
        node = h.node(step)
        layers = list(source) if isinstance(source, (list, tuple)) else [source]
        m = read_mask(layers, (node.width, node.height))
        png = metadata.png_bytes(m.convert("RGB"), {"kind": "upload", "prompt": "mask", "painted_on": step})
        self.make_room(key, len(png), "the mask")
        with self._lock(key):
            return self.store.save_image(key, png)

    def mask_image(self, key: str, name: str) -> Image.Image:
        return self.stored_mask(key, name)[0]

    def stored_mask(self, key: str, name: str) -> tuple[Image.Image, int | None]:
        """A stored mask (0/255 L) and the step it was painted on (None: not recorded, as in imports)."""
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the mask is no longer stored: paint it again") from None
        step = (metadata.read_metadata(data).get("step") or {}).get("painted_on")
        return Image.open(io.BytesIO(data)).convert("L"), step if isinstance(step, int) else None

    def reference_image(self, key: str, name: str) -> Image.Image:
        try:
            data = self.store.read_image_bytes(key, name)
        except FileNotFoundError:
            raise UserError("the reference image is no longer stored (unused references are removed "
                             "after an hour, and start over removes all): add it again") from None
        return Image.open(io.BytesIO(data)).convert("RGB")
