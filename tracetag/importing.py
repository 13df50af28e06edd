"""``tracetag import`` and the OTLP receiver's writes: files and requests into a store.

MLflow and tracetag JSON carry whole traces, which replace what the store has. OTLP carries
spans, and the spans of one trace may come in several requests or files: they are assembled by
trace id, and a trace already stored gets the new spans merged in, inside the write.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ImportFormatError, InvalidInput
from .formats import BOM, IMPORT_FORMATS, invalid_json
from .model import trace_to_doc
from .schema import check_trace, next_experiment_id

if TYPE_CHECKING:
    from .api import TracetagClient
    from .backend import Backend, Merge
    from .otlp import Assembled, OtelSpan

__all__ = ["ImportSummary", "import_files", "import_sources", "ingest_otlp"]


class ImportSummary:
    def __init__(self, new: int, updated: int, invalid: Sequence[tuple[int | str, str]]):
        self.new = new
        self.updated = updated
        self.invalid = list(invalid)

    @property
    def imported(self) -> int:
        return self.new + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "new": self.new,
            "updated": self.updated,
            "invalid": [{"line": n, "error": m} for n, m in self.invalid],
        }


def import_files(
    client: TracetagClient,
    files: Sequence[str],
    skip_invalid: bool = False,
    format: str | None = None,
    experiment: str | None = None,
    labels: str = "tag",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import files by name (``-``: stdin) in one write: big JSON files into the file store a
    piece at a time (:func:`import_big_files`; ``progress(bytes read, bytes in all)`` as it
    goes), anything else read whole."""
    if staged_import_applies(client, files, format):
        return import_big_files(client, files, skip_invalid, progress)
    sources = [(file, read_input(file)) for file in files]
    return import_sources(client, sources, skip_invalid, format, experiment, labels)


def read_input(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as e:
        raise InvalidInput(f"{file}: cannot read ({e.strerror})") from None


def import_sources(
    client: TracetagClient,
    sources: Sequence[tuple[str, bytes]],
    skip_invalid: bool,
    format: str | None,
    experiment: str | None,
    labels: str,
) -> ImportSummary:
    """Import ``sources`` in one write (see :meth:`TracetagClient.import_sources`)."""
    from .copying import experiment_record
    from .interop import parse_traces
    from .otlp import detect_format, read_otlp

    if format is not None and format not in IMPORT_FORMATS:
        raise InvalidInput(f"unknown import format {format!r}; use json or otlp")
    items: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    invalid: list[tuple[int | str, str]] = []
    otlp_spans: list[OtelSpan] = []
    many = len(sources) > 1
    for source, data in sources:
        bad: list[tuple[int, str]]
        if (format or detect_format(data)) == "otlp":
            spans, bad = read_otlp(data, source, skip_invalid=skip_invalid)
            otlp_spans += spans
        else:
            parsed = parse_traces(data, source, skip_invalid=skip_invalid)
            items += [trace_to_doc(t) for t in parsed.traces]
            bad = parsed.invalid
        invalid += [(n, f"{source}: {m}" if many else m) for n, m in bad]
    with client.snapshot() as snap:
        exps = snap.experiments()
    names = {e["name"] for e in exps}
    known = {e["experiment_id"] for e in exps}
    extra: list[dict[str, Any]] = []
    merge = None
    if otlp_spans:
        eid = _experiment_id(experiment, exps)
        if (
            eid is not None and eid not in known
        ):  # a new name: the experiment is made in the same write
            extra.append(experiment_record({"name": experiment}, eid, names))
            known.add(eid)
        assembled, rejected = otlp_traces(otlp_spans, eid, labels, skip_invalid)
        invalid += [(a.doc["trace_id"], msg) for a, msg in rejected]
        items += [(a.doc, a.spans) for a in assembled.values()]
        merge = otlp_merge(assembled)
    now = int(time.time() * 1000)
    new_exps = sorted({doc["experiment_id"] for doc, _s in items} - known)
    extra += [experiment_record(None, e, names, now) for e in new_exps]
    if not items:
        return ImportSummary(0, 0, invalid)
    new, updated = client.store.put_traces(items, extra, merge=merge)
    return ImportSummary(new, updated, invalid)


def _experiment_id(experiment: str | None, exps: list[dict[str, Any]]) -> str | None:
    """The id of ``experiment`` (an id or a name); a name not in use gets the next id."""
    if experiment is None:
        return None
    for e in exps:
        if experiment == e["experiment_id"]:
            return experiment
    for e in exps:
        if experiment == e["name"]:
            return str(e["experiment_id"])
    if not experiment.strip():
        raise InvalidInput("experiment name is empty")
    return next_experiment_id(e["experiment_id"] for e in exps)


def ingest_otlp(
    store: Backend, spans: Sequence[OtelSpan], experiment_id: str, labels: str
) -> tuple[int, list[tuple[str, int, str]]]:
    """One OTLP request's spans in one write; (traces written, [(id, spans, why)] refused)."""
    assembled, rejected = otlp_traces(spans, experiment_id, labels, True)
    refused = [(a.doc["trace_id"], len(a.spans), msg) for a, msg in rejected]
    if assembled:
        items = [(a.doc, a.spans) for a in assembled.values()]
        store.put_traces(items, count_replaced=False, merge=otlp_merge(assembled))
    return len(assembled), refused


def otlp_traces(
    spans: Sequence[OtelSpan], experiment_id: str | None, labels: str, skip_invalid: bool
) -> tuple[dict[str, Assembled], list[tuple[Assembled, str]]]:
    """OTLP spans as traces by id, each checked as the store will; a trace that fails is
    named (and left out, with why, if ``skip_invalid``)."""
    from .otlp import LABEL_MODES, assemble

    if labels not in LABEL_MODES:
        raise InvalidInput(f"unknown labels mode {labels!r}; use {', '.join(LABEL_MODES)}")
    out: dict[str, Assembled] = {}
    rejected: list[tuple[Assembled, str]] = []
    for a in assemble(spans, experiment_id, labels):
        try:
            check_trace(a.doc, a.spans)
        except InvalidInput as e:
            if not skip_invalid:
                raise ImportFormatError(f"trace {a.doc['trace_id']}: {e}") from None
            rejected.append((a, str(e)))
            continue
        out[a.doc["trace_id"]] = a
    return out, rejected


def otlp_merge(assembled: dict[str, Assembled]) -> Merge:
    from .otlp import merge_trace

    def merge(
        old: dict[str, Any], old_spans: list[dict[str, Any]], new: dict[str, Any], _s: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return merge_trace(old, old_spans, assembled[new["trace_id"]])

    return merge


# -- big files: read in batches, staged beside the file store, folded in at once -------------

BIG_FILE = 64 << 20  # bytes: a JSON file at least this big is imported this way
_ARRAY_ITEM_MAX = 64 << 20  # one array item longer than this is refused, not buffered


def staged_import_applies(client: TracetagClient, files: Sequence[str], format: str | None) -> bool:
    """Whether ``files`` are imported by :func:`import_big_files`: into the file store, MLflow
    or tracetag JSON (not OTLP, whose spans must all be assembled first), one over
    ``BIG_FILE``, none of them stdin."""
    from .store import Store

    if not isinstance(client.store, Store) or format == "otlp" or "-" in files:
        return False
    try:
        sizes = [os.path.getsize(f) for f in files]
    except OSError:
        return False  # (the usual path says which file cannot be read)
    return max(sizes, default=0) >= BIG_FILE and all(_sniff_json(f) for f in files)


def _sniff_json(path: str) -> bool:
    import io

    from .otlp import is_json_request

    head = _head(path, 1 << 20)
    if head[:1] == b"[":
        first = _array_values(io.BytesIO(head), "-", 1 << 20)
        try:
            _number, value = next(first)
        except (StopIteration, ImportFormatError):
            return True  # (an empty array; or the import says what is wrong)
        return not (isinstance(value, dict) and is_json_request(value))
    if head[:1] != b"{":
        return False  # protobuf: OTLP
    try:
        value = orjson.loads(head.split(b"\n", 1)[0])
    except orjson.JSONDecodeError:
        return False  # one document over several lines: read whole, as before
    return not is_json_request(value)


def import_big_files(
    client: TracetagClient,
    files: Sequence[str],
    skip_invalid: bool,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import big JSON files into the file store with memory bounded by a piece of the file:
    each trace is read, checked and staged beside the store (store/staging.py; JSON lines by
    worker processes), and all of them are folded into the base in one atomic write at the
    end, so a bad record still aborts the whole import (nothing is written) unless
    ``skip_invalid``."""
    from .copying import experiment_record
    from .store import Store
    from .store.staging import Staged, fold

    store = client.store
    assert isinstance(store, Store)  # (staged_import_applies chose this way)
    staged = Staged(store)
    invalid: list[tuple[int | str, str]] = []
    experiments: set[str] = set()
    many = len(files) > 1
    sizes = [os.path.getsize(f) for f in files]
    total = sum(sizes)
    before = 0  # bytes of the files before
    try:
        for file, size in zip(files, sizes, strict=True):
            for number, unit, found, pos in _encoded(file):
                if progress is not None and number % 1024 == 0:
                    progress(before + pos, total)
                if isinstance(found, str):
                    if not skip_invalid:
                        raise ImportFormatError(f"{file}: {unit} {number}: {found}")
                    invalid.append((number, f"{file}: {found}" if many else found))
                    continue
                experiment, trace_id, body, record = found
                staged.put(trace_id, body, record)
                experiments.add(experiment)
            before += size
        if progress is not None:
            progress(total, total)
        if not staged.ids:
            return ImportSummary(0, 0, invalid)
        with client.snapshot() as snap:
            exps = snap.experiments()
        names = {e["name"] for e in exps}
        now = int(time.time() * 1000)
        for eid in sorted(experiments - {e["experiment_id"] for e in exps}):
            staged.experiments.append(experiment_record(None, eid, names, now))
        result = fold(store, staged)
        return ImportSummary(result["new"], result["updated"], invalid)
    finally:
        staged.discard()


Encoded = tuple[str, str, bytes, bytes]  # experiment id, trace id, document, span record


def _encode(value: Any) -> Encoded | str:
    """A record read from a file, checked and encoded for the store (staging.py), or what is
    wrong with it."""
    from .interop import trace_from_any
    from .store.staging import encode_staged

    try:
        if isinstance(value, Exception):
            raise value
        doc, spans = trace_to_doc(trace_from_any(value))
        return (doc["experiment_id"], *encode_staged(doc, spans))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as e:
        return str(e) if isinstance(e, ValueError | InvalidInput) else f"missing or wrong field {e}"


def _encoded(path: str) -> Iterator[tuple[int, str, Encoded | str, int]]:
    """(number, ``line`` or ``item``, the record encoded or what is wrong with it, bytes of
    the file read so far) of each record of a file, in order. JSON lines are encoded by worker
    processes, a piece of the file each, when this process may fork (one thread): reading,
    converting and checking is nearly all of an import's time, and it parallelises."""
    workers = _workers(path)
    if workers < 2:
        for number, unit, value, pos in _records(path):
            yield number, unit, _encode(value), pos
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers, _worker_signals) as pool:
        before = 0  # lines in the pieces before
        for count, end, results in pool.imap(_encode_piece, _pieces(path)):
            for lineno, found in results:
                yield before + lineno, "line", found, end
            before += count


def _worker_signals() -> None:
    """A worker takes no signal handler of this process's (a recorder's SIGTERM handler would
    flush a queue the worker does not have, and keep the pool waiting for it to end): SIGTERM
    ends it, as the pool expects, and Ctrl-C is this process's to handle."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _workers(path: str) -> int:
    """How many processes encode ``path``: one per core for JSON lines, when forking is safe."""
    import threading

    if not hasattr(os, "fork") or threading.active_count() > 1 or _is_array(path):
        return 1
    return min(os.cpu_count() or 1, 4)


def _start(fh: Any) -> int:
    """Where the JSON of the file ``fh`` starts (after a byte order mark); ``fh`` is left
    there."""
    start = len(BOM) if fh.read(len(BOM)) == BOM else 0
    fh.seek(start)
    return start


def _head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of JSON of the file at ``path``, from its first non-space."""
    with open(path, "rb") as fh:
        _start(fh)
        return fh.read(size).lstrip()


def _is_array(path: str) -> bool:
    return _head(path, 1 << 16)[:1] == b"["


def _line_value(line: bytes) -> Any:
    """One JSON lines record parsed, or the ValueError saying it is not JSON (given back, not
    raised: the caller names its line)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return ValueError(invalid_json(e))


_PIECE = 4 << 20  # bytes of JSON lines a worker encodes at a time


def _pieces(path: str) -> Iterator[tuple[str, int, int]]:
    """(path, start, end) of consecutive pieces of whole lines."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        start = _start(fh)
        while start < size:
            fh.seek(min(start + _PIECE, size))
            fh.readline()  # to the end of the line the piece ends in
            end = min(fh.tell(), size)
            yield path, start, end
            start = end


def _encode_piece(
    piece: tuple[str, int, int],
) -> tuple[int, int, list[tuple[int, Encoded | str]]]:
    """In a worker: (lines in the piece, where it ends, [(line number within it, encoded or
    error)])."""
    path, start, end = piece
    with open(path, "rb") as fh:
        fh.seek(start)
        lines = fh.read(end - start).split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    out: list[tuple[int, Encoded | str]] = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            out.append((lineno, _encode(_line_value(line))))
    return len(lines), end, out


def _records(path: str) -> Iterator[tuple[int, str, Any, int]]:
    """(number, ``line`` or ``item``, JSON value or the error reading it, bytes of the file
    read so far) of each record of a JSON lines file or a JSON array, read a piece at a time."""
    array = _is_array(path)
    with open(path, "rb") as fh:
        pos = _start(fh)
        if array:
            for number, value in _array_values(fh, path, _ARRAY_ITEM_MAX):
                yield number, "item", value, fh.tell()
            return
        for lineno, line in enumerate(fh, 1):
            pos += len(line)
            if line.strip():
                yield lineno, "line", _line_value(line), pos


def _array_values(fh: Any, source: str, item_max: int) -> Iterator[tuple[int, Any]]:
    """The items of the JSON array in ``fh``, one at a time (``json``'s ``raw_decode`` on a
    moving window of the text, so an item is held, never the array)."""
    import codecs
    import json

    decoder = json.JSONDecoder()
    text_of = codecs.getincrementaldecoder("utf-8")()
    buf, pos, number, eof = "", 0, 0, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = fh.read(1 << 20)
        eof = not chunk
        buf = buf[pos:] + text_of.decode(chunk, final=eof)
        pos = 0
        return True

    def skip_space() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or not more():
                return

    skip_space()
    if buf[pos : pos + 1] != "[":
        raise ImportFormatError(f"{source}: not a JSON array")
    pos += 1
    skip_space()
    if buf[pos : pos + 1] == "]":
        return
    while True:
        number += 1
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as e:
                if len(buf) - pos > item_max or not more():
                    raise ImportFormatError(
                        f"{source}: item {number}: invalid JSON ({e.msg})"
                    ) from None
        yield number, value
        pos = end
        skip_space()
        sep = buf[pos : pos + 1]
        pos += 1
        if sep == "]":
            return
        if not sep:
            raise ImportFormatError(f"{source}: item {number}: the file ends before the ']'")
        if sep != ",":
            raise ImportFormatError(f"{source}: item {number}: expected ',' or ']' after it")
        skip_space()
