"""The base file: a valid TinyDB JSON document with one trace info per line, its layout,
its schema migrations, and how to tell it from files that are not stores."""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from ..errors import NotAStore, StoreCorrupted
from .files import id_from_key, id_key
from .idindex import DamagedIndex, IdIndex
from .paths import check_store_file, is_regular

FORMAT = "tracetag"
SCHEMA_VERSION = 2

META_PREFIX = b'{"_meta": '
EXP_PREFIX = b'"experiments": '
TRACES_OPEN = b'"traces": {\n'
TRACES_CLOSE = b"}}\n"
LINE_RE = re.compile(rb'\n"((?:[^"\\\n]|\\.)+)": (\{[^\n]*)')


TRACE_JSON = (
    "this is trace JSON (an MLflow or tracetag export), not a store: "
    "use 'tracetag import FILE' to load it into a store"
)


def foreign_kind(data: bytes) -> str | None:
    """What a file that is not a tracetag store looks like, in words; None if it may be one.

    A store file starts with its ``_meta`` table (or is a TinyDB file naming it); anything else
    is said plainly so that nobody is told to "repair" an export into an empty store.
    """
    head = data.lstrip()[: 1 << 16]
    if head.startswith(META_PREFIX) or b'"_meta"' in head:
        return None
    if not head.startswith((b"{", b"[")):
        return "not a tracetag store (not a JSON document)"
    first = head.split(b"\n", 1)[0]
    for candidate in (first, data):
        try:
            obj = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]
        if isinstance(obj, dict) and isinstance(obj.get("info"), dict):
            return TRACE_JSON
        if isinstance(obj, dict) and "resourceSpans" in obj:
            return "this is OpenTelemetry (OTLP) JSON, not a tracetag store"
        break
    if b'"info"' in head and (b'"spans"' in head or b'"data"' in head):
        return TRACE_JSON
    return None


def layout(meta: dict, experiments: dict, traces: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The base file's bytes: valid TinyDB JSON with one trace document per line."""
    yield META_PREFIX + orjson.dumps({"1": meta}) + b",\n"
    yield EXP_PREFIX + orjson.dumps(experiments) + b",\n"
    yield TRACES_OPEN
    first = True
    for trace_id, raw in traces:
        yield (b"" if first else b",\n") + id_key(trace_id) + b": " + raw
        first = False
    yield (b"\n" if not first else b"") + TRACES_CLOSE


def new_meta(generation: int = 1) -> dict:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "generation": generation,
    }


def _migrate_v1(tables: dict) -> None:
    """v1 named the id ``request_id`` (MLflow 2) and kept tags as ``[key, value]`` pairs."""
    traces = tables.get("traces") or {}
    for key, doc in list(traces.items()):
        if "request_id" in doc and "trace_id" not in doc:
            doc["trace_id"] = doc.pop("request_id")
        if isinstance(doc.get("tags"), list):
            doc["tags"] = {k: v for k, v in doc["tags"]}
        traces[doc["trace_id"]] = traces.pop(key)


# Named and ordered: entry i upgrades schema i+1 to i+2. Never edit or reorder; only append.
MIGRATIONS: list[tuple[str, Callable[[dict], None]]] = [
    ("0001_trace_id_and_tag_dict", _migrate_v1),
]


class BaseFile:
    """An open, consistent view of the base file (the open handle survives a rename)."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = new_meta(generation=0)
        self.experiments: dict[str, dict] = {}
        self._fh = None
        self._body_start = 0
        self._tables: dict | None = None  # set when the file had to be parsed whole
        self.stat: os.stat_result | None = None
        try:
            # Non-blocking, so that a FIFO put where the store should be cannot hang us.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return
        except IsADirectoryError:
            raise NotAStore(f"{path}: is a directory, not a tracetag store") from None
        except OSError as e:
            raise NotAStore(f"{path}: cannot be read ({e.strerror})") from None
        self._fh = open(fd, "rb")  # noqa: SIM115 - kept open as the snapshot
        self.stat = os.fstat(fd)
        if not is_regular(self.stat):
            self.close()
            check_store_file(path)
        if self.stat.st_size == 0:
            self._fh.close()
            self._fh = None
            return
        if not self._read_header():
            self._load_whole()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read_header(self) -> bool:
        fh = self._fh
        assert fh is not None
        first = fh.readline(1 << 20)
        second = fh.readline(1 << 24)
        third = fh.readline(64)
        if not (
            first.startswith(META_PREFIX)
            and first.endswith(b",\n")
            and second.startswith(EXP_PREFIX)
            and second.endswith(b",\n")
            and third == TRACES_OPEN
        ):
            return False
        try:
            meta = orjson.loads(first[len(META_PREFIX) : -2]).get("1")
            experiments = orjson.loads(second[len(EXP_PREFIX) : -2])
        except (orjson.JSONDecodeError, AttributeError):
            return False
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            return False
        if meta.get("schema_version") != SCHEMA_VERSION:
            return False  # older or newer: the whole-file path migrates or refuses
        self.meta = meta
        self.experiments = experiments
        self._body_start = fh.tell()
        return True

    def _load_whole(self) -> None:
        fh = self._fh
        assert fh is not None
        fh.seek(0)
        data = fh.read()
        foreign = foreign_kind(data)
        if foreign:
            raise NotAStore(f"{self.path}: {foreign}")
        try:
            tables = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise StoreCorrupted(
                f"{self.path}: damaged store, invalid JSON at line {e.lineno} column {e.colno}"
            ) from None
        meta = None
        if isinstance(tables, dict) and isinstance(tables.get("_meta"), dict):
            meta = tables["_meta"].get("1")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise NotAStore(f"{self.path}: not a tracetag store (no tracetag _meta table)")
        version = meta.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise StoreCorrupted(f"{self.path}: damaged store, bad schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise NotAStore(
                f"{self.path}: written by a newer tracetag (schema {version}, "
                f"this one reads up to {SCHEMA_VERSION}); upgrade tracetag"
            )
        for _name, migrate in MIGRATIONS[version - 1 :]:
            migrate(tables)
        meta["schema_version"] = SCHEMA_VERSION
        self.meta = meta
        self.experiments = tables.get("experiments") or {}
        self._tables = tables

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation") or 0)

    @property
    def needs_rewrite(self) -> bool:
        """True when the file is not in the current layout (old schema, or plain TinyDB's)."""
        return self._tables is not None

    def iter_raw(self) -> Iterator[tuple[str, bytes]]:
        """(trace id, JSON bytes of its info document), in file order."""
        if self._tables is not None:
            for tid, doc in (self._tables.get("traces") or {}).items():
                yield tid, orjson.dumps(doc)
            return
        if self._fh is None:
            return
        fh = self._fh
        fh.seek(self._body_start)
        lineno = 3
        closed = False
        for line in fh:
            lineno += 1
            if line == TRACES_CLOSE or line == b"}}":
                closed = True
                break
            sep = line.find(b'": ')
            end = -2 if line.endswith(b",\n") else (-1 if line.endswith(b"\n") else len(line))
            if not line.startswith(b'"') or sep < 0 or line[end - 1 : end] != b"}":
                raise StoreCorrupted(f"{self.path}: damaged store, unreadable line {lineno}")
            yield id_from_key(line[1:sep]), line[sep + 3 : end]
        if not closed or fh.read(1):
            raise StoreCorrupted(f"{self.path}: damaged store, truncated after line {lineno}")

    def iter_holding(self, needle: bytes) -> Iterator[tuple[str, bytes]]:
        """(trace id, JSON bytes) of the documents holding ``needle``, in file order, found by
        searching the file's bytes: a line without it costs nothing, where :meth:`iter_raw`
        spends a few Python steps on every line."""
        if self._tables is not None or self._fh is None or b"\n" in needle:
            yield from ((t, raw) for t, raw in self.iter_raw() if needle in raw)
            return
        with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if not (mm[-3:] == TRACES_CLOSE or mm[-2:] == b"}}"):
                raise StoreCorrupted(f"{self.path}: damaged store, truncated")
            first = self._body_start
            pos = mm.find(needle, first)
            while pos >= 0:
                start = mm.rfind(b"\n", first - 1, pos) + 1
                end = mm.find(b"\n", pos)
                line = mm[start : len(mm) if end < 0 else end]
                if line.startswith(b"}}"):
                    break  # (the needle is in the closing bytes)
                sep = line.find(b'": ')
                stop = -1 if line.endswith(b",") else len(line)
                if not line.startswith(b'"') or sep < 0 or line[stop - 1 : stop] != b"}":
                    lineno = mm[:start].count(b"\n") + 1
                    raise StoreCorrupted(f"{self.path}: damaged store, unreadable line {lineno}")
                raw = line[sep + 3 : stop]
                if needle in raw:  # (not only in the id)
                    yield id_from_key(line[1:sep]), raw
                if end < 0:
                    break
                pos = mm.find(needle, end)

    def find(
        self, trace_id: str, index: IdIndex | dict[str, tuple[int, int]] | None
    ) -> dict | None:
        """One document by id, without reading the rest of the file."""
        if self._tables is not None:
            return (self._tables.get("traces") or {}).get(trace_id)
        if self._fh is None:
            return None
        if isinstance(index, IdIndex):
            try:
                candidates = index.candidates(trace_id)
            except DamagedIndex:
                candidates = None  # (the index is removed: search the bytes)
            if candidates == []:
                return None  # built from this very base (and checksummed): it lacks the id
            # Each candidate is checked against the base: the id's key precedes its document.
            needle = b"\n" + id_key(trace_id) + b": "
            for offset, length in candidates or ():
                self._fh.seek(offset - len(needle))
                raw = self._fh.read(len(needle) + length)
                if raw.startswith(needle):
                    return loads_doc(self, trace_id, raw[len(needle) :])
            index = None  # damaged, or another id's hash: search the bytes
        if index is not None:
            loc = index.get(trace_id)
            if loc is None:
                return None
            self._fh.seek(loc[0])
            raw = self._fh.read(loc[1])
        else:
            with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                needle = b"\n" + id_key(trace_id) + b": "
                pos = mm.find(needle, self._body_start - 1)
                if pos < 0:
                    return None
                start = pos + len(needle)
                end = mm.find(b"\n", start)
                raw = mm[start : end if end >= 0 else len(mm)]
            raw = raw[:-1] if raw.endswith(b",") else raw
        return loads_doc(self, trace_id, raw)

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` trace ids starting with ``prefix``, by a scan of the raw bytes (no
        JSON parsing): fast enough for shell completion."""
        if self._tables is not None:
            traces = self._tables.get("traces") or {}
            return [t for t in traces if t.startswith(prefix)][:limit]
        if self._fh is None:
            return []
        pattern = re.compile(rb'\n"(' + re.escape(prefix.encode()) + rb'[^"\n]*)": \{')
        out: list[str] = []
        with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in pattern.finditer(mm, self._body_start - 1):
                out.append(m.group(1).decode())
                if len(out) >= limit:
                    break
        return out

    def build_index(self) -> dict[str, tuple[int, int]]:
        """Trace id -> (offset, length) of its document, for processes that look up many ids."""
        index: dict[str, tuple[int, int]] = {}
        if self._fh is None or self._tables is not None:
            return index
        with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in LINE_RE.finditer(mm, self._body_start - 1):
                start, end = m.span(2)
                if mm[end - 1] == 0x2C:  # the comma between documents
                    end -= 1
                index[id_from_key(m.group(1))] = (start, end - start)
        return index


def loads_doc(base: BaseFile, tid: str, raw: bytes) -> dict:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StoreCorrupted(f"{base.path}: damaged store, unreadable document for {tid}") from None
