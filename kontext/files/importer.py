"""Read an exported ZIP back, treating it as hostile until every part has been checked.

The ZIP is never extracted: entries are read into memory by the names the manifest gives, each with
a byte cap enforced while decompressing, so no entry name can point a write anywhere. Before any
entry is read, every name, type and declared size in the central directory is checked (traversal,
absolute paths, backslashes, links, encryption, too many entries, zip bombs). Each image must match
its sha256, be an 8-bit RGB PNG of the size the manifest says, and pass `images.open_image`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from PIL import Image

from kontext.core import params as P
from kontext.core.compose import MAX_MORE_REFERENCES
from kontext.core.history import DEFAULT_MAX_NODES, KINDS, History, Node, attached_images, group_first
from kontext.core.images import MAX_FILE_BYTES, MAX_SIDE, MIN_SIDE, open_image
from kontext.core.metadata import APP_NAME, png_info
from kontext.errors import UserError
from kontext.files.export import FORMAT, MANIFEST, SCOPES
from kontext.model.loras import check_records

STEP_NAME_RE = re.compile(r"^steps/[0-9]{1,9}\.png$")
REFERENCE_RE = re.compile(r"^[0-9a-f]{32}\.png$")  # a stored image name, as kontext.files.store makes them
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_ID = 10**9 - 1  # step ids fit the 9 digits STEP_NAME_RE allows, so an export re-imports
MAX_EXTRA_JSON = 4096  # a step's `extra` (speed mode, source name) is small


@dataclass(frozen=True)
class Limits:
    """What an import accepts. The defaults fit a full 200-step history at 2 MP."""

    max_steps: int = DEFAULT_MAX_NODES
    max_zip_bytes: int = 4 * 2**30
    max_total_bytes: int = 4 * 2**30  # all entries, uncompressed
    max_image_bytes: int = MAX_FILE_BYTES
    max_manifest_bytes: int = 8 * 2**20
    max_ratio: int = 100  # PNGs barely compress; JSON ~10x; a bomb ~1000x
    extra_entries: int = 16  # besides one per step: manifest, GIF, sheet, README, folders

    @property
    def max_entries(self) -> int:
        return 5 * self.max_steps + self.extra_entries  # a PNG per step, up to 3 references and a mask each


@dataclass(frozen=True)
class Export:
    """A checked manifest: its steps as Nodes (`image` = the file in the ZIP), in id order."""

    manifest: Mapping[str, Any]
    nodes: tuple[Node, ...]
    sha256: Mapping[int, str]
    current: int
    last_child: Mapping[int, int] = field(default_factory=dict)
    references: Mapping[str, str] = field(default_factory=dict)  # reference image name -> sha256


# --- the ZIP container --------------------------------------------------------------------------
def _check_name(name: str) -> None:
    """Reject names that would point outside a folder if anyone ever extracted this ZIP."""
    shown = name[:80]
    if "\\" in name:
        raise UserError(f"the ZIP entry {shown!r} uses backslashes in its name; exports never do")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UserError(f"the ZIP entry {shown!r} has an absolute path")
    if ".." in name.split("/"):
        raise UserError(f"the ZIP entry {shown!r} points outside its folder ('..')")
    if any(ord(c) < 32 for c in name):
        raise UserError(f"the ZIP entry {shown!r} has control characters in its name")


def check_entries(zf: zipfile.ZipFile, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    """Check the central directory before reading anything; return the entries by name."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise UserError(f"the ZIP has {len(infos)} entries; an export of at most {limits.max_steps} steps "
                         f"has at most {limits.max_entries}")
    entries: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        for name in {info.filename, info.orig_filename}:  # zipfile cuts names at a NUL byte
            _check_name(name)
        name = info.filename
        if name in entries:
            raise UserError(f"the ZIP has two entries named {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError(f"the ZIP entry {name!r} is a symbolic link; exports hold plain files only")
        if info.flag_bits & 0x1:
            raise UserError(f"the ZIP entry {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UserError(f"the ZIP entry {name!r} uses an unsupported compression method "
                             f"({info.compress_type}); exports use stored or deflate")
        cap = limits.max_manifest_bytes if name == MANIFEST else limits.max_image_bytes
        if info.file_size > cap:
            raise UserError(f"the ZIP entry {name!r} would unpack to {info.file_size:,} bytes; "
                             f"the limit is {cap:,}")
        if info.file_size > 2**20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UserError(f"the ZIP entry {name!r} would expand {info.file_size // max(info.compress_size, 1)}"
                             f" times (over {limits.max_ratio}): this looks like a zip bomb")
        total += info.file_size
        entries[name] = info
    if total > limits.max_total_bytes:
        raise UserError(f"the ZIP would unpack to {total:,} bytes; the limit is {limits.max_total_bytes:,}")
    return entries


def _check_directory(source: str | Path | BinaryIO, limits: Limits) -> None:
    """Refuse a ZIP whose central directory is too large before zipfile parses it into memory
    (zipfile builds one object per entry first; millions of tiny entries would cost gigabytes)."""
    f = open(source, "rb") if isinstance(source, (str, Path)) else source
    try:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65557))  # the end record (22 bytes) plus the longest comment
        tail = f.read()
        f.seek(0)
    finally:
        if f is not source:
            f.close()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise UserError("this file is not a readable ZIP export (no end-of-archive record)")
    entries, cd_size = struct.unpack("<HL", tail[at + 10: at + 16])
    # Zip64 archives store 0xFFFF / 0xFFFFFFFF here; an export never needs that many entries or bytes.
    if entries > limits.max_entries or cd_size > limits.max_entries * 4096:
        raise UserError(f"the export lists {entries:,} entries in a {cd_size:,}-byte directory; "
                         f"at most {limits.max_entries} entries are allowed")


class ExportReader:
    """An open export. Use as a context manager; `export` is the checked manifest."""

    def __init__(self, source: str | Path | bytes | BinaryIO, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._read_total = 0
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise UserError(f"export file not found: {path}")
            if path.stat().st_size > self.limits.max_zip_bytes:
                raise UserError(f"the export file is larger than {self.limits.max_zip_bytes:,} bytes")
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) > self.limits.max_zip_bytes:
                raise UserError(f"the export file is larger than {self.limits.max_zip_bytes:,} bytes")
            source = io.BytesIO(bytes(source))
        _check_directory(source, self.limits)
        try:
            self._zf = zipfile.ZipFile(source)
        except Exception as e:  # noqa: BLE001 - BadZipFile, struct errors, bad zip64 records, ...
            raise UserError(f"this file is not a readable ZIP export ({e})") from None
        try:
            self._entries = check_entries(self._zf, self.limits)
            # What an import will store (the disk budget is checked against it before any write).
            self.unpacked_bytes = sum(info.file_size for name, info in self._entries.items()
                                      if name.startswith(("steps/", "references/")))
            self.export = parse_manifest(self._read(MANIFEST, self.limits.max_manifest_bytes), self.limits)
        except BaseException:
            self._zf.close()
            raise

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zf.close()

    def _read(self, name: str, cap: int) -> bytes:
        """Read one entry, never holding more than `cap` bytes of it, whatever its header says."""
        info = self._entries.get(name)
        if info is None:
            raise UserError(f"the export has no {name}" + (" (is this a Kontext Playground export?)"
                                                            if name == MANIFEST else ""))
        try:
            with self._zf.open(info) as f:
                data = f.read(cap + 1)
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as e:
            raise UserError(f"the ZIP entry {name!r} is damaged ({e})") from None
        except Exception as e:  # noqa: BLE001 - zlib.error and friends from a hostile stream
            raise UserError(f"the ZIP entry {name!r} cannot be decompressed ({e})") from None
        if len(data) > cap:
            raise UserError(f"the ZIP entry {name!r} unpacks to more than {cap:,} bytes")
        self._read_total += len(data)
        if self._read_total > self.limits.max_total_bytes:
            raise UserError(f"the ZIP unpacks to more than {self.limits.max_total_bytes:,} bytes")
        return data

    def png(self, node: Node) -> tuple[bytes, Image.Image]:
        """A step's PNG bytes, exactly as exported, and the decoded RGB image, both checked."""
        what = f"step {node.id}"
        if node.image not in self._entries:
            raise UserError(f"{what}: the export has no {node.image}, which the manifest names for it")
        data = self._read(node.image, self.limits.max_image_bytes)
        if hashlib.sha256(data).hexdigest() != self.export.sha256[node.id]:
            raise UserError(f"{what}: {node.image} does not match its sha256 in the manifest "
                             "(the file was changed or damaged)")
        if not data.startswith(PNG_SIGNATURE):
            raise UserError(f"{what}: {node.image} is not a PNG")
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as header:
                mode, size = header.mode, header.size
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
            raise UserError(f"{what}: {node.image} is not a readable PNG ({e})") from None
        if mode != "RGB":
            raise UserError(f"{what}: {node.image} is a {mode} PNG; exports hold 8-bit RGB images")
        if size != (node.width, node.height):
            raise UserError(f"{what}: {node.image} is {size[0]}x{size[1]} but the manifest says "
                             f"{node.width}x{node.height}")
        return data, open_image(data, f"{what} ({node.image})")

    def reference(self, name: str) -> tuple[bytes, Image.Image]:
        """A reference image's PNG bytes and decoded image, checked against the manifest's sha256."""
        entry = f"references/{name}"
        if entry not in self._entries:
            raise UserError(f"the export has no {entry}, which a step names as its reference")
        data = self._read(entry, self.limits.max_image_bytes)
        if hashlib.sha256(data).hexdigest() != self.export.references[name]:
            raise UserError(f"{entry} does not match its sha256 in the manifest (the file was changed or damaged)")
        if not data.startswith(PNG_SIGNATURE):
            raise UserError(f"{entry} is not a PNG")
        return data, open_image(data, entry)


def open_export(source: str | Path | bytes | BinaryIO, limits: Limits | None = None) -> ExportReader:
    """Open and check an export's container and manifest; images are checked as they are read."""
    return ExportReader(source, limits)


# --- the manifest -------------------------------------------------------------------------------
def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # json reads NaN


def _step(i: int, d: object) -> tuple[Node, str]:
    """One manifest step as a Node plus its sha256, or a ValueError naming the step and field."""
    if not isinstance(d, Mapping):
        raise UserError(f"manifest step #{i + 1} is not a JSON object")
    sid = d.get("id")
    where = f"manifest step {sid}" if _int(sid) else f"manifest step #{i + 1}"

    def need(name: str, ok: bool, what: str) -> None:
        if not ok:
            raise UserError(f"{where}: '{name}' must be {what}, got {d.get(name)!r:.60}")

    need("id", _int(sid) and 1 <= sid <= MAX_ID, f"a whole number from 1 to {MAX_ID}")
    need("parent", d.get("parent") is None or _int(d.get("parent")), "a step id or null")
    need("kind", d.get("kind") in KINDS, f"one of {KINDS}")
    need("prompt", isinstance(d.get("prompt"), str) and len(d["prompt"]) <= P.MAX_PROMPT_CHARS,
         f"text of at most {P.MAX_PROMPT_CHARS} characters")
    need("image", isinstance(d.get("image"), str) and bool(STEP_NAME_RE.fullmatch(d["image"])),
         "a file name like steps/0003.png")
    need("sha256", isinstance(d.get("sha256"), str) and bool(SHA_RE.fullmatch(d["sha256"])),
         "64 lowercase hex digits")
    for name in ("width", "height"):
        need(name, _int(d.get(name)) and MIN_SIDE <= d[name] <= MAX_SIDE, f"a whole number from {MIN_SIDE} "
             f"to {MAX_SIDE}")
    for name in ("seconds", "created"):
        need(name, _num(d.get(name, 0)) and d.get(name, 0) >= 0, "a number of at least 0")
    need("model", isinstance(d.get("model", ""), str) and len(d.get("model", "")) <= 300, "text")
    extra = d.get("extra") or {}
    need("extra", isinstance(extra, Mapping) and len(json.dumps(extra)) <= MAX_EXTRA_JSON,
         f"a JSON object of at most {MAX_EXTRA_JSON} bytes")
    generated = d["kind"] != "upload"
    if generated and not d["prompt"].strip():
        raise UserError(f"{where}: a '{d['kind']}' step needs its prompt")
    for name, check in (("seed", P.check_seed), ("guidance", P.check_guidance), ("steps", P.check_steps)):
        v = d.get(name)
        if v is None and not generated:
            continue
        try:
            check(v)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
    if d["kind"] == "edit" and d.get("parent") is None:
        raise UserError(f"{where}: an edit needs a parent step")
    if d["kind"] != "edit" and d.get("parent") is not None:
        raise UserError(f"{where}: a '{d['kind']}' step starts a tree and cannot have a parent")
    try:
        node = Node.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None
    if "loras" in node.extra:  # preset names and strengths only: a file never says where weights come from
        node = replace(node, extra={**node.extra, "loras": check_records(node.extra["loras"], where)})
    if "variations" in node.extra:  # which candidate of a group it is: a replay reruns the group's call
        node = replace(node, extra={**node.extra, "variations": check_variations_record(node, where)})
    return node, d["sha256"]


VARIATION_KEYS = ("size", "index", "first", "batched", "seconds", "note")
MAX_NOTE_CHARS = 300


def check_variations_record(node: Node, where: str) -> dict[str, Any]:
    """A step's record of the group of variations it is one of (kontext.sessions.running: candidate
    `index` of `size`, made from seeds seed - index, ... in one call when `batched`), checked so that a
    replay can run that call again; anything else is refused in words."""
    v = node.extra["variations"]
    if not isinstance(v, Mapping):
        raise UserError(f"{where}: 'variations' must be an object with size, index, first and batched, "
                        f"got {str(v)[:60]}")
    unknown = sorted(set(v) - set(VARIATION_KEYS))
    if unknown:
        raise UserError(f"{where}: a variations record holds {', '.join(VARIATION_KEYS)} only, "
                        f"not {unknown[0][:40]!r}")
    if node.kind == "upload":
        raise UserError(f"{where}: an uploaded picture is not one of a group of variations")

    def need(name: str, ok: bool, what: str) -> None:
        if not ok:
            raise UserError(f"{where}: its variations' {name!r} must be {what}, got {v.get(name)!r:.40}")

    size, index = v.get("size"), v.get("index")
    need("size", _int(size) and 2 <= size <= P.MAX_VARIATIONS, f"a whole number from 2 to {P.MAX_VARIATIONS}")
    need("index", _int(index) and 0 <= index < size, f"a whole number from 0 to {size - 1}")
    need("first", _int(v.get("first")) and 1 <= v["first"] <= MAX_ID, "a step id")
    need("batched", isinstance(v.get("batched"), bool), "true or false")
    need("seconds", _num(v.get("seconds", 0)) and v.get("seconds", 0) >= 0, "a number of at least 0")
    need("note", isinstance(v.get("note", ""), str) and len(v.get("note", "")) <= MAX_NOTE_CHARS,
         f"text of at most {MAX_NOTE_CHARS} characters")
    start = node.seed - index  # the generated step's seed was checked to be one
    if start < 0 or start + size - 1 > P.MAX_SEED:
        raise UserError(f"{where}: as candidate {index} of {size} its seed {node.seed} puts the group's seeds "
                        f"outside 0 to {P.MAX_SEED}")
    return {k: v[k] for k in VARIATION_KEYS if k in v}


def _check_groups(nodes: dict[int, Node]) -> dict[int, Node]:
    """The candidates of each group of variations (siblings with the same `first`) must agree on the
    call that made them (size, batched, seeds) and be different candidates of it. A group's `first`
    that the export does not hold (a path export holds the one candidate picked) becomes its earliest
    candidate here, so the record names a step of the history it lands in (and is renumbered with it)."""
    groups: dict[tuple[int | None, int], list[Node]] = {}
    for n in nodes.values():
        first = group_first(n)
        if first is not None:
            groups.setdefault((n.parent, first), []).append(n)
    out = dict(nodes)
    for (_, first), members in groups.items():
        a = members[0]
        va = a.extra["variations"]
        for b in members[1:]:
            vb = b.extra["variations"]
            if (vb["size"], vb["batched"], b.seed - vb["index"]) != (va["size"], va["batched"], a.seed - va["index"]):
                raise UserError(f"manifest steps {a.id} and {b.id} name the same group of variations but "
                                "disagree on its size, seeds or how it was made")
        taken: dict[int, int] = {}
        for m in members:
            i = m.extra["variations"]["index"]
            if i in taken:
                raise UserError(f"manifest steps {taken[i]} and {m.id} both claim to be candidate {i} of one group "
                                "of variations")
            taken[i] = m.id
        if first in nodes and first not in {m.id for m in members}:
            raise UserError(f"manifest step {a.id}: the first step of its group of variations, {first}, is not "
                            "one of its candidates")
        if first not in nodes:
            earliest = min(m.id for m in members)
            for m in members:
                out[m.id] = replace(m, extra={**m.extra, "variations": {**m.extra["variations"], "first": earliest}})
    return out


def renumbered_extra(extra: Mapping[str, Any], ids: Mapping[int, int]) -> dict[str, Any]:
    """A step's extra with the step ids it names (a group of variations' first) as renumbered."""
    v = extra.get("variations")
    if not isinstance(v, Mapping) or v.get("first") not in ids:
        return dict(extra)
    return {**extra, "variations": {**v, "first": ids[v["first"]]}}


def parse_manifest(raw: bytes, limits: Limits) -> Export:
    """Check manifest.json field by field and that its steps form trees; return them as Nodes."""
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"manifest.json is not valid JSON ({e})") from None
    except RecursionError:
        raise UserError("manifest.json is nested too deeply") from None
    if not isinstance(m, dict):
        raise UserError("manifest.json must hold a JSON object")
    app = m.get("app")
    if not isinstance(app, Mapping) or app.get("name") != APP_NAME:
        raise UserError(f"manifest.json is not from {APP_NAME} (its 'app.name' is missing or different)")
    if m.get("format") != FORMAT:
        raise UserError(f"manifest.json has format {m.get('format')!r}; this version reads format {FORMAT}")
    if m.get("scope", "path") not in SCOPES:
        raise UserError(f"manifest.json 'scope' must be one of {SCOPES}")
    raw_steps = m.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise UserError("manifest.json 'steps' must be a non-empty list")
    if len(raw_steps) > limits.max_steps:
        raise UserError(f"the export has {len(raw_steps)} steps; a session holds at most {limits.max_steps}")
    nodes, shas = _steps(raw_steps)
    nodes = _check_groups(nodes)
    current = m.get("current")
    if not _int(current) or current not in nodes:
        raise UserError(f"manifest.json 'current' must name one of its steps, got {current!r:.40}")
    last: dict[int, int] = {}
    raw_last = m.get("last_child") or {}
    if not isinstance(raw_last, Mapping):
        raise UserError("manifest.json 'last_child' must be a JSON object")
    for k, v in raw_last.items():  # only a hint for redo: keep the consistent pairs, drop the rest
        if isinstance(k, str) and k.isdigit() and _int(v) and nodes.get(v) and nodes[v].parent == int(k):
            last[int(k)] = v
    refs = m.get("references") or {}
    if not isinstance(refs, Mapping) or len(refs) > limits.max_steps:
        raise UserError(f"manifest.json 'references' must be a JSON object of at most {limits.max_steps} images")
    for name, sha in refs.items():
        good_name = isinstance(name, str) and REFERENCE_RE.fullmatch(name)
        if not (good_name and isinstance(sha, str) and SHA_RE.fullmatch(sha)):
            raise UserError(f"manifest.json 'references' has a bad entry {name!r:.60}")
    for n in nodes.values():
        _check_attached(n, refs)
    used = {name for n in nodes.values() for name in attached_images(n.extra)}
    refs = {name: sha for name, sha in refs.items() if name in used}  # store only what a step uses
    return Export(manifest=m, nodes=tuple(sorted(nodes.values(), key=lambda n: n.id)), sha256=shas,
                  current=current, last_child=last, references=dict(refs))


def _steps(raw_steps: list) -> tuple[dict[int, Node], dict[int, str]]:
    """Each listed step as a Node (with its PNG's sha256), checked to form trees: unique ids and
    images, parents that exist and come first (so there are no cycles)."""
    nodes: dict[int, Node] = {}
    shas: dict[int, str] = {}
    files: set[str] = set()
    for i, d in enumerate(raw_steps):
        node, sha = _step(i, d)
        if node.id in nodes:
            raise UserError(f"manifest.json lists step {node.id} twice")
        if node.image in files:
            raise UserError(f"manifest.json names {node.image} for two steps")
        nodes[node.id], shas[node.id] = node, sha
        files.add(node.image)
    for n in nodes.values():  # parents exist and come first: no cycles, so the steps form trees
        if n.parent is not None and n.parent not in nodes:
            raise UserError(f"manifest step {n.id}: its parent {n.parent} is not in the export")
        if n.parent is not None and n.parent >= n.id:
            raise UserError(f"manifest step {n.id}: its parent {n.parent} must be an earlier step")
    return nodes, shas


def _check_attached(n: Node, refs: Mapping) -> None:
    """A step's references and mask: names of images the export lists, on edits only."""
    more = n.extra.get("more_references")
    if more is not None and (not isinstance(more, list) or len(more) > MAX_MORE_REFERENCES
                             or "reference" not in n.extra):
        raise UserError(f"manifest step {n.id}: 'more_references' must be a list of at most "
                        f"{MAX_MORE_REFERENCES} images beside a first reference")
    for what, word in (("reference", "reference image"), ("mask", "mask")):
        if what in n.extra and not isinstance(n.extra[what], str):
            raise UserError(f"manifest step {n.id}: its {word} must be an image name")
    named = [("reference image", n.extra.get("reference")), *(("reference image", r) for r in more or ()),
             ("mask", n.extra.get("mask"))]
    for word, ref in named:
        if ref is None:
            continue
        if not isinstance(ref, str) or ref not in refs:
            raise UserError(f"manifest step {n.id}: its {word} {ref!r:.60} is not in 'references'")
        if n.kind != "edit":
            raise UserError(f"manifest step {n.id}: only an edit can have a {word}")


# --- merging into a session ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ImportResult:
    history: History  # the committed history, current = the export's current step
    ids: Mapping[int, int]  # original step id -> id in the session

    @property
    def renumbered(self) -> bool:
        return any(k != v for k, v in self.ids.items())

    @property
    def message(self) -> str:
        n = len(self.ids)
        text = f"imported {n} step{'s' * (n != 1)}"
        if self.renumbered:
            lo, hi = min(self.ids.values()), max(self.ids.values())
            text += (f", renumbered as steps {lo}-{hi} because the session already had steps "
                     f"(the export's step {min(self.ids)} is now step {self.ids[min(self.ids)]})")
        return text


def plan_ids(export: Export, history: History) -> dict[int, int]:
    """Original id -> id in the session: kept into an empty session, else numbered after its steps."""
    if history.empty:
        return {n.id: n.id for n in export.nodes}
    start = history.next_id()
    if start + len(export.nodes) - 1 > MAX_ID:
        raise UserError(f"this session's step numbers would pass {MAX_ID:,}: import the export into a new session")
    # In id order, so every parent still comes before its children.
    return {n.id: start + i for i, n in enumerate(export.nodes)}


def check_room(history: History, export: Export) -> None:
    if len(history) + len(export.nodes) > history.max_nodes:
        raise UserError(f"the export has {len(export.nodes)} steps but this session has room for "
                         f"{history.max_nodes - len(history)} more (at most {history.max_nodes}); "
                         "import it into a new session")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG (already validated by decoding it)."""
    out, pos = [], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if pos + 12 + length > len(data):
            raise UserError("a PNG chunk runs past the end of the file")
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def renumbered_png(data: bytes, node: Node, ids: Mapping[int, int]) -> bytes:
    """The same PNG with text chunks naming the step's new id and parent.

    Only the text chunks are swapped; the pixel data (IDAT) is copied byte for byte, so the image is
    exactly the same, and nothing is re-encoded (that costs ~0.3 s per 1 MP image).
    """
    step = replace(node, id=ids[node.id], parent=None if node.parent is None else ids[node.parent],
                   extra=renumbered_extra(node.extra, ids)).to_dict()
    step.pop("image")
    with Image.open(io.BytesIO(data)) as im:  # text before the pixels is read without decoding them
        try:
            old = json.loads(im.info.get("kontext") or "{}")
        except json.JSONDecodeError:
            old = {}
    if isinstance(old, Mapping) and isinstance(old.get("revision"), str):
        step["revision"] = old["revision"]  # which weights made it: only the PNG records that per step
    ours = {b"parameters", b"kontext", b"XML:com.adobe.xmp"}
    fresh = [_png_chunk(kind, body) for kind, body, *_ in png_info(step).chunks]
    out = [PNG_SIGNATURE]
    for kind, body in _png_chunks(data):
        if kind in (b"tEXt", b"iTXt", b"zTXt") and body.split(b"\0", 1)[0] in ours:
            continue  # the old step's text
        if kind == b"IDAT" and fresh:
            out += fresh  # text before the pixels, where Pillow puts it too
            fresh = []
        out.append(_png_chunk(kind, body))
    return b"".join(out)


def merge(history: History, export: Export, ids: Mapping[int, int], images: Mapping[int, str],
          references: Mapping[str, str] | None = None) -> History:
    """`history` plus the export's steps (renamed by `ids`, stored as `images`, their reference images
    stored as `references`: export name -> stored name), the import current."""
    check_room(history, export)
    added = {}
    for n in export.nodes:
        parent = None if n.parent is None else ids[n.parent]
        extra = {k: v for k, v in renumbered_extra(n.extra, ids).items()
                 if k not in ("example", "cached")}  # the server's own marks
        stored = references or {}  # parse_manifest checked that every name is in it
        for k in ("reference", "mask"):
            if extra.get(k) is not None:
                extra[k] = stored[extra[k]]
        if extra.get("more_references"):
            extra["more_references"] = [stored[r] for r in extra["more_references"]]
        added[ids[n.id]] = replace(n, id=ids[n.id], parent=parent, image=images[n.id], extra=extra)
    if set(added) & set(history.nodes):
        raise UserError("the imported step ids collide with the session's; try the import again")
    last = dict(history.last_child)
    last.update({ids[k]: ids[v] for k, v in export.last_child.items()})
    new = replace(history, nodes=MappingProxyType({**history.nodes, **added}), current=ids[export.current],
                  last_child=MappingProxyType(last), version=history.version + 1)
    # The same checks a stored history gets on load: a well-formed forest within the step limit.
    return History.from_dict(new.to_dict(), max_nodes=history.max_nodes)
