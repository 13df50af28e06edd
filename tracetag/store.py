"""The embedded trace store: a TinyDB JSON document file, a journal beside it, spans apart.

A plain TinyDB file is rewritten whole on every change and parsed whole on every read, which
at 100,000 traces makes one tag write cost a second. The store keeps TinyDB's document file as
the base and designs around that cost (docs/store.md has the longer version):

``PATH`` (the base)
    A valid TinyDB database (tables ``_meta``, ``experiments``, ``traces``) laid out one document
    per line, keyed by trace id, so that it can be streamed line by line and a single document
    found with one substring search. It holds trace *infos* only: everything a search or a tag
    write touches. It is only ever replaced whole, by an atomic rename.
``PATH-journal``
    An append-only log of small operations (put trace, set/delete tags, create experiment), one
    checksummed line each, fsynced before a write returns. Readers replay it over the base.
``PATH-spans``
    Append-only span payloads, one checksummed line per trace; the info document points at it.
``PATH-lock``
    Serialises writers across processes; readers never take it.

Invariants that make it safe:

1. A write is one journal line written with one ``write`` and fsynced before returning, so it is
   all there or, if the writer died, a torn last line with no newline that readers ignore.
2. Writers hold the lock; a torn tail seen under the lock belongs to a dead writer and is cut
   off before the next append, so it can never swallow an acknowledged record.
3. Every operation is an assignment (put a document, set or delete a key), so replaying a
   journal over a base that already contains it changes nothing.
4. The base and the journal carry a generation number. Compaction writes base ``g+1`` (temp
   file, fsync, rename), then a fresh journal ``g+1``. A reader that finds a journal older than
   its base ignores it (a crash between the two renames); one newer than its base retries.
5. Spans are appended and fsynced before the journal line that points at them, so no
   acknowledged trace points at missing spans; a crash can only leave unreferenced bytes.
6. Reads never write anything: no lock file, no repair, no migration on disk.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import InvalidInput, NotAStore, StoreCorrupted, StoreError, StoreLocked, TraceNotFound
from .schema import check_trace

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Store",
    "TraceStorage",
    "default_store_path",
    "open_tinydb",
    "resolve_store_path",
]

FORMAT = "tracetag"
SCHEMA_VERSION = 2
JOURNAL_VERSION = 1
DEFAULT_EXPERIMENT = {"experiment_id": "0", "name": "Default", "creation_time_ms": 0}
# Compact once the journal is larger than this or a quarter of the base, whichever is larger:
# replay cost on reads stays a fraction of the scan, and rewrites stay rare.
COMPACT_MIN_BYTES = 4 * 1024 * 1024
LOCK_TIMEOUT_S = 60.0

_META_PREFIX = b'{"_meta": '
_EXP_PREFIX = b'"experiments": '
_TRACES_OPEN = b'"traces": {\n'
_TRACES_CLOSE = b"}}\n"
_LINE_RE = re.compile(rb'\n"((?:[^"\\\n]|\\.)+)": (\{[^\n]*)')
# Files are private to their owner unless the store is deliberately shared (docs/store.md):
# new files take the mode of the existing base file, or this one.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
log = logging.getLogger("tracetag")


def default_store_path() -> Path:
    """The per-user store: ``$XDG_DATA_HOME/tracetag/store.json`` or the platform's equivalent."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif os.uname().sysname == "Darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "tracetag" / "store.json"


def resolve_store_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$TRACETAG_STORE``, else the per-user default.

    A directory means the ``store.json`` inside it. Symbolic links are resolved here, once, so
    that the journal, span and lock files sit beside the real file (not beside the link) and a
    compaction never replaces a link with a file. Anything but a regular file is refused: a
    device or a FIFO as the store would be overwritten or hang the reader.
    """
    chosen = path or os.environ.get("TRACETAG_STORE") or default_store_path()
    p = Path(chosen).expanduser()
    if p.is_dir():
        p = p / "store.json"
    p = Path(os.path.realpath(p))
    check_store_file(p)
    return p


def check_store_file(p: Path) -> None:
    """Refuse a store path that exists and is not a regular file."""
    import stat

    try:
        mode = os.stat(p).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise NotAStore(f"{p}: is {kind}, not a tracetag store file")


def _is_regular(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def orphan_files(path: Path, spans_in_use: Path) -> list[Path]:
    """Files a killed compaction or vacuum left beside the store (temp files, old span files).

    Only writers holding the lock create such files, so under the lock every one of them that
    the current base does not use is garbage.
    """
    folder = path.parent
    temp_prefixes = (f".{path.name}.tmp-", f".{path.name}-journal.tmp-")
    spans_prefix = f"{path.name}-spans."
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if name.startswith(temp_prefixes) or (
            name.startswith(spans_prefix)
            and name[len(spans_prefix) :].isdigit()
            and folder / name != spans_in_use
        ):
            found.append(folder / name)
    return sorted(found)


_TRACE_JSON = (
    "this is trace JSON (an MLflow or tracetag export), not a store: "
    "use 'tracetag import FILE' to load it into a store"
)


def foreign_kind(data: bytes) -> str | None:
    """What a file that is not a tracetag store looks like, in words; None if it may be one.

    A store file starts with its ``_meta`` table (or is a TinyDB file naming it); anything else
    is said plainly so that nobody is told to "repair" an export into an empty store.
    """
    head = data.lstrip()[: 1 << 16]
    if head.startswith(_META_PREFIX) or b'"_meta"' in head:
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
            return _TRACE_JSON
        if isinstance(obj, dict) and "resourceSpans" in obj:
            return "this is OpenTelemetry (OTLP) JSON, not a tracetag store"
        break
    if b'"info"' in head and (b'"spans"' in head or b'"data"' in head):
        return _TRACE_JSON
    return None


def create_file(path: Path, mode: int, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
    """Open ``path``, creating it with exactly ``mode`` (the umask would narrow a shared
    store's group bits)."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        if hasattr(os, "fchmod") and os.fstat(fd).st_mode & 0o777 != mode:
            os.fchmod(fd, mode)
    except OSError:
        pass  # not our file (a shared store created by another user): keep its mode
    return fd


def _file_mode(base: Path) -> int:
    """The mode for a new file of the store: the base file's, else private."""
    try:
        return os.stat(base).st_mode & 0o666
    except OSError:
        return PRIVATE_FILE


def _id_key(trace_id: str) -> bytes:
    """A trace id as the base file holds it: a JSON string (ids are validated, but a store
    written by an older version may hold any string; encoded, it can never break a line)."""
    return orjson.dumps(trace_id)


def _id_from_key(raw: bytes) -> str:
    return orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()


def write_all(fd: int, data: bytes, path: Path) -> None:
    """Write every byte of ``data`` at the end of ``fd`` or none of them.

    ``os.write`` may write part of its buffer (a nearly full disk); the rest is retried, and on
    failure the file is cut back to where it was, so nothing half-written stays behind to be
    acknowledged, and the error says what happened.
    """
    start = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(data)
    try:
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[n:]
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        reason = e.strerror or str(e)
        raise StoreError(f"{path}: cannot write ({reason}); nothing was written") from None


# ---------------------------------------------------------------------------------------------
# Low-level file helpers


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Write to a temp file in the same folder, fsync, rename over ``path``: old or new, never half.

    Returns the size and CRC-32 of what was written.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    size = crc = 0
    mode = _file_mode(path)
    try:
        fd = create_file(tmp, mode)
        with open(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path)
    return size, crc


def encode_record(obj: Any) -> bytes:
    """One checksummed line: 8 hex digits of CRC-32, a space, compact JSON, newline."""
    body = orjson.dumps(obj)
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_record(line: bytes) -> Any:
    """Parse a line of :func:`encode_record` (without its newline); ``ValueError`` if damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        raise ValueError("not a record")
    body = line[9:]
    if int(line[:8], 16) != zlib.crc32(body):
        raise ValueError("checksum mismatch")
    return orjson.loads(body)


# ---------------------------------------------------------------------------------------------
# The base file


def _layout(meta: dict, experiments: dict, traces: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The base file's bytes: valid TinyDB JSON with one trace document per line."""
    yield _META_PREFIX + orjson.dumps({"1": meta}) + b",\n"
    yield _EXP_PREFIX + orjson.dumps(experiments) + b",\n"
    yield _TRACES_OPEN
    first = True
    for trace_id, raw in traces:
        yield (b"" if first else b",\n") + _id_key(trace_id) + b": " + raw
        first = False
    yield (b"\n" if not first else b"") + _TRACES_CLOSE


def _new_meta(generation: int = 1) -> dict:
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


class _Base:
    """An open, consistent view of the base file (the open handle survives a rename)."""

    def __init__(self, path: Path):
        self.path = path
        self.meta = _new_meta(generation=0)
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
        if not _is_regular(self.stat):
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
            first.startswith(_META_PREFIX)
            and first.endswith(b",\n")
            and second.startswith(_EXP_PREFIX)
            and second.endswith(b",\n")
            and third == _TRACES_OPEN
        ):
            return False
        try:
            meta = orjson.loads(first[len(_META_PREFIX) : -2]).get("1")
            experiments = orjson.loads(second[len(_EXP_PREFIX) : -2])
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
            if line == _TRACES_CLOSE or line == b"}}":
                closed = True
                break
            sep = line.find(b'": ')
            end = -2 if line.endswith(b",\n") else (-1 if line.endswith(b"\n") else len(line))
            if not line.startswith(b'"') or sep < 0 or line[end - 1 : end] != b"}":
                raise StoreCorrupted(f"{self.path}: damaged store, unreadable line {lineno}")
            yield _id_from_key(line[1:sep]), line[sep + 3 : end]
        if not closed or fh.read(1):
            raise StoreCorrupted(f"{self.path}: damaged store, truncated after line {lineno}")

    def find(self, trace_id: str, index: dict[str, tuple[int, int]] | None) -> dict | None:
        """One document by id, without reading the rest of the file."""
        if self._tables is not None:
            return (self._tables.get("traces") or {}).get(trace_id)
        if self._fh is None:
            return None
        if index is not None:
            loc = index.get(trace_id)
            if loc is None:
                return None
            self._fh.seek(loc[0])
            raw = self._fh.read(loc[1])
        else:
            with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                needle = b"\n" + _id_key(trace_id) + b": "
                pos = mm.find(needle, self._body_start - 1)
                if pos < 0:
                    return None
                start = pos + len(needle)
                end = mm.find(b"\n", start)
                raw = mm[start : end if end >= 0 else len(mm)]
            raw = raw[:-1] if raw.endswith(b",") else raw
        return _loads_doc(self, trace_id, raw)

    def build_index(self) -> dict[str, tuple[int, int]]:
        """Trace id -> (offset, length) of its document, for processes that look up many ids."""
        index: dict[str, tuple[int, int]] = {}
        if self._fh is None or self._tables is not None:
            return index
        with mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for m in _LINE_RE.finditer(mm, self._body_start - 1):
                start, end = m.span(2)
                if mm[end - 1] == 0x2C:  # the comma between documents
                    end -= 1
                index[_id_from_key(m.group(1))] = (start, end - start)
        return index


# ---------------------------------------------------------------------------------------------
# The journal


@dataclass
class Overlay:
    """What the journal says on top of the base: replayed state, kept small by compaction."""

    generation: int = -1
    offset: int = 0
    inode: int | None = None
    records: int = 0
    torn_bytes: int = 0
    # What the compaction that started this journal wrote as the base: a writer refuses a base
    # of another size (truncated, appended to, edited by hand) before appending to it.
    base_size: int | None = None
    base_crc: int | None = None
    puts: dict[str, dict] = field(default_factory=dict)
    # Tag changes for traces whose document is in the base: key -> value, or None to delete.
    deltas: dict[str, dict[str, str | None]] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    # Traces deleted since the base was written (a later put brings one back).
    deleted: set[str] = field(default_factory=set)

    def apply(self, rec: dict) -> None:
        op = rec.get("op")
        if op == "batch":
            for sub in rec["ops"]:
                self.apply(sub)
        elif op == "put":
            doc = rec["doc"]
            self.puts[doc["trace_id"]] = doc
            self.deltas.pop(doc["trace_id"], None)
            self.deleted.discard(doc["trace_id"])
        elif op == "del":
            for tid in rec["ids"]:
                self.puts.pop(tid, None)
                self.deltas.pop(tid, None)
                self.deleted.add(tid)
        elif op == "tag":
            sets: dict[str, str] = rec.get("set") or {}
            dels: list[str] = rec.get("del") or []
            for tid in rec["ids"]:
                doc = self.puts.get(tid)
                if doc is not None:
                    # Copy on write: a snapshot taken earlier keeps seeing the old document.
                    tags = {**doc["tags"], **sets}
                    for k in dels:
                        tags.pop(k, None)
                    self.puts[tid] = {**doc, "tags": tags}
                else:
                    delta = {**self.deltas.get(tid, {}), **sets}
                    for k in dels:
                        delta[k] = None
                    self.deltas[tid] = delta
        elif op == "exp":
            self.experiments[rec["doc"]["experiment_id"]] = rec["doc"]
        else:
            raise ValueError(f"unknown operation {op!r}")

    def merge(self, doc: dict) -> dict:
        """The document as the journal has it now (the input is never modified)."""
        tid = doc["trace_id"]
        put = self.puts.get(tid)
        if put is not None:
            return put
        delta = self.deltas.get(tid)
        if delta is None:
            return doc
        tags = dict(doc.get("tags") or {})
        for k, v in delta.items():
            if v is None:
                tags.pop(k, None)
            else:
                tags[k] = v
        return {**doc, "tags": tags}

    def frozen(self) -> Overlay:
        """A copy whose tables later appends cannot change (documents are copy-on-write)."""
        return Overlay(
            self.generation,
            self.offset,
            self.inode,
            self.records,
            self.torn_bytes,
            self.base_size,
            self.base_crc,
            dict(self.puts),
            dict(self.deltas),
            dict(self.experiments),
            set(self.deleted),
        )

    def merged(self, base: _Base) -> Iterator[tuple[str, bytes, dict | None]]:
        """Every live trace as (id, its base bytes, its document if the journal changed it).

        The one place that lays the journal over the base: base order first, then the traces
        only the journal has (their bytes are empty); deleted traces are left out.
        """
        puts, deltas, deleted = self.puts, self.deltas, self.deleted
        seen: set[str] = set()
        for tid, raw in base.iter_raw():
            if tid in deleted:
                continue
            if tid in puts:
                seen.add(tid)
                yield tid, raw, puts[tid]
            elif tid in deltas:
                yield tid, raw, self.merge(_loads_doc(base, tid, raw))
            else:
                yield tid, raw, None
        for tid, doc in puts.items():
            if tid not in seen:
                yield tid, b"", doc


def _read_journal(path: Path, overlay: Overlay | None) -> Overlay:
    """Replay the journal, continuing from ``overlay`` when it is the same file and generation."""
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return Overlay()
    with fh:
        st = os.fstat(fh.fileno())
        header = fh.readline(4096)
        if not header.endswith(b"\n"):
            return Overlay(inode=st.st_ino)  # being created: nothing acknowledged yet
        try:
            head = decode_record(header[:-1])
            generation = int(head["generation"])
        except (ValueError, KeyError, TypeError):
            raise StoreCorrupted(f"{path}: damaged journal, unreadable header") from None
        # Inode numbers are reused after a reset, so the generation must match as well.
        if (
            overlay is None
            or overlay.inode != st.st_ino
            or overlay.generation != generation
            or st.st_size < overlay.offset
        ):
            overlay = Overlay(
                generation=generation,
                offset=len(header),
                inode=st.st_ino,
                base_size=head.get("base_size"),
                base_crc=head.get("base_crc"),
            )
        fh.seek(overlay.offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    overlay.torn_bytes = len(data) - end
    pos = 0
    while pos < end:
        nl = data.index(b"\n", pos)
        overlay.records += 1
        try:
            overlay.apply(decode_record(data[pos:nl]))
        except (ValueError, KeyError, TypeError) as e:
            raise StoreCorrupted(
                f"{path}: damaged journal, record {overlay.records} ({e}); "
                "run 'tracetag store check'"
            ) from None
        pos = nl + 1
    overlay.offset += end
    return overlay


# ---------------------------------------------------------------------------------------------
# Snapshots and the store


def _loads_doc(base: _Base, tid: str, raw: bytes) -> dict:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StoreCorrupted(f"{base.path}: damaged store, unreadable document for {tid}") from None


def _read_spans_at(path: Path, doc: dict, fh: Any) -> list[dict]:
    """The spans of ``doc`` from the span file ``path`` (``fh``: that file, already open)."""
    loc = doc.get("spans_at")
    if not loc:
        return []
    try:
        if fh is None:
            fh = open(path, "rb")  # noqa: SIM115 - only reached when the file is missing
        fh.seek(loc[0])
        rec = decode_record(fh.read(loc[1]).rstrip(b"\n"))
        if rec.get("trace_id") != doc["trace_id"]:
            raise ValueError("another trace's spans")
    except (OSError, ValueError):
        raise StoreCorrupted(
            f"{path}: damaged span file, spans of {doc['trace_id']} unreadable"
        ) from None
    return rec["spans"]


def _size_mismatch(path: Path, actual: int, expected: int) -> StoreCorrupted:
    return StoreCorrupted(
        f"{path}: damaged store, {actual} bytes where {expected} were written; "
        "run 'tracetag store check'"
    )


class Snapshot:
    """A consistent read view: one base file handle plus the journal replayed over it."""

    def __init__(self, store: Store, base: _Base, overlay: Overlay):
        self.store = store
        self.base = base
        self.overlay = overlay
        self.spans_path = store.spans_path_for(base.meta)
        # Opened now, so that a vacuum replacing the span file cannot pull it from under us.
        self._spans_fh: Any = None
        with contextlib.suppress(OSError):
            self._spans_fh = open(self.spans_path, "rb")  # noqa: SIM115 - see close()

    def close(self) -> None:
        self.base.close()
        if self._spans_fh is not None:
            self._spans_fh.close()
            self._spans_fh = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_docs(self) -> Iterator[dict]:
        """Every trace info document, journal applied (base order, then journal-only traces)."""
        return self.select(lambda _doc: True)

    def select(
        self,
        predicate: Callable[[dict], bool | None],
        required: list[bytes] | None = None,
        experiment_ids: set[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[dict]:
        """Documents for which ``predicate`` is True (see :meth:`select_raw`)."""
        for doc, _raw in self.select_raw(predicate, required, experiment_ids, progress):
            yield doc

    def select_raw(
        self,
        predicate: Callable[[dict], bool | None],
        required: list[bytes] | None = None,
        experiment_ids: set[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[tuple[dict, bytes | None]]:
        """(document, its JSON bytes or None) for each document where ``predicate`` is True.

        The bytes are given when they are exactly the document (no journal change), so a
        caller that must hold many matches can keep the compact bytes instead of the dict.
        ``required`` are byte strings every match must contain: base lines without them are
        skipped unparsed, which is most of the cost of a selective search. Lines the journal
        changed are always parsed, since their JSON on disk is not what is matched.
        ``progress(done, total)`` is called every few thousand documents, in bytes of the base.
        """
        total = self.base.stat.st_size if self.base.stat else 0
        done = 0
        for n, (tid, raw, changed) in enumerate(self.overlay.merged(self.base)):
            if progress is not None:
                done += len(raw) + len(tid) + 6
                if n % 4096 == 0:
                    progress(done, total)
            if changed is None:
                if required and not all(r in raw for r in required):
                    continue
                doc, raw_out = _loads_doc(self.base, tid, raw), raw
            else:
                doc, raw_out = changed, None
            if experiment_ids is not None and doc["experiment_id"] not in experiment_ids:
                continue
            if predicate(doc) is True:
                yield doc, raw_out

    def ids(self) -> set[str]:
        """Every trace id, without parsing documents."""
        return {tid for tid, _raw, _doc in self.overlay.merged(self.base)}

    def get_many(self, trace_ids: Iterable[str]) -> dict[str, dict]:
        """Documents by id (absent ids are left out); one pass over the base for many ids."""
        wanted = set(trace_ids)
        if len(wanted) <= 64:
            found = {tid: self.get(tid) for tid in wanted}
            return {tid: doc for tid, doc in found.items() if doc is not None}
        return {
            tid: _loads_doc(self.base, tid, raw) if doc is None else doc
            for tid, raw, doc in self.overlay.merged(self.base)
            if tid in wanted
        }

    def get(self, trace_id: str) -> dict | None:
        if trace_id in self.overlay.deleted:
            return None
        doc = self.overlay.puts.get(trace_id)
        if doc is not None:
            return doc
        doc = self.base.find(trace_id, self.store._index_for(self.base))
        return None if doc is None else self.overlay.merge(doc)

    def require(self, trace_id: str) -> dict:
        doc = self.get(trace_id)
        if doc is None:
            raise TraceNotFound(trace_id)
        return doc

    def experiments(self) -> list[dict]:
        exps = {"0": DEFAULT_EXPERIMENT, **self.base.experiments, **self.overlay.experiments}
        return sorted(exps.values(), key=lambda e: (len(e["experiment_id"]), e["experiment_id"]))

    def spans(self, doc: dict) -> list[dict]:
        return _read_spans_at(self.spans_path, doc, self._spans_fh)


def _version(snap: Snapshot) -> tuple[int, int | None, int] | None:
    """Where a snapshot stands: journal generation, inode and offset (None: no journal)."""
    o = snap.overlay
    if o.generation < 0 or o.generation != snap.base.generation:
        return None
    return (o.generation, o.inode, o.offset)


def _touched(rec: dict, into: set[str]) -> None:
    """The trace ids one journal record changes."""
    op = rec.get("op")
    if op == "batch":
        for sub in rec["ops"]:
            _touched(sub, into)
    elif op == "put":
        into.add(rec["doc"]["trace_id"])
    elif op in ("tag", "del"):
        into.update(rec["ids"])


class _ProcessLock:
    """An exclusive lock between processes on ``path``.

    On POSIX an ``flock`` on a descriptor kept open for the life of the store: a few
    microseconds per acquisition, released by the kernel if the holder dies. Elsewhere,
    ``filelock``. Threads of one process are kept apart by the store's own mutex.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self, timeout: float, store: Path) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            from filelock import FileLock, Timeout

            if self._fallback is None:
                self._fallback = FileLock(str(self.path), thread_local=False)
            try:
                self._fallback.acquire(timeout=timeout)
            except Timeout:
                raise _locked(store, timeout) from None
            return
        if self._fd is None:
            self._fd = create_file(self.path, _file_mode(store), os.O_RDWR)
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _locked(store, timeout) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.01)

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _no_sync(_fd: int) -> None:
    """The "process" durability level: the kernel has the bytes; no wait for the disk."""


def _locked(store: Path, timeout: float) -> StoreLocked:
    return StoreLocked(f"{store}: another process has held the write lock for {timeout:.0f} s")


class Store:
    """The trace store at ``path`` (see the module docstring for the layout and invariants)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        compact_bytes: int | None = None,
        durability: str | None = None,
    ):
        self.path = resolve_store_path(path)
        # "full" (default): a write is fsynced before it returns, so it survives a power cut.
        # "process": written to the OS but not fsynced: it survives the writer's crash or
        # kill -9, not an OS crash; ~10x the write rate when fsync is the bottleneck.
        self.durability = durability or os.environ.get("TRACETAG_DURABILITY") or "full"
        if self.durability not in ("full", "process"):
            raise InvalidInput(f"durability must be 'full' or 'process', not {self.durability!r}")
        self._sync = os.fsync if self.durability == "full" else _no_sync
        self.journal_path = self.path.with_name(self.path.name + "-journal")
        self.spans_path = self.path.with_name(self.path.name + "-spans")  # before any vacuum
        self.lock_path = self.path.with_name(self.path.name + "-lock")
        self.compact_bytes = compact_bytes
        self._mutex = threading.RLock()
        self._process_lock: _ProcessLock | None = None
        self._validated: tuple | None = None
        self._overlay: Overlay | None = None
        self._index: tuple[tuple, dict[str, tuple[int, int]]] | None = None
        self._lookups = 0
        self.writes = 0  # journal appends made by this object: tests count them

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A consistent view; retried if a compaction replaces the files while we open them."""
        for _attempt in range(50):
            base = _Base(self.path)
            try:
                with self._mutex:
                    overlay = self._refresh_overlay()
                    if overlay.generation > base.generation and base.stat is not None:
                        base.close()
                        continue  # compacted under us: reopen the new base
                    if overlay.generation < base.generation:
                        overlay = Overlay()  # stale journal left by a crash: all in the base
                    elif (
                        overlay.base_size is not None
                        and base.stat is not None
                        and base.stat.st_size != overlay.base_size
                    ):
                        raise _size_mismatch(self.path, base.stat.st_size, overlay.base_size)
                    return Snapshot(self, base, overlay.frozen())
            except BaseException:
                base.close()
                raise
        raise StoreLocked(f"{self.path}: the store keeps changing under the reader; try again")

    def _refresh_overlay(self) -> Overlay:
        self._overlay = _read_journal(self.journal_path, self._overlay)
        return self._overlay

    def _index_for(self, base: _Base) -> dict[str, tuple[int, int]] | None:
        """A full id index once this process has looked up enough ids to make it pay."""
        if base.stat is None:
            return None
        key = (base.stat.st_ino, base.stat.st_mtime_ns, base.stat.st_size)
        if self._index is not None and self._index[0] == key:
            return self._index[1]
        self._lookups += 1
        if self._lookups < 8:
            return None
        self._index = (key, base.build_index())
        return self._index[1]

    def spans_path_for(self, meta: dict) -> Path:
        """The span file a base points into (a vacuum starts a new one)."""
        name = meta.get("spans_file")
        return self.path.with_name(name) if name else self.spans_path

    def read_spans(self, doc: dict) -> list[dict]:
        """The span dicts of ``doc``, read from the current store.

        ``doc`` may come from an older snapshot; if a vacuum has moved the spans since, the
        document is looked up again.
        """
        with self.snapshot() as snap:
            try:
                return snap.spans(doc)
            except StoreCorrupted:
                fresh = snap.get(doc["trace_id"])
                if fresh is None or fresh.get("spans_at") == doc.get("spans_at"):
                    raise
                return snap.spans(fresh)

    # -- writing -------------------------------------------------------------------------------

    def _lock(self) -> _ProcessLock:
        if self._process_lock is None:
            self._process_lock = _ProcessLock(self.lock_path)
        return self._process_lock

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Snapshot]:
        """The single-writer section: lock, validate, repair a dead writer's torn tail."""
        with self._mutex:
            # Refuse a non-store before creating anything beside it (once per base file).
            try:
                st = os.stat(self.path)
                key: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                key = None
            if key is None or key != self._validated:
                _Base(self.path).close()
                self.path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self._lock().acquire(LOCK_TIMEOUT_S, self.path)
            try:
                snap = self._prepare_locked()
                try:
                    yield snap
                finally:
                    snap.close()
                st = os.stat(self.path)
                self._validated = (st.st_ino, st.st_size, st.st_mtime_ns)
            finally:
                self._lock().release()

    def _prepare_locked(self) -> Snapshot:
        base = _Base(self.path)
        if base.stat is None or base.needs_rewrite:
            # First write, or an old-schema or foreign-layout file: write the base in the
            # current layout (migrations happen on disk only here, under the lock).
            base.close()
            self._compact_locked()
            base = _Base(self.path)
        overlay = self._refresh_overlay()
        if overlay.generation != base.generation:
            # No journal for this base (deleted, or a crash right after a compaction's base
            # rename): read the whole base once before trusting it with new appends.
            for tid, raw in base.iter_raw():
                _loads_doc(base, tid, raw)
            self._reset_journal(base.generation, base.stat.st_size if base.stat else None)
            overlay = self._refresh_overlay()
        elif overlay.base_size is not None and base.stat and base.stat.st_size != overlay.base_size:
            raise _size_mismatch(self.path, base.stat.st_size, overlay.base_size)
        elif overlay.torn_bytes:
            # Under the lock a torn tail can only be a dead writer's; cut it before appending.
            with open(self.journal_path, "r+b") as f:
                f.truncate(overlay.offset)
                os.fsync(f.fileno())
            overlay.torn_bytes = 0
        return Snapshot(self, base, overlay)

    def _reset_journal(
        self, generation: int, base_size: int | None = None, base_crc: int | None = None
    ) -> None:
        head = encode_record(
            {
                "journal": JOURNAL_VERSION,
                "generation": generation,
                "base_size": base_size,
                "base_crc": base_crc,
            }
        )
        _atomic_write(self.journal_path, [head])
        self._overlay = None

    def _append(self, record: dict) -> None:
        line = encode_record(record)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, line, self.journal_path)
            self._sync(fd)
        finally:
            os.close(fd)
        self.writes += 1
        overlay = self._overlay
        if overlay is not None and overlay.generation >= 0:
            # We hold the lock and had read up to the end: the new line is the next one.
            overlay.apply(record)
            overlay.records += 1
            overlay.offset += len(line)
        else:
            self._refresh_overlay()

    def write(self, build: Callable[[Snapshot], tuple[dict | None, Any]]) -> Any:
        """Run ``build`` on a locked, current snapshot and append the one record it returns.

        ``build`` returns ``(record_or_None, result)``; raising inside it writes nothing. This is
        how every mutation is made: one journal line per call, whatever its size.
        """
        with self._writing() as snap:
            record, result = build(snap)
            if record is not None:
                self._append(record)
                self._compact_quietly(snap)
            return result

    def _compact_quietly(self, snap: Snapshot) -> None:
        try:
            self._maybe_compact(snap)
        except (OSError, StoreError) as e:
            # The write before is durable and acknowledged; a compaction that cannot finish (a
            # full disk) leaves the old base and journal, which stay valid.
            log.warning("compaction postponed: %s", e)

    def write_planned(
        self,
        plan: Callable[[Snapshot], Any],
        refresh: Callable[[Snapshot, Any, set[str]], Any],
        record_of: Callable[[Any], dict | None],
        attempts: int = 3,
    ) -> Any:
        """A batch write whose planning runs without the lock.

        ``plan(snapshot)`` runs on a snapshot, unlocked; under the lock, ``refresh(snapshot,
        result, ids)`` replans just the traces that changed since (usually none), and the one
        record ``record_of(result)`` is appended. If a compaction replaced the base meanwhile,
        planning starts over; only after ``attempts`` such races is it done under the lock.
        """
        for attempt in range(attempts):
            with self.snapshot() as snap:
                result = plan(snap)
                since = _version(snap)
            if not self.path.exists() and record_of(result) is None:
                return result  # nothing to write: a failed write creates no store
            with self._writing() as locked:
                changed = self._changed_since(since)
                if changed is None:
                    if attempt < attempts - 1:
                        continue
                    result = plan(locked)
                elif changed:
                    result = refresh(locked, result, changed)
                record = record_of(result)
                if record is not None:
                    self._append(record)
                    self._compact_quietly(locked)
                return result
        raise AssertionError("unreachable")

    def _changed_since(self, since: tuple[int, int | None, int] | None) -> set[str] | None:
        """Trace ids the journal changed after ``since`` (call under the lock, after
        :meth:`_prepare_locked`); None when that cannot be told (the base was replaced)."""
        overlay = self._overlay
        if since is None or overlay is None:
            return None
        generation, inode, offset = since
        if (overlay.generation, overlay.inode) != (generation, inode) or overlay.offset < offset:
            return None
        if overlay.offset == offset:
            return set()
        with open(self.journal_path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(overlay.offset - offset)
        changed: set[str] = set()
        for line in data.splitlines():
            _touched(decode_record(line), changed)
        return changed

    def append_spans(self, snap: Snapshot, items: list[tuple[str, list[dict]]]) -> list[list[int]]:
        """Append span payloads (call under the write lock); returns ``[offset, length]`` each."""
        if not items:
            return []
        lines = [encode_record({"trace_id": tid, "spans": spans}) for tid, spans in items]
        mode = _file_mode(self.path)
        fd = create_file(snap.spans_path, mode, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            write_all(fd, b"".join(lines), snap.spans_path)
            self._sync(fd)
        finally:
            os.close(fd)
        locs = []
        for line in lines:
            locs.append([start, len(line)])
            start += len(line)
        return locs

    def put_traces(
        self,
        items: list[tuple[dict, list[dict]]],
        extra_ops: Iterable[dict] = (),
        *,
        count_replaced: bool = True,
    ) -> tuple[int, int]:
        """Insert or replace traces (info document, span dicts) in one durable write.

        Returns (new, replaced) counts; ``count_replaced=False`` skips the lookups for callers
        whose ids are freshly generated (recording) and reports them all as new. ``extra_ops``
        ride in the same record (experiments the traces belong to, say), so they land together
        or not at all.
        """

        for doc, spans in items:
            check_trace(doc, spans)  # before the lock: a bad document never reaches the files

        def build(snap: Snapshot) -> tuple[dict | None, tuple[int, int]]:
            ops = list(extra_ops)
            ids = (doc["trace_id"] for doc, _spans in items)
            existing = snap.get_many(ids) if count_replaced else {}
            locs = self.append_spans(snap, [(doc["trace_id"], spans) for doc, spans in items])
            for (doc, _spans), loc in zip(items, locs, strict=True):
                ops.append({"op": "put", "doc": {**doc, "spans_at": loc}})
            counts = (len(items) - len(existing), len(existing))
            if not ops:
                return None, counts
            return (ops[0] if len(ops) == 1 else {"op": "batch", "ops": ops}), counts

        return self.write(build)

    def create_experiment(self, name: str) -> str:
        def build(snap: Snapshot) -> tuple[dict | None, str]:
            exps = snap.experiments()
            for e in exps:
                if e["name"] == name:
                    return None, e["experiment_id"]
            numeric = [int(e["experiment_id"]) for e in exps if e["experiment_id"].isdigit()]
            new_id = str(max(numeric, default=0) + 1)
            doc = {
                "experiment_id": new_id,
                "name": name,
                "creation_time_ms": int(time.time() * 1000),
            }
            return {"op": "exp", "doc": doc}, new_id

        return self.write(build)

    # -- compaction ----------------------------------------------------------------------------

    def _maybe_compact(self, snap: Snapshot) -> None:
        size = self._overlay.offset if self._overlay else 0
        base_size = snap.base.stat.st_size if snap.base.stat else 0
        limit = self.compact_bytes or max(COMPACT_MIN_BYTES, base_size // 4)
        if size > limit:
            self._compact_locked()

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        """Fold the journal into a new base file (atomic); returns what it did.

        ``vacuum`` also copies the live spans into a new span file and drops the old one, which
        reclaims the bytes of replaced traces and of writes a crash interrupted.
        """
        with self._writing():
            return self._compact_locked(vacuum)

    def _compact_locked(self, vacuum: bool = False) -> dict[str, int]:
        base = _Base(self.path)
        old_spans = self.spans_path_for(base.meta)
        new_spans = old_spans
        moved: dict[str, list[int]] = {}
        try:
            overlay = self._refresh_overlay()
            if overlay.generation != base.generation:
                overlay = Overlay()
            generation = base.generation + 1
            folded = overlay.records
            if vacuum:
                new_spans = self.path.with_name(f"{self.path.name}-spans.{generation}")
                moved = _copy_live_spans(base, old_spans, new_spans, overlay.merged(base))

            def traces() -> Iterator[tuple[str, bytes]]:
                for tid, raw, doc in overlay.merged(base):
                    if tid in moved:
                        doc = {**(doc or _loads_doc(base, tid, raw)), "spans_at": moved[tid]}
                    yield tid, raw if doc is None else orjson.dumps(doc)

            experiments = {**base.experiments, **overlay.experiments}
            meta = {**base.meta, "generation": generation}
            if vacuum:
                meta["spans_file"] = new_spans.name
            size, crc = _atomic_write(self.path, _layout(meta, experiments, traces()))
        finally:
            base.close()
        # A crash here leaves journal g beside base g+1: readers ignore it (invariant 4).
        self._reset_journal(generation, size, crc)
        self._index = None
        result = {"records": folded, "generation": generation}
        if vacuum and old_spans != new_spans:
            result["spans_bytes_before"] = old_spans.stat().st_size if old_spans.exists() else 0
            result["spans_bytes_after"] = new_spans.stat().st_size
            # Snapshots taken before hold the old file open; later readers use the new one.
            with contextlib.suppress(OSError):
                old_spans.unlink()
        removed = 0
        for orphan in orphan_files(self.path, new_spans):
            with contextlib.suppress(OSError):
                orphan.unlink()
                removed += 1
        if removed:
            result["orphans_removed"] = removed
        return result


def _copy_live_spans(
    base: _Base, old: Path, new: Path, docs: Iterable[tuple[str, bytes, dict | None]]
) -> dict[str, list[int]]:
    """Copy the span lines the documents point at into ``new`` (fsynced); new locations by id."""
    moved: dict[str, list[int]] = {}
    try:
        src = open(old, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        src = None
    try:
        fd = create_file(new, _file_mode(base.path))
        with open(fd, "wb") as dst:
            offset = 0
            for tid, raw, doc in docs:
                loc = (doc if doc is not None else _loads_doc(base, tid, raw)).get("spans_at")
                if not loc or src is None:
                    continue
                src.seek(loc[0])
                line = src.read(loc[1])
                dst.write(line)
                moved[tid] = [offset, len(line)]
                offset += len(line)
            dst.flush()
            os.fsync(dst.fileno())
    finally:
        if src is not None:
            src.close()
    _fsync_dir(new)
    return moved


# ---------------------------------------------------------------------------------------------
# TinyDB access to the base file


class TraceStorage:
    """A TinyDB storage for the base file, writing its one-document-per-line layout atomically.

    ``open_tinydb(path)`` gives a TinyDB whose tables read the store's documents with the usual
    TinyDB API (read-only use is safe at any time; writes bypass the journal, so only use them
    on a store no tracetag process is using).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def read(self) -> dict | None:
        base = _Base(self.path)
        try:
            if base.stat is None:
                return None
            traces = {tid: _loads_doc(base, tid, raw) for tid, raw in base.iter_raw()}
            return {"_meta": {"1": base.meta}, "experiments": base.experiments, "traces": traces}
        finally:
            base.close()

    def write(self, data: dict) -> None:
        meta = (data.get("_meta") or {}).get("1") or _new_meta()
        traces = ((k, orjson.dumps(v)) for k, v in (data.get("traces") or {}).items())
        _atomic_write(self.path, _layout(meta, data.get("experiments") or {}, traces))

    def close(self) -> None:
        pass


def open_tinydb(path: str | os.PathLike[str]) -> Any:
    """A ``tinydb.TinyDB`` over the base file; documents are keyed by trace / experiment id."""
    from tinydb import Storage, TinyDB
    from tinydb.table import Table

    class StrIdTable(Table):
        document_id_class = str  # type: ignore[assignment]  # trace ids, not numbers

    class _Storage(TraceStorage, Storage):
        pass

    class StoreDB(TinyDB):
        table_class = StrIdTable

    return StoreDB(str(resolve_store_path(path)), storage=_Storage)
