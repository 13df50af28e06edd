"""The documents the journal put (recorded or replaced traces), by id, each read from its
journal record only when asked for.

A journal of recorded traces holds whole documents: 15,000 of them are 10 MB of JSON, and a
checkpoint that held them parsed would cost every command 70 ms to load, though ``show ID``
needs one of them or none. So a checkpoint names where each unchanged put's record is in the
journal, and the document is read (``pread`` of that line, checksummed) when something asks
for it (the checkpoint also keeps each one's ``timestamp_ms``, so a page newest first parses
only the ones it reaches). A journal is never rewritten in place (a compaction writes a new
file; only a torn tail after the last whole record is ever cut), so the open file keeps those
bytes for as long as the documents may be asked for: the journal's inode, held open here, not
its name.
"""

from __future__ import annotations

import bisect
import os
import weakref
from collections.abc import Iterator, KeysView
from pathlib import Path
from typing import Any

from ..errors import StoreCorrupted
from .files import decode_record

# After this many documents read one by one, whoever asks reads them all (one read of the
# journal): a search or a check judges every one, ``show ID`` asks for one.
_ONE_BY_ONE = 32


class JournalFile:
    """A journal held open (its own descriptor, closed with the last reference)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = os.dup(fd)
        weakref.finalize(self, os.close, self.fd)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)


class Puts:
    """A mapping of trace id to the document the journal put for it now. A document not read
    yet is ``None`` in ``_docs`` and its record's (offset, length) is in ``_at``; ``_at`` also
    names the record of each document read or replayed unchanged since (a checkpoint names
    those instead of holding them)."""

    __slots__ = ("_at", "_docs", "_file", "_read", "_ts")

    def __init__(
        self,
        docs: dict[str, dict | None] | None = None,
        at: dict[str, tuple[int, int]] | None = None,
        file: JournalFile | None = None,
        ts: dict[str, int] | None = None,
    ):
        self._docs: dict[str, dict | None] = {} if docs is None else docs
        self._at: dict[str, tuple[int, int]] = {} if at is None else at
        self._file = file
        self._read = 0
        # Each document's timestamp_ms, known unread: a newest-first walk reads in that order.
        self._ts: dict[str, int] = {} if ts is None else ts

    def __contains__(self, tid: object) -> bool:
        return tid in self._docs

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Puts):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Puts({len(self._docs)} documents, {len(self._at)} in the journal)"

    def keys(self) -> KeysView[str]:
        return self._docs.keys()

    def get(self, tid: str) -> dict | None:
        if tid not in self._docs:
            return None
        return self[tid]

    def __getitem__(self, tid: str) -> dict:
        doc = self._docs[tid]
        if doc is not None:
            return doc
        self._read += 1
        if self._read > _ONE_BY_ONE:
            self._read_all()
        else:
            self._docs[tid] = self._read_one(tid, *self._at[tid])
        return self._docs[tid]  # type: ignore[return-value]

    def items(self) -> Iterator[tuple[str, dict]]:
        self._read_all()
        return iter(self._docs.items())  # type: ignore[arg-type]

    def values(self) -> Iterator[dict]:
        self._read_all()
        return iter(self._docs.values())  # type: ignore[arg-type]

    def put(self, tid: str, doc: dict, at: tuple[int, int] | None = None) -> None:
        """``doc`` as ``tid``'s document; ``at``: where its record is, when it is that
        record's document unchanged."""
        self._docs[tid] = doc
        self._ts[tid] = doc.get("timestamp_ms") or 0
        if at is None:
            self._at.pop(tid, None)
        else:
            self._at[tid] = at

    __setitem__ = put

    def discard(self, tid: str) -> None:
        self._docs.pop(tid, None)
        self._at.pop(tid, None)
        self._ts.pop(tid, None)

    def copy(self) -> Puts:
        return Puts(dict(self._docs), dict(self._at), self._file, dict(self._ts))

    def saved(self) -> dict[str, Any]:
        """What a checkpoint keeps: every id in order, the record of each unchanged document
        (offset, length; -1 for none) and the changed documents themselves."""
        at: list[int] = []
        docs = {}
        for tid, doc in self._docs.items():
            where = self._at.get(tid)
            if where is None:
                docs[tid] = doc
                at += (-1, -1)
            else:
                at += where
        ts = [self._ts[tid] for tid in self._docs]
        return {"put_ids": list(self._docs), "put_at": at, "put_ts": ts, "puts": docs}

    @classmethod
    def loaded(cls, state: dict[str, Any], file: JournalFile) -> Puts:
        """The inverse of :meth:`saved`, reading from ``file``; ``ValueError`` if malformed."""
        ids, at, inline, ts = state["put_ids"], state["put_at"], state["puts"], state["put_ts"]
        if len(at) != 2 * len(ids) or at[::2].count(-1) != len(inline) or len(ts) != len(ids):
            raise ValueError("put locations do not match the ids")
        docs: dict[str, dict | None] = dict.fromkeys(ids)
        where = dict(zip(ids, zip(at[::2], at[1::2], strict=True), strict=True))
        for tid in inline:
            docs[tid] = inline[tid]
            del where[tid]
        return cls(docs, where, file, dict(zip(ids, ts, strict=True)))

    def _read_one(self, tid: str, offset: int, length: int) -> dict:
        assert self._file is not None  # (a document not read yet was loaded with its file)
        return self._put_of(tid, offset, self._decode(offset, self._file.read(offset, length)))

    def _read_all(self, required: list[bytes] | None = None) -> None:
        """Read the documents not read yet (those whose record holds all of ``required``)."""
        for _read in self._reading(self._unread(required)):
            pass

    def _unread(
        self, required: list[bytes] | None
    ) -> tuple[bytes, int, dict[str, tuple[int, int]]]:
        """One read of the journal holding every document not read yet: (its bytes, where
        they start, the (offset, length) of each of those whose record holds ``required``)."""
        wanted = [(self._at[tid], tid) for tid, doc in self._docs.items() if doc is None]
        if not wanted:
            return b"", 0, {}
        assert self._file is not None  # (a document not read yet was loaded with its file)
        start = min(o for (o, _n), _t in wanted)
        data = self._file.read(start, max(o + n for (o, n), _t in wanted) - start)
        holding = _lines_holding(data, start, wanted, required) if required else None
        return data, start, {t: at for at, t in wanted if holding is None or at[0] in holding}

    def _reading(
        self, unread: tuple[bytes, int, dict[str, tuple[int, int]]], order: list[str] | None = None
    ) -> Iterator[tuple[str, dict]]:
        """(id, document) of each id of ``order`` (None: those ``unread`` names; each one read
        or named there), its document read first (each record parsed once)."""
        data, start, where = unread
        records: dict[int, dict[str, dict]] = {}  # (a batch's line holds many: read once)
        for tid in list(where) if order is None else order:
            doc = self._docs[tid]
            if doc is None:
                offset, length = where[tid]
                found = records.get(offset)
                if found is None:
                    line = data[offset - start : offset - start + length]
                    found = records[offset] = self._decode(offset, line)
                doc = self._docs[tid] = self._put_of(tid, offset, found)
            yield tid, doc

    def newest_first(self, required: list[bytes] | None) -> Iterator[tuple[tuple[int, str], dict]]:
        """:meth:`holding` newest first (ties by id), as ((-timestamp_ms, id), document): a
        walk that stops after a page parses no more of them than it reaches."""
        ts, unread = self._ts, self._unread(required)
        reached = (t for t, doc in self._docs.items() if doc is not None or t in unread[2])
        for tid, doc in self._reading(unread, sorted(reached, key=lambda t: (-ts[t], t))):
            yield (-ts[tid], tid), doc

    def holding(self, required: list[bytes] | None) -> Iterator[tuple[str, dict]]:
        """(id, document) of each put whose JSON may hold every one of ``required`` (bytes
        every match of a filter holds): of those not read yet, only the ones whose record's
        bytes hold them are read (the same encoder wrote them as the base's lines)."""
        self._read_all(required)
        return ((tid, doc) for tid, doc in self._docs.items() if doc is not None)

    def _decode(self, offset: int, line: bytes) -> dict[str, dict]:
        """The documents the record ``line`` puts, by id."""
        try:
            return puts_in(decode_record(line))
        except (ValueError, KeyError, TypeError) as e:
            return self._bad(offset, str(e))

    def _put_of(self, tid: str, offset: int, found: dict[str, dict]) -> dict:
        return found.get(tid) or self._bad(offset, f"no put of {tid} there")

    def _bad(self, offset: int, why: str) -> Any:
        path = self._file.path if self._file is not None else "journal"
        raise StoreCorrupted(
            f"{path}: damaged journal at byte {offset} ({why}); run 'tracetag store check'"
        )


def _lines_holding(
    data: bytes, start: int, wanted: list[tuple[tuple[int, int], str]], required: list[bytes]
) -> set[int]:
    """The offsets of the ``wanted`` lines of ``data`` (read from ``start``) that hold every
    one of ``required``: one pass of the longest over the whole buffer, then the rest in the
    few lines it was found in."""
    starts = sorted({offset for (offset, _n), _tid in wanted})
    ends = {offset: offset + n for (offset, n), _tid in wanted}
    needle = max(required, key=len)
    found: set[int] = set()
    i = data.find(needle)
    while i >= 0:
        k = bisect.bisect_right(starts, start + i) - 1
        if k >= 0 and start + i < ends[starts[k]]:
            found.add(starts[k])
        i = data.find(needle, i + 1)
    return {
        o
        for o in found
        if all(r in data[o - start : ends[o] - start] for r in required if r is not needle)
    }


def puts_in(rec: dict, into: dict[str, dict] | None = None) -> dict[str, dict]:
    """The documents a journal record puts, by id (the last of a batch's puts of one wins)."""
    into = {} if into is None else into
    op = rec.get("op")
    if op == "put":
        into[rec["doc"]["trace_id"]] = rec["doc"]
    elif op == "batch":
        for sub in rec["ops"]:
            puts_in(sub, into)
    return into
