"""Sharing and moving a session's steps: read-only share links, export to a ZIP, import of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from kontext.core import metadata
from kontext.core.history import History
from kontext.core.images import decode_image
from kontext.core.masks import check_mask, painted
from kontext.errors import UnknownShare, UserError
from kontext.files.export import write_export
from kontext.files.importer import (
    ExportReader,
    ImportResult,
    Limits,
    check_room,
    merge,
    open_export,
    plan_ids,
    renumbered_png,
)
from kontext.files.sharing import Share, nameless_view
from kontext.files.store import check_key
from kontext.model.safety import enforce
from kontext.sessions.keeper import Keeper, SessionRemoved
from kontext.sessions.live import Change


class Transfer(Keeper):
    def share(self, key: str, names: bool = False, address: str | None = None, live: bool = False) -> Share:
        """A read-only link to the tree of the current step (the same link if it is shared already).
        `names`: whether it shows the uploads' file names; `address`: the client's (a cap per address);
        `live`: its viewers follow the owner's steps as they happen (else it is frozen: each look
        shows the tree as it is then)."""
        h = self.history(key)
        if h.current is None:
            raise UserError("nothing to share yet: upload or make a picture first")
        root = h.path()[0]
        before = set(self.shares.of(key))
        link = self.shares.share(key, root.id, root.image, alive=self.store.exists, names=names, address=address,
                                 live=live)
        if link not in before:  # a link made frozen stops its live viewers; the same link again wakes none
            self.changes.publish(key, Change("links"))
        return link

    def unshare(self, key: str) -> int:
        """Revoke every share link of this session; return how many there were."""
        check_key(key)
        n = self.shares.revoke(key)
        self.changes.publish(key, Change("links"))  # live viewers learn at once that the link ended
        return n

    def shared(self, token: object, current: int | None = None) -> tuple[Share, History]:
        """What a share link shows: its tree as a read-only History, at `current` (a step the viewer
        chose, if it is in the tree) or else at the owner's step in it or the tree's latest tip."""
        share = self.shares.resolve(token)
        try:
            h = self.history(share.key)
        except SessionRemoved:
            raise UnknownShare("this share link shows nothing any more: its session expired") from None
        root = h.nodes.get(share.root)
        if root is None or root.parent is not None or root.image != share.image:
            raise UnknownShare("this share link shows nothing any more: its owner deleted that picture's "
                               "steps (or the session expired)")
        view = h.subtree(share.root, h.current) if current is None else h.subtree(share.root, current)
        return share, (view if share.names else nameless_view(self.store, share.key, view))

    def export(self, key: str, dest: str | Path | BinaryIO, *, scope: str = "path",
               extras: bool = True, history: History | None = None) -> dict[str, Any]:
        """Write a ZIP of the path ("path"), the current tree ("tree") or every tree ("all") to
        `dest`; return its manifest. `extras` adds an animated GIF, a contact sheet and a README.
        `history`: export this view of the session (a shared tree, as checked) instead of reading it."""
        h = self.history(key) if history is None else history
        # The ZIP carries the compressed PNGs (smaller, and the same bytes a later export gets): the
        # turns just answered may still be stored uncompressed (kontext/files/compactor.py). Only this
        # history's pictures are waited for, not other sessions' turns.
        self.compactor.wait_for(n.image for n in h.nodes.values())
        return write_export(h, lambda name: self.store.read_image_bytes(key, name), dest, scope=scope,
                            engine=self.engine, extras=extras)

    def import_zip(self, key: str, source: str | Path | bytes | BinaryIO,
                   limits: Limits | None = None) -> ImportResult:
        """Add an exported ZIP's steps to the session as new trees; into an empty session the
        original step ids are kept, otherwise they are renumbered (the result says how).

        Everything is checked; a bad export raises ValueError and changes nothing. Images are
        written outside the lock (like an edit's), then the history is committed once.
        """
        snapshot = self.history(key)
        # An export bigger than a session's share of the disk could not be stored here anyway (its
        # pictures barely compress), so it is refused before it is opened.
        limits = limits or Limits(max_steps=snapshot.max_nodes, max_zip_bytes=self.store.max_session_bytes)
        names: dict[int, str] = {}  # original id -> stored image, to remove if anything fails
        refs: dict[str, str] = {}  # the export's reference image name -> stored name
        try:
            with open_export(source, limits) as reader:
                check_room(snapshot, reader.export)
                # The pictures as they unpack count against the session's share, whatever the ZIP's size.
                self.make_room(key, reader.unpacked_bytes, "the export's pictures")
                ids = plan_ids(reader.export, snapshot)
                masks = {n.extra["mask"] for n in reader.export.nodes if isinstance(n.extra.get("mask"), str)}
                for name in reader.export.references:
                    data, _ = reader.reference(name)
                    if name in masks:  # the one mask rule (kontext.core.masks.RULE), stored 0/255 like the app's
                        raw = decode_image(data, f"references/{name}")  # its alpha kept: the rule reads it
                        m = check_mask(painted(raw), raw.size)
                        data = metadata.png_bytes(m.convert("RGB"), {"kind": "upload", "prompt": "mask"})
                    refs[name] = self.store.save_image(key, data)
                self._store_import(key, reader, ids, names)
                with self._lock(key):
                    latest = self._load(key)
                    if plan_ids(reader.export, latest) != ids:
                        # A turn landed meanwhile: renumber after it (rare, so done under the lock).
                        self.store.discard_images(key, names.values())
                        names.clear()
                        ids = plan_ids(reader.export, latest)
                        self._store_import(key, reader, ids, names)
                    committed = self._commit(key, merge(latest, reader.export, ids, names, refs))
                    names.clear()  # committed: from here on these images belong to the history
                    refs.clear()
        except BaseException:
            # Under the lock: edits save their images under it, so removing the (then empty)
            # session folder cannot race with one.
            with self._lock(key):
                self.store.discard_images(key, [*names.values(), *refs.values()])
            raise
        return ImportResult(committed, ids)

    def _store_import(self, key: str, reader: ExportReader, ids: dict[int, int], names: dict[int, str]) -> None:
        """Check and store every image of the export, recording each stored name in `names`."""
        for node in reader.export.nodes:
            data, image = reader.png(node)
            if node.kind != "upload":  # a host's content check sees imported steps too: words, then picture
                enforce(self.safety, node.prompt, None)
                enforce(self.safety, node.prompt, None, image)
            if ids[node.id] != node.id:
                data = renumbered_png(data, node, ids)
            names[node.id] = self.store.save_image(key, data)
