"""A search's first page newest first, walked in the order index instead of a scan.

``search -n 100`` (the default order: ``timestamp_ms`` descending, then trace id) needs the
newest matches only. With an order index (see idindex) the walk reads documents newest first
and stops at the page's end: at a million traces a first page costs milliseconds, not a scan of
the whole base. The journal is laid over the walk as over a scan: deleted traces are skipped,
changed ones merged, and traces only the journal has (or replaced) come in at their place.

A filter that matches few traces would make the walk read most of the base in time order,
slower than the scan reads it in file order; so the walk gives up after ``BUDGET`` documents
and the caller scans instead (having yielded nothing, nothing is repeated).
"""

from __future__ import annotations

import heapq
import mmap
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from ..filters.evaluate import required_span_bytes, tag_equalities
from ..query import is_newest_first
from .base import BaseFile
from .columns import decided_by
from .files import document_at, trace_id_at
from .idindex import OrderIndex, TagIndex, columns_for, order_for, tags_for
from .spantext import span_file_plan

__all__ = ["BUDGET", "explain", "rarest_tag", "walk"]

BUDGET = 20_000  # documents parsed before the walk gives up for the scan
# A tag on at most this share of the traces is read through the tag index even when the
# columns could list every match's id (their file is read whole: ~0.2 s at a million).
RARE = 100
_LOOKED = 200_000  # documents looked at (a byte test each) before the same


def walk(
    base: Any,
    overlay: Any,
    index: OrderIndex,
    predicate: Callable[[dict], bool | None],
    required: list[bytes] | None,
    experiment_ids: set[str] | None,
    after: tuple[Any, ...] | None,
    limit: int | None,
    positions: list[int] | None = None,
    current: Callable[[str], dict | None] | None = None,
    keys: set[str] | None = None,
) -> list[tuple[dict, bytes | None]] | None:
    """Up to ``limit`` matches after ``after`` (a page token's (timestamp_ms, trace_id)), in
    order; None when the walk would cost more than a scan.

    ``positions`` (sorted; from the tag index) are the only base documents that can match:
    the walk reads those and, since a journal change may have given any trace the tag, every
    trace the journal put (that holds ``required``) or changed a tag of ``keys`` of (the tags
    the filter reads; None: any) (``current(id)``: its document now)."""
    if after is not None and not (isinstance(after[0], int) and isinstance(after[1], str)):
        return None
    after_pos = None if after is None else (-after[0], after[1])
    start = 0 if after is None else index.first_not_newer(after[0])
    wanted, skip, journal, budget = _sources(
        overlay, index, start, positions, current, keys, required
    )
    out: list[tuple[dict, bytes | None]] = []
    parsed = looked = 0
    with mmap.mmap(base._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for pos, raw, doc in heapq.merge(
            _base_entries(mm, index, wanted, skip)
            if positions is None
            else _read_entries(base._fh.fileno(), index, wanted, skip),
            journal,
            key=lambda entry: entry[0],
        ):
            if after_pos is not None and pos <= after_pos:
                continue
            looked += 1
            if looked > max(_LOOKED, budget) or parsed > budget:
                return None
            raw_out: bytes | None = None
            if doc is None:
                changed = pos[1] in overlay.deltas  # its bytes are not what is matched: parse it
                if not changed and required and not all(r in raw for r in required):
                    continue
                parsed += 1
                doc = orjson.loads(raw)
                if changed:
                    doc = overlay.merge(doc)
                else:
                    raw_out = raw
            if experiment_ids is not None and doc["experiment_id"] not in experiment_ids:
                continue
            if predicate(doc) is True:
                out.append((doc, raw_out))
                if limit is not None and len(out) >= limit:
                    break
    return out


def _sources(
    overlay: Any,
    index: OrderIndex,
    start: int,
    positions: list[int] | None,
    current: Callable[[str], dict | None] | None,
    keys: set[str] | None,
    required: list[bytes] | None,
) -> tuple[Iterable[int], set[str], Iterator[tuple[tuple[int, str], bytes, dict]], int]:
    """What a walk reads: base positions, the ids to skip there, the journal's documents
    newest first, and how many documents it may parse before a scan would have been
    cheaper."""
    deleted, puts = overlay.deleted, overlay.puts
    # (Of the recorded traces still in the journal alone, only those whose bytes hold what
    # every match holds are read; a time walk parses them as it reaches them.)
    if positions is None:
        # A time walk may read much for little: a scan is its limit.
        newest = ((pos, b"", doc) for pos, doc in puts.newest_first(required))
        return range(start, len(index)), deleted | set(puts), newest, BUDGET
    changed = overlay.changed_tags(keys) - deleted  # (base traces: puts have no deltas)
    journal = [doc for _tid, doc in puts.holding(required)]
    journal += [d for t in changed if (d := current(t) if current else None)]
    wanted = (p for p in positions if p >= start)
    # The candidates are known: read them all.
    budget = len(positions) + len(journal) + 1
    return wanted, deleted | set(puts) | changed, _journal_entries(journal), budget


def _base_entries(
    mm: Any, index: OrderIndex, wanted: Iterable[int], skip: set[str]
) -> Iterator[tuple[tuple[int, str], bytes, None]]:
    for i in wanted:
        ts, offset, length = index.entry(i)
        tid = trace_id_at(mm, offset)
        if tid is None or tid in skip:
            continue  # (a put replaced it, or the journal changed it: it comes from there)
        yield (-ts, tid), mm[offset : offset + length], None


def _read_entries(
    fd: int, index: OrderIndex, wanted: Iterable[int], skip: set[str]
) -> Iterator[tuple[tuple[int, str], bytes, None]]:
    """As :func:`_base_entries`, for documents scattered over the base (a tag's), each read
    by a system call (files.document_at)."""
    for i in wanted:
        ts, offset, length = index.entry(i)
        tid, raw = document_at(fd, offset, length)
        if tid is None or tid in skip:
            continue
        yield (-ts, tid), raw, None


def _journal_entries(docs: list[dict]) -> Iterator[tuple[tuple[int, str], bytes, dict]]:
    entries = sorted(((-d["timestamp_ms"], d["trace_id"]), d) for d in docs)
    for pos, doc in entries:
        yield pos, b"", doc


def explain(store: Any, node: Any, order: Any, paged: bool) -> list[str]:
    """The file store's plan for a search, in words (``search --explain``)."""
    scan = "plan: a scan of the base"
    base = BaseFile(store.path)
    try:
        if base.stat is None or base.stat.st_size < store.id_index_min_bytes:
            return [f"{scan} (small enough to need no index)"]
        index = order_for(base)
        if index is None:
            return [f"{scan} (the indexes are being built)"]
        documents = len(index)
        index.close()
        through_spans = _span_file_plan(store, base, node, documents)
        if through_spans is not None:
            return through_spans
        pairs = tag_equalities(node)
        columns = columns_for(base) if not paged else None
        columnar = columns is not None and (node is None or decided_by(columns, node) is not None)
        tags = tags_for(base) if pairs else None
        tagged = None if tags is None else rarest_tag(tags, pairs, documents)
        if tags is not None:
            tags.close()
    finally:
        base.close()
    # (Snapshot.search_ids: the columns, unless the tag index points to fewer documents.)
    by_ids = ["      (-o ids: the ids of every match from the columns, no document read)"]
    if tagged is not None:
        (key, value), (first, end) = tagged
        count = end - first
        return [
            f"plan: through the tag index: the {count:,} of {documents:,} traces with "
            f"tags.{key} = {value!r}, and those the journal changed; the filter judges each",
            *(by_ids if columnar and count > documents // RARE else []),
        ]
    if not paged:
        return [f"{scan} (every match is wanted)", *(by_ids if columnar else [])]
    if not is_newest_first(order):
        return [f"{scan} (the order index serves the default order, newest first)"]
    return [
        "plan: newest first through the order index, stopping at the page's end",
        f"      (the scan instead if {BUDGET:,} documents do not fill the page)",
    ]


def _span_file_plan(store: Any, base: BaseFile, node: Any, documents: int) -> list[str] | None:
    """The span-file plan's line (Snapshot._through_span_file), when it is the plan."""
    needles = required_span_bytes(node)
    if not needles:
        return None
    try:
        with open(store.spans_path_for(base.meta), "rb") as fh:
            plan = span_file_plan(fh, needles, documents)
    except OSError:
        return None
    if plan is None:
        return None
    needle, holders = plan
    return [
        f"plan: through the span file: the {len(holders):,} traces whose span records hold",
        f"      {needle.decode()!r} (a byte search of the span file); the filter judges each",
    ]


def rarest_tag(
    tags: TagIndex, pairs: list[tuple[str, str]], documents: int, share: int = 4
) -> tuple[tuple[str, str], tuple[int, int]] | None:
    """Of the tags a filter requires (``filters.tag_equalities``), the rarest and its run in
    the tag index, when it is on at most a ``share``-th of the traces (a quarter: more, and
    reading them one by one costs more than a scan)."""
    runs = [(pair, tags.run(*pair)) for pair in pairs]
    if not runs:
        return None
    pair, run = min(runs, key=lambda r: r[1][1] - r[1][0])
    return (pair, run) if run[1] - run[0] <= documents // share else None
