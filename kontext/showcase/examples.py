"""Example pictures with an instruction each, example chains (recipes of turns), and the cache of
their results.

The catalog is data: a TOML file (assets/examples/examples.toml ships with the app; a Space owner
may point the branding file at another one). Each example pairs a picture with an instruction
showing one of Kontext's strengths and a seed; each chain runs 3-5 instructions in turn on one
picture with one seed. Both use fixed seeds, so on a given model their results are the same every
time: `ResultCache` keeps them after their first run (never at start-up), and the next visitor who
runs the same turn gets it at once. Only the catalog's own instructions, with a fixed seed, in a tree
that started from an example are cached (at most `max_entries`; the least recently used go first).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from kontext.core import params as P
from kontext.core.atomic import write_atomic
from kontext.core.images import ALLOWED_FORMATS, MAX_FILE_BYTES, MAX_SIDE, MIN_SIDE
from kontext.core.tomlfile import read_toml
from kontext.errors import UserError

MIN_CHAIN, MAX_CHAIN = 3, 5
KINDS = ("local edit", "character", "style", "text", "removal", "other")


@dataclass(frozen=True)
class Example:
    id: str
    title: str
    kind: str  # one of KINDS: which strength of the model it shows
    image: Path
    prompt: str
    seed: int


@dataclass(frozen=True)
class Chain:
    id: str
    title: str
    image: Path
    prompts: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Catalog:
    examples: tuple[Example, ...] = ()
    chains: tuple[Chain, ...] = ()

    def example(self, example_id: str) -> Example:
        return _find(self.examples, example_id, "example", "examples")

    def chain(self, chain_id: str) -> Chain:
        return _find(self.chains, chain_id, "example chain", "chains")


def _find(items: tuple, item_id: str, what: str, plural: str) -> Any:
    for item in items:
        if item.id == item_id:
            return item
    raise UserError(f"{what} {item_id!r} does not exist; the {plural} are {', '.join(i.id for i in items) or 'none'}")


def load_catalog(path: str | Path) -> Catalog:
    """Read and check a catalog file; pictures are named relative to it. UserError names what is wrong."""
    path = Path(path)
    data = read_toml(path, "examples")
    unknown = set(data) - {"example", "chain"}
    if unknown:
        raise UserError(f"examples file {path.name}: unknown table {sorted(unknown)[0]!r} (use [[example]] "
                        "and [[chain]])")
    seen: set[str] = set()

    def common(entry: Any, where: str) -> tuple[str, str, Path, int]:
        if not isinstance(entry, dict):
            raise UserError(f"{where} must be a table")
        eid = entry.get("id")
        if not isinstance(eid, str) or not eid or not all(c.isalnum() or c in "-_" for c in eid) or len(eid) > 40:
            raise UserError(f"{where}: id must be 1-40 letters, digits, - or _, got {eid!r}")
        if eid in seen:
            raise UserError(f"{where}: id {eid!r} is used twice")
        seen.add(eid)
        title = entry.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 60:
            raise UserError(f"{where} ({eid}): title must be 1-60 characters")
        image = _picture(entry.get("image"), path, f"{where} ({eid})")
        seed = entry.get("seed", 0)
        try:
            seed = P.check_seed(seed)
        except UserError as e:
            raise UserError(f"{where} ({eid}): {e}") from None
        return eid, title.strip(), image, seed

    examples = []
    for i, entry in enumerate(data.get("example", [])):
        eid, title, image, seed = common(entry, f"example {i + 1}")
        kind = entry.get("kind", "other")
        if kind not in KINDS:
            raise UserError(f"example {eid}: kind must be one of {KINDS}, got {kind!r}")
        examples.append(Example(eid, title, kind, image, _prompt(entry.get("prompt"), eid), seed))
    chains = []
    for i, entry in enumerate(data.get("chain", [])):
        cid, title, image, seed = common(entry, f"chain {i + 1}")
        prompts = entry.get("prompts")
        if not isinstance(prompts, list) or not MIN_CHAIN <= len(prompts) <= MAX_CHAIN:
            raise UserError(f"chain {cid}: prompts must be a list of {MIN_CHAIN} to {MAX_CHAIN} instructions")
        chains.append(Chain(cid, title, image, tuple(_prompt(p, cid) for p in prompts), seed))
    return Catalog(tuple(examples), tuple(chains))


def _picture(name: Any, catalog: Path, where: str) -> Path:
    """An example's picture: a file inside the catalog's folder (links resolved, so neither '..' nor a
    link leads out of it) that opens as a picture of an allowed format and size. Every visitor is
    served this file, so nothing else on the server may be named here."""
    folder = catalog.parent.resolve()
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise UserError(f"{where}: image must name a picture in the folder of {catalog.name}, got {name!r:.80}")
    file = (folder / name).resolve()
    if not file.is_relative_to(folder):
        raise UserError(f"{where}: image {name[:80]!r} is outside the folder of {catalog.name}; example pictures "
                        "must lie in that folder or below it")
    if not file.is_file():
        raise UserError(f"{where}: image {name[:80]!r} is not a file in the folder of {catalog.name}")
    try:
        with Image.open(file, formats=ALLOWED_FORMATS) as im:  # the header only: no pixel is decoded here
            size = im.size
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise UserError(f"{where}: image {name[:80]!r} is not a picture ({', '.join(ALLOWED_FORMATS)}): "
                        f"{type(e).__name__}") from None
    if not (MIN_SIDE <= min(size) and max(size) <= MAX_SIDE) or file.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"{where}: image {name[:80]!r} is {size[0]}x{size[1]} pixels and {file.stat().st_size:,} "
                        f"bytes; a picture is {MIN_SIDE} to {MAX_SIDE} pixels a side and at most "
                        f"{MAX_FILE_BYTES // 2**20} MB")
    return file


def _prompt(value: Any, where: str) -> str:
    try:
        return P.check_prompt(value)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


# --- the result cache ----------------------------------------------------------------------------
@dataclass
class CachedResult:
    png: bytes
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


class ResultCache:
    """Finished turns of example trees, by everything that decides their pixels.

    A turn's key hashes the context's pixels, the prompt, seed, guidance, steps, size, context
    scaling and the model (id, revision, speed mode, device): the same key means the same call, so
    its stored result is what running it again would give. At most `max_entries` results are kept
    (least recently used go first). Files are written atomically; a damaged entry is a miss.
    """

    def __init__(self, folder: str | Path, max_entries: int = 200, catalog: Catalog | None = None):
        self.folder = Path(folder)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self.prompts: frozenset[str] | None = None
        if catalog is not None:
            self.allow(catalog)

    def allow(self, catalog: Catalog) -> None:
        """Cache only the catalog's instructions (so visitors' own prompts never fill the cache)."""
        self.prompts = frozenset([e.prompt for e in catalog.examples] + [p for c in catalog.chains for p in c.prompts])

    def covers(self, prompt: str) -> bool:
        return self.prompts is not None and prompt in self.prompts

    @staticmethod
    def key(engine: Any, request: Any) -> str:
        h = hashlib.sha256()
        from kontext.files.export import library_versions
        from kontext.model.aot import device_name

        fields = [request.prompt, request.seed, request.guidance, request.steps, request.width,
                  request.height, request.fit_context, engine.model_id, engine.revision, engine.speed.label,
                  device_name(engine.device), str(getattr(engine.pipe.transformer, "dtype", "")),
                  library_versions()]
        h.update(json.dumps(fields).encode())
        h.update(json.dumps([list(x) for x in getattr(request, "loras", ())]).encode())
        for img in (request.context, getattr(request, "mask", None)):  # the mask decides pixels too
            if img is not None:
                h.update(f"{img.mode}:{img.size}".encode())
                h.update(img.tobytes())
            else:
                h.update(b"-")
        return h.hexdigest()

    def get(self, key: str) -> CachedResult | None:
        png_path, meta_path = self.folder / f"{key}.png", self.folder / f"{key}.json"
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            png = png_path.read_bytes()
            Image.open(io.BytesIO(png)).verify()
            os.utime(meta_path)  # recently used
            return CachedResult(png=png, seconds=float(meta["seconds"]), extra=dict(meta.get("extra", {})))
        except (OSError, ValueError, KeyError, TypeError, SyntaxError):
            return None

    def put(self, key: str, image: Image.Image, seconds: float, extra: dict[str, Any]) -> None:
        buf = io.BytesIO()
        image.save(buf, "PNG")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, data in ((f"{key}.png", buf.getvalue()),
                               (f"{key}.json", json.dumps({"seconds": seconds, "extra": extra,
                                                            "created": time.time()}).encode())):
                write_atomic(self.folder / name, data)  # the JSON last: a PNG without it is a miss
            self._trim()

    def _trim(self) -> None:
        metas = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for meta in metas[: max(0, len(metas) - self.max_entries)]:
            meta.unlink(missing_ok=True)
            meta.with_suffix(".png").unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0
