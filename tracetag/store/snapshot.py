"""A consistent read view: one open base file with the journal replayed over it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreCorrupted, TraceNotFound
from ..filters.evaluate import (
    compile_filter,
    required_span_bytes,
    tag_equalities,
    tag_keys_read,
)
from ..grouping import Groups
from ..query import is_newest_first
from .base import BaseFile, loads_doc
from .columns import group_rows, search_ids, value_counts
from .files import decode_record
from .idindex import DamagedIndex, IdIndex, columns_for, order_for, tags_for
from .journal import Overlay
from .ordered import RARE, rarest_tag, walk
from .spantext import span_file_plan

if TYPE_CHECKING:
    from .local import Store


DEFAULT_EXPERIMENT = {"experiment_id": "0", "name": "Default", "creation_time_ms": 0}


def read_spans_at(path: Path, doc: dict, fh: Any, raw: bytes | None = None) -> list[dict]:
    """The spans of ``doc`` from the span file ``path`` (``fh``: that file, already open;
    ``raw``: its record, when the caller has already read it)."""
    loc = doc.get("spans_at")
    if not loc:
        return []
    try:
        if raw is None:
            raw = read_span_record(path, loc, fh)
        rec = decode_record(raw.rstrip(b"\n"))
        if rec.get("trace_id") != doc["trace_id"]:
            raise ValueError("another trace's spans")
    except (OSError, ValueError):
        raise StoreCorrupted(
            f"{path}: damaged span file, spans of {doc['trace_id']} unreadable"
        ) from None
    return rec["spans"]


def read_span_record(path: Path, loc: list[int], fh: Any) -> bytes:
    if fh is None:
        fh = open(path, "rb")  # noqa: SIM115 - only reached when the file is missing
    # One system call per record (a seek and a buffered read cost two, and read ahead 8 KiB
    # that the next record, elsewhere in the file, does not use).
    data: bytes = os.pread(fh.fileno(), loc[1], loc[0])
    return data


def _reporting(
    rows: Iterator[tuple[str, bytes, dict | None]], progress: Callable[[int, int], None], total: int
) -> Iterator[tuple[str, bytes, dict | None]]:
    """``rows``, calling ``progress(bytes done, total)`` every 4,096 of them."""
    done = 0
    for n, row in enumerate(rows):
        done += len(row[1]) + len(row[0]) + 6
        if n % 4096 == 0:
            progress(done, total)
        yield row


def _as_set(experiment_ids: Iterable[Any] | None) -> set[str] | None:
    return None if experiment_ids is None else {str(e) for e in experiment_ids}


def size_mismatch(path: Path, actual: int, expected: int) -> StoreCorrupted:
    return StoreCorrupted(
        f"{path}: damaged store, {actual} bytes where {expected} were written; "
        "run 'tracetag store check'"
    )


class Snapshot:
    """A consistent read view: one base file handle plus the journal replayed over it."""

    def __init__(self, store: Store, base: BaseFile, overlay: Overlay):
        self.store = store
        self.base = base
        self.overlay = overlay
        self.spans_path = store.spans_path_for(base.meta)
        # Opened now, so that a vacuum replacing the span file cannot pull it from under us.
        self._spans_fh: Any = None
        self._last_record: tuple[Any, bytes] = (None, b"")
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
        *,
        order: Any = None,
        after: tuple[Any, ...] | None = None,
        limit: int | None = None,
        **_pushdown: Any,
    ) -> Iterator[tuple[dict, bytes | None]]:
        """(document, its JSON bytes or None) for each document where ``predicate`` is True.
        (The filter, order and limit a database would push down are not used: the scan is the
        plan.)

        The bytes are given when they are exactly the document (no journal change), so a
        caller that must hold many matches can keep the compact bytes instead of the dict.
        ``required`` are byte strings every match must contain: base lines without them are
        skipped unparsed, which is most of the cost of a selective search. Lines the journal
        changed are always parsed, since their JSON on disk is not what is matched.
        ``progress(done, total)`` is called every few thousand documents, in bytes of the base.
        """
        node = _pushdown.get("node")
        planned = self._through_span_file(predicate, experiment_ids, node)
        if planned is None:
            planned = self._through_indexes(
                predicate, required, experiment_ids, node, order, after, limit
            )
        if planned is not None:
            yield from planned
            return
        rows = None
        if required and progress is None:
            needle = max(required, key=len)
            rows = self.overlay.holding(self.base, needle, self.get)
            if rows is not None:  # (the byte search checked the needle)
                required = [r for r in required if r is not needle]
        if rows is None:
            rows = self.overlay.merged(self.base)
            if progress is not None:
                rows = _reporting(rows, progress, self.base.stat.st_size if self.base.stat else 0)
        for tid, raw, changed in rows:
            if changed is None:
                if required and not all(r in raw for r in required):
                    continue
                doc, raw_out = loads_doc(self.base, tid, raw), raw
            else:
                doc, raw_out = changed, None
            if experiment_ids is not None and doc["experiment_id"] not in experiment_ids:
                continue
            if predicate(doc) is True:
                yield doc, raw_out

    def _big(self) -> bool:
        """Whether the base is big enough to be read through indexes (idindex.py)."""
        base = self.base
        return (
            base._fh is not None
            and base.stat is not None
            and base.stat.st_size >= self.store.id_index_min_bytes
        )

    def _through_span_file(
        self, predicate: Callable[[dict], bool | None], experiment_ids: set[str] | None, node: Any
    ) -> list[tuple[dict, bytes | None]] | None:
        """The matches of a filter that requires text of the spans, read through the traces
        whose span records hold it (spantext.py), when the base is big enough to have an id
        index and few enough records hold it. None: plan otherwise."""
        needles = required_span_bytes(node)
        if not needles or self._spans_fh is None or not self._big():
            return None
        index = self.store._index_for(self.base)
        if not isinstance(index, IdIndex):
            return None  # (being built: lookups by id would each search the base)
        plan = span_file_plan(self._spans_fh, needles, len(index))
        if plan is None:
            return None
        out: list[tuple[dict, bytes | None]] = []
        for tid in plan[1]:
            doc = self.get(tid)
            if doc is None or (
                experiment_ids is not None and doc["experiment_id"] not in experiment_ids
            ):
                continue
            if predicate(doc) is True:
                out.append((doc, None))
        return out

    def _through_indexes(
        self,
        predicate: Callable[[dict], bool | None],
        required: list[bytes] | None,
        experiment_ids: set[str] | None,
        node: Any,
        order: Any,
        after: tuple[Any, ...] | None,
        limit: int | None,
    ) -> list[tuple[dict, bytes | None]] | None:
        """The matches read through the indexes beside a big base, when they serve: a page in
        the default order walked newest first, and the traces a ``tags.K = 'V'`` of the filter
        points to. None: scan instead (see ordered.py)."""
        base = self.base
        if not self._big():
            return None
        index = order_for(base)
        if index is None:
            self.store._index_for(base)  # builds the indexes, or has them built
            index = order_for(base)
            if index is None:
                return None
        try:
            positions = self._tagged(node, len(index))
            newest = is_newest_first(order)
            if positions is None and not (newest and limit is not None):
                return None
            return walk(
                base,
                self.overlay,
                index,
                predicate,
                required,
                experiment_ids,
                after if newest else None,  # (other orders: the caller sorts and pages)
                limit if newest else None,
                positions,
                self.get,
                tag_keys_read(node),
            )
        except DamagedIndex:
            return None  # (removed, and built again by the next search)
        finally:
            index.close()

    def _tagged(self, node: Any, documents: int, share: int = 4) -> list[int] | None:
        """Positions of the base documents with the filter's rarest required tag; None when
        the filter requires none, or every tag it requires is on more than a ``share``-th of
        the traces (a quarter: too common to beat a scan)."""
        pairs = tag_equalities(node)
        tags = tags_for(self.base) if pairs else None
        if tags is None:
            return None
        try:
            found = rarest_tag(tags, pairs, documents, share)
            return None if found is None else tags.positions(found[1])
        finally:
            tags.close()

    def _through_columns(self, answer: Callable[[Any], Any]) -> Any:
        """``answer(columns)`` from the columns beside a big base (columns.py); None when
        there are none, they cannot answer, or a block of an index is damaged (removed, and
        built again by the next lookup)."""
        columns = columns_for(self.base) if self._big() else None
        if columns is None:
            return None
        try:
            return answer(columns)
        except DamagedIndex:
            return None

    def group_rows(
        self, fields: list[Any], node: Any, now: int, experiment_ids: Iterable[str] | None
    ) -> list[dict[str, Any]] | None:
        """``stats`` rows from the columns, when the grouping and the filter are on columned
        fields; None: group the documents instead."""
        groups, exps = Groups(), _as_set(experiment_ids)
        matches = None if node is None else compile_filter(node, now, spans_of=self.spans)
        done = self._through_columns(
            lambda c: group_rows(self, c, fields, exps, groups, node, matches)
        )
        return groups.rows() if done else None

    def tag_value_rows(
        self, key: str, node: Any, now: int, experiment_ids: Iterable[str] | None
    ) -> list[tuple[str, int]] | None:
        """``tags values KEY`` from the key's column; None: count the documents instead."""
        exps = _as_set(experiment_ids)
        matches = None if node is None else compile_filter(node, now, spans_of=self.spans)
        found: list[tuple[str, int]] | None = self._through_columns(
            lambda c: value_counts(self, c, key, node, matches, exps)
        )
        return found

    def search_ids(
        self, node: Any, predicate: Callable[[dict], bool | None], experiment_ids: Any
    ) -> list[str] | None:
        """Every match's id, newest first, from the columns when the filter is on columned
        fields only; None: search the documents instead."""
        index = order_for(self.base) if self._big() else None
        if index is None:
            return None
        documents = len(index)
        index.close()
        if self._tagged(node, documents, RARE) is not None:
            return None  # (a rare tag: the few documents it points to cost less)
        exps = _as_set(experiment_ids)
        found: list[str] | None = self._through_columns(
            lambda c: search_ids(self, c, node, predicate, exps, lambda: order_for(self.base))
        )
        return found

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
            tid: loads_doc(self.base, tid, raw) if doc is None else doc
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
        raw = self._last_record[1] if self._last_record[0] is doc else None
        return read_spans_at(self.spans_path, doc, self._spans_fh, raw)

    def span_record(self, doc: dict) -> bytes:
        """The bytes of ``doc``'s span record, unchecked: span filters look for required text
        in them before anything is parsed (and :meth:`spans` then reuses them)."""
        loc = doc.get("spans_at")
        if not loc:
            return b""
        try:
            raw = read_span_record(self.spans_path, loc, self._spans_fh)
        except OSError:
            return b""  # spans() reports the damage
        self._last_record = (doc, raw)
        return raw


def snapshot_version(snap: Snapshot) -> tuple[int, int | None, int] | None:
    """Where a snapshot stands: journal generation, inode and offset (None: no journal)."""
    o = snap.overlay
    if o.generation < 0 or o.generation != snap.base.generation:
        return None
    return (o.generation, o.inode, o.offset)
