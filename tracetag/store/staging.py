"""Moving span records and documents in bulk: a big import staged beside the store and folded
into the base in one atomic write, and a vacuum's copy of the live span records.

A big import (:class:`Staged`, then :func:`fold`) does not go through the journal: every
command would replay a journal holding a million documents, and the importing process would
hold them all. Its traces are checked and encoded (:func:`encode_staged`, in worker processes
or not) and written into two files beside the store (their documents, their span records), so
memory follows a piece of the input, not the file; nothing the store reads changes meanwhile.
Then, under the lock, the staged span records join the span file (appended to it; or, when it
is the smaller, it is appended to them and they become the span file, as after a vacuum: a
first import copies no span bytes) and a new base is written as a compaction writes one (the
journal folded in), with the staged documents added and the traces they replace left out: one
atomic rename, so the whole import lands or none of it does. A crash before it leaves only the
staged files or an unnamed span file (removed by the next compaction, named by ``store
check``) and, at worst, span bytes no document points at (reclaimed by ``store vacuum``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..filters.spans import span_summary
from ..schema import check_trace, encode_spans
from .base import BaseFile, loads_doc
from .files import fsync_dir, id_from_key, id_key, record_line
from .paths import PRIVATE_DIR, create_file, file_mode

if TYPE_CHECKING:
    from .local import Store


class Staged:
    """Traces checked and encoded into files beside the store, waiting to be folded in."""

    def __init__(self, store: Store):
        BaseFile(store.path).close()  # (refuses a file that is not a store before anything)
        folder = store.path.parent
        self._made_folder = None if folder.exists() else folder
        folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self._store_path = store.path
        stem = f"{store.path.name}-import.{os.getpid()}"
        self.docs_path = store.path.with_name(stem)
        self.spans_path = store.path.with_name(stem + "-spans")
        mode = file_mode(store.path)
        self._docs = open(create_file(self.docs_path, mode), "wb")  # noqa: SIM115 - discard()
        self._spans = open(create_file(self.spans_path, mode), "wb")  # noqa: SIM115
        self.ids: dict[str, int] = {}  # id -> its line (a trace given twice: the last wins)
        self.experiments: list[dict[str, Any]] = []  # records of experiments to create
        self._lines = 0
        self._span_bytes = 0

    def put(self, trace_id: str, body: bytes, record: bytes) -> None:
        """Stage one trace :func:`encode_staged` checked and encoded (perhaps elsewhere)."""
        where = b"%d %d " % (self._span_bytes, len(record))
        self._docs.write(where + id_key(trace_id) + b"\t" + body + b"\n")
        self._spans.write(record)
        self._span_bytes += len(record)
        self.ids[trace_id] = self._lines
        self._lines += 1

    def finish(self) -> None:
        """Close the staged files. Not fsynced: nothing ever points at them; their bytes reach
        the store through a copy that is (the base; the span file, see :meth:`place_spans`)."""
        for fh in (self._docs, self._spans):
            fh.close()

    def place_spans(self, old: Path, fresh: Path) -> tuple[Path, int, int]:
        """Under the lock: put the staged span records where the new base can point at them
        (fsynced). Returns (the span file then, where the staged records start in it, how far
        the old records moved).

        The cheaper of two copies: when the store's span file ``old`` is small beside them
        (a first import, say), its records are appended to the staged ones and that file
        becomes the span file ``fresh`` (named by the base, as a vacuum's is), the old
        documents' locations shifted; else the staged records are appended to ``old``."""
        try:
            old_size = old.stat().st_size
        except FileNotFoundError:
            old_size = 0
        if old_size * 4 > self._span_bytes:
            return old, _append_file(self.spans_path, old), 0
        if old_size:
            _append_file(old, self.spans_path)
        else:
            with open(self.spans_path, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(self.spans_path, fresh)
        fsync_dir(fresh)  # (if the base never names it, it is an orphan a compaction removes)
        return fresh, 0, self._span_bytes

    def documents(self, spans_start: int) -> Iterator[tuple[str, bytes]]:
        """(id, document bytes) of each staged trace once, its ``spans_at`` pointing at its
        record in the store's span file (the staged records start at ``spans_start`` there)."""
        with open(self.docs_path, "rb") as fh:
            for n, line in enumerate(fh):
                offset, length, rest = line.split(b" ", 2)
                key, body = rest.rstrip(b"\n").split(b"\t", 1)
                tid = id_from_key(key[1:-1])
                if self.ids.get(tid) != n:
                    continue  # given again later in the import
                at = b',"spans_at":[%d,%s]}' % (spans_start + int(offset), length)
                yield tid, body[:-1] + at

    def discard(self) -> None:
        for fh in (self._docs, self._spans):
            fh.close()
        for path in (self.docs_path, self.spans_path):
            path.unlink(missing_ok=True)
        if self._made_folder is not None and not self._store_path.exists():
            with contextlib.suppress(OSError):  # (a failed import leaves no folder behind)
                self._made_folder.rmdir()


def fold(store: Store, staged: Staged) -> dict:
    """Insert or replace the staged traces in one atomic write that replaces the base (a
    compaction with them added). Returns its result with ``new`` and ``updated`` counts."""
    staged.finish()
    with store._writing():
        return store._compact_locked(staged=staged)


def _append_file(src: Path, dst: Path) -> int:
    """Append the bytes of ``src`` to ``dst`` (fsynced); where they start in it. A failed
    copy is cut off (nothing points at those bytes yet)."""
    fd = create_file(dst, file_mode(dst), os.O_WRONLY | os.O_APPEND)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        with open(src, "rb") as fh, open(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(fh, out, 1 << 20)
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, start)
        raise
    finally:
        os.close(fd)
    return start


def shifted(doc: dict[str, Any], by: int) -> dict[str, Any]:
    """``doc`` with its span record ``by`` bytes further on in the span file."""
    at = doc.get("spans_at")
    return {**doc, "spans_at": [at[0] + by, at[1]]} if at else doc


def encode_staged(doc: dict[str, Any], spans: list[dict[str, Any]]) -> tuple[str, bytes, bytes]:
    """One trace checked as the store checks it and encoded as it stores it: (id, document
    JSON with its span summary, span record line). Pure, so import workers can run it."""
    check_trace(doc, spans, encode=False)
    record = record_line(encode_spans(doc["trace_id"], spans))
    return doc["trace_id"], orjson.dumps({**doc, **span_summary(spans)}), record


def copy_live_spans(
    base: BaseFile, old: Path, new: Path, docs: Iterable[tuple[str, bytes, dict | None]]
) -> dict[str, list[int]]:
    """Copy the span lines the documents point at into ``new`` (fsynced); new locations by id."""
    moved: dict[str, list[int]] = {}
    try:
        src = open(old, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        src = None
    try:
        fd = create_file(new, file_mode(base.path))
        with open(fd, "wb") as dst:
            offset = 0
            for tid, raw, doc in docs:
                loc = (doc if doc is not None else loads_doc(base, tid, raw)).get("spans_at")
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
    fsync_dir(new)
    return moved
