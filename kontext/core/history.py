"""The edit history of one session: a tree of steps, as immutable values.

Pure Python (no torch, no gradio). Every operation returns a new `History` and leaves the old one
untouched, so a failed or cancelled edit, which simply never commits its new value, changes nothing.
A session may hold several trees (a new upload starts a new root); no operation ever deletes a branch.
Redo follows `last_child`: the child the user most recently came from or went to.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from kontext.errors import UserError

DEFAULT_MAX_NODES = 200
KINDS = ("upload", "text", "edit")


@dataclass(frozen=True)
class Node:
    """One step: the image it produced and how it was made."""

    id: int
    parent: int | None
    kind: str  # "upload" (a source image), "text" (text-to-image) or "edit"
    image: str  # reference to the stored image (a file name in the session's store)
    prompt: str = ""
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None
    width: int = 0
    height: int = 0
    model: str = ""
    seconds: float = 0.0  # wall time of the edit
    created: float = 0.0  # unix time
    extra: Mapping[str, Any] = field(default_factory=dict)  # speed mode, source file name, ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "parent": self.parent, "kind": self.kind, "image": self.image,
            "prompt": self.prompt, "seed": self.seed, "guidance": self.guidance, "steps": self.steps,
            "width": self.width, "height": self.height, "model": self.model,
            "seconds": self.seconds, "created": self.created, "extra": dict(self.extra),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Node:
        kind = d.get("kind")
        if kind not in KINDS:
            raise UserError(f"node kind must be one of {KINDS}, got {kind!r}")
        return Node(
            id=int(d["id"]), parent=None if d.get("parent") is None else int(d["parent"]),
            kind=kind, image=str(d["image"]), prompt=str(d.get("prompt", "")),
            seed=None if d.get("seed") is None else int(d["seed"]),
            guidance=None if d.get("guidance") is None else float(d["guidance"]),
            steps=None if d.get("steps") is None else int(d["steps"]),
            width=int(d.get("width", 0)), height=int(d.get("height", 0)), model=str(d.get("model", "")),
            seconds=float(d.get("seconds", 0.0)), created=float(d.get("created", 0.0)),
            extra=dict(d.get("extra") or {}),
        )


def attached_images(extra: Mapping[str, Any]) -> list[str]:
    """The stored images a step was made with besides its parent: its references (the first under
    "reference", more under "more_references") and its mask. Exports, imports, replays and the
    store's clean-up all go by this one list."""
    names = [extra.get("reference"), *(extra.get("more_references") or ()), extra.get("mask")]
    return [n for n in names if isinstance(n, str)]


def group_first(node: Node) -> int | None:
    """The id of the first candidate of the variations group `node` belongs to (None: no group)."""
    v = node.extra.get("variations")
    first = v.get("first") if isinstance(v, Mapping) else None
    return first if isinstance(first, int) and not isinstance(first, bool) else None


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(d)


@dataclass(frozen=True, eq=False)
class History:
    """A forest of steps plus the current position. Build one with `History()`."""

    nodes: Mapping[int, Node] = field(default_factory=lambda: _frozen({}))
    current: int | None = None
    last_child: Mapping[int, int] = field(default_factory=lambda: _frozen({}))
    max_nodes: int = DEFAULT_MAX_NODES
    version: int = 0  # bumped by every change; lets callers detect concurrent updates

    # --- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def empty(self) -> bool:
        return not self.nodes

    @property
    def current_node(self) -> Node | None:
        return None if self.current is None else self.nodes[self.current]

    def node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise UserError(f"step {node_id} does not exist in this history") from None

    def children(self, node_id: int | None) -> list[Node]:
        """Children of a node in creation order; `None` lists the roots."""
        return sorted((n for n in self.nodes.values() if n.parent == node_id), key=lambda n: n.id)

    def roots(self) -> list[Node]:
        return self.children(None)

    def path(self, node_id: int | None = None) -> list[Node]:
        """Nodes from the root to `node_id` (default: the current node), root first."""
        nid = self.current if node_id is None else node_id
        out: list[Node] = []
        while nid is not None:
            n = self.node(nid)
            out.append(n)
            nid = n.parent
        return out[::-1]

    def tip(self, node_id: int) -> int:
        """Follow redo from `node_id` down to the end of its most recent branch."""
        nid = node_id
        while nid in self.last_child:
            nid = self.last_child[nid]
        return nid

    def siblings(self, node_id: int | None = None) -> list[Node]:
        """The node and its siblings (its parent's children), in creation order."""
        nid = self.current if node_id is None else node_id
        if nid is None:
            return []
        return self.children(self.node(nid).parent)

    def group(self, node_id: int | None = None) -> list[Node]:
        """The candidates made by one instruction with variations (kontext.sessions.running), in
        their order, that `node_id` (default: the current step) is one of; [] for a single step."""
        nid = self.current if node_id is None else node_id
        if nid is None:
            return []
        first = group_first(self.node(nid))
        if first is None:
            return []
        return sorted((n for n in self.siblings(nid) if group_first(n) == first),
                      key=lambda n: n.extra["variations"].get("index", 0))

    @property
    def can_undo(self) -> bool:
        return self.current is not None and self.nodes[self.current].parent is not None

    @property
    def can_redo(self) -> bool:
        return self.current is not None and self.current in self.last_child

    # --- operations (each returns a new History) ---------------------------------------------
    def next_id(self) -> int:
        """The id the next added step will get."""
        return max(self.nodes, default=0) + 1

    def check_room(self, more: int = 1) -> None:
        """Raise the plain "history is full" error if `more` steps would exceed the bound."""
        if len(self.nodes) + more > self.max_nodes:
            room = f"; {self.max_nodes - len(self.nodes)} more fit: ask for fewer variations" if more > 1 else ""
            raise UserError(
                f"history is full: at most {self.max_nodes} steps per session{room}; "
                "export it and start a new session to go on"
            )

    def _with(self, **changes: Any) -> History:
        return replace(self, version=self.version + 1, **changes)

    def add(self, node: Node, parent: int | None | type[...] = ...) -> History:
        """Add `node` as a child of `parent` (default: the current node) and make it current.

        `node.id` and `node.parent` are filled in here; pass `parent=None` to start a new tree.
        Adding to a node that already has children starts a new branch; nothing is removed.
        """
        self.check_room()
        parent_id = self.current if parent is ... else parent
        if parent_id is not None:
            self.node(parent_id)  # raises if it does not exist
        if node.kind == "edit" and parent_id is None:
            raise UserError("an edit needs a parent step; start from an image or a text prompt first")
        new = replace(node, id=self.next_id(), parent=parent_id, created=node.created or time.time())
        nodes = dict(self.nodes)
        nodes[new.id] = new
        last = dict(self.last_child)
        if parent_id is not None:
            last[parent_id] = new.id
        return self._with(nodes=_frozen(nodes), current=new.id, last_child=_frozen(last))

    def undo(self) -> History:
        """Go to the parent of the current step; at a root (or when empty) nothing changes."""
        if not self.can_undo:
            return self
        cur = self.nodes[self.current]
        last = dict(self.last_child)
        last[cur.parent] = cur.id  # so redo comes back down this branch
        return self._with(current=cur.parent, last_child=_frozen(last))

    def redo(self) -> History:
        """Go down the branch the user last came from; at a leaf nothing changes."""
        if not self.can_redo:
            return self
        return self._with(current=self.last_child[self.current])

    def jump(self, node_id: int) -> History:
        """Make any step current. Redo from its ancestors then leads back to it."""
        path = self.path(node_id)  # raises if it does not exist
        last = dict(self.last_child)
        for a, b in zip(path, path[1:], strict=False):
            last[a.id] = b.id
        return self._with(current=node_id, last_child=_frozen(last))

    def subtree(self, root: int, current: int | None = None) -> History:
        """Only the tree under `root` (a read-only view of it): its steps, redo links, and as
        current `current` if it is in the tree, else the tip of the tree's most recent branch."""
        keep: dict[int, Node] = {}
        todo = [self.node(root)]
        while todo:
            n = todo.pop()
            keep[n.id] = n
            todo.extend(self.children(n.id))
        last = {a: b for a, b in self.last_child.items() if a in keep}
        view = replace(self, nodes=_frozen(keep), last_child=_frozen(last), current=root)
        return replace(view, current=current if current in keep else view.tip(root))

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "current": self.current,
            "max_nodes": self.max_nodes,
            "version": self.version,
            "last_child": {str(k): v for k, v in self.last_child.items()},
            "nodes": [n.to_dict() for n in sorted(self.nodes.values(), key=lambda n: n.id)],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any], max_nodes: int | None = None) -> History:
        """Rebuild a history, checking that it is a well-formed tree (for imports and stored files)."""
        if not isinstance(d, Mapping) or d.get("format") != 1:
            raise UserError("history must be a mapping with format 1")
        raw = d.get("nodes")
        if not isinstance(raw, list):
            raise UserError("history 'nodes' must be a list")
        nodes: dict[int, Node] = {}
        for item in raw:
            if not isinstance(item, Mapping):
                raise UserError("each history node must be a mapping")
            try:
                n = Node.from_dict(item)
            except (KeyError, TypeError) as e:
                raise UserError(f"history node is missing or has a bad field: {e}") from None
            if n.id in nodes:
                raise UserError(f"history has step {n.id} twice")
            nodes[n.id] = n
        limit = max_nodes or int(d.get("max_nodes") or DEFAULT_MAX_NODES)
        if len(nodes) > limit:
            raise UserError(f"history has {len(nodes)} steps; the limit is {limit}")
        for n in nodes.values():
            if n.parent is not None and n.parent not in nodes:
                raise UserError(f"step {n.id} names a parent {n.parent} that does not exist")
            if n.parent is not None and n.parent >= n.id:
                raise UserError(f"step {n.id} must come after its parent {n.parent}")
        current = d.get("current")
        if current is not None and current not in nodes:
            raise UserError(f"current step {current} does not exist")
        if current is None and nodes:
            raise UserError("a non-empty history needs a current step")
        last: dict[int, int] = {}
        for k, v in (d.get("last_child") or {}).items():
            k, v = int(k), int(v)
            if k in nodes and v in nodes and nodes[v].parent == k:
                last[k] = v
        return History(
            nodes=_frozen(nodes), current=current, last_child=_frozen(last),
            max_nodes=limit, version=int(d.get("version") or 0),
        )
