"""The local store: a TinyDB JSON document file, a journal beside it, spans apart.

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

The invariants that make it safe are numbered in ``docs/store.md`` (the one list of them;
code that relies on one names it as "invariant N").
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidInput, StoreCorrupted, StoreError, StoreLocked
from ..filters.spans import span_summary as summary
from ..schema import check_trace, encode_spans, next_experiment_id
from . import idindex, journal, maintenance, ordered
from .base import BaseFile, layout, loads_doc
from .files import atomic_write, decode_record, encode_record, record_line, write_all
from .journal import JOURNAL_VERSION, Overlay, folded_mark, folded_tail, read_journal, touched_ids
from .lock import LOCK_TIMEOUT_S, ProcessLock
from .paths import PRIVATE_DIR, create_file, file_mode, remove_orphans, resolve_store_path
from .snapshot import Snapshot, size_mismatch, snapshot_version
from .staging import Staged, copy_live_spans, shifted
from .transaction import Transaction

if TYPE_CHECKING:
    from ..backend import Merge

# Compact once the journal is larger than this or a quarter of the base, whichever is larger:
# replay cost on reads stays a fraction of the scan, and rewrites stay rare.
COMPACT_MIN_BYTES = 4 * 1024 * 1024
# Bases up to this size are compacted within the write that finds the journal too long; bigger
# ones beside the writers (tracetag.store.compactor), whose journal is then kept under
# JOURNAL_MAX: replaying 16 MB of journal costs well under a second.
INLINE_COMPACT_BYTES = 48 * 1024 * 1024
JOURNAL_MAX = 16 * 1024 * 1024
# A writer saves the replayed journal beside it every this many records or bytes, so that
# opening the store replays fewer (~2 us a tag record, ~6 us a recorded trace's) after loading
# what they changed (journal.save_checkpoint).
CHECKPOINT_RECORDS = 4096
CHECKPOINT_BYTES = 512 * 1024
log = logging.getLogger("tracetag")


def no_sync(_fd: int) -> None:
    """The "process" durability level: the kernel has the bytes; no wait for the disk."""


class Store:
    """The trace store at ``path`` (see the module docstring for the layout and invariants)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        compact_bytes: int | None = None,
        durability: str | None = None,
        inline_compact_bytes: int | None = None,
    ):
        self.path = resolve_store_path(path)
        # "full" (default): a write is fsynced before it returns, so it survives a power cut.
        # "process": written to the OS but not fsynced: it survives the writer's crash or
        # kill -9, not an OS crash; ~10x the write rate when fsync is the bottleneck.
        # "batched" is the recorder's level (a background writer); its writes are fsynced.
        self.durability = durability or os.environ.get("TRACETAG_DURABILITY") or "full"
        if self.durability not in ("full", "process", "batched"):
            raise InvalidInput(
                f"durability must be 'full', 'process' or 'batched', not {self.durability!r}"
            )
        self._sync = no_sync if self.durability == "process" else os.fsync
        self.journal_path = self.path.with_name(self.path.name + "-journal")
        self.spans_path = self.path.with_name(self.path.name + "-spans")  # before any vacuum
        self.lock_path = self.path.with_name(self.path.name + "-lock")
        self.compact_bytes = compact_bytes
        self.inline_compact_bytes = (
            INLINE_COMPACT_BYTES if inline_compact_bytes is None else inline_compact_bytes
        )
        self._mutex = threading.RLock()
        self._process_lock: ProcessLock | None = None
        self._lock_pid = os.getpid()
        self._validated: tuple | None = None
        self._overlay: Overlay | None = None
        self._index: tuple[tuple, idindex.IdIndex | dict[str, tuple[int, int]]] | None = None
        self._lookups = 0
        self.id_index_min_bytes = idindex.INDEX_MIN_BYTES
        self.writes = 0  # journal appends made by this object: tests count them

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A consistent view; retried if a compaction replaces the files while we open them."""
        for _attempt in range(50):
            base = BaseFile(self.path)
            try:
                with self._mutex:
                    overlay = self._refresh_overlay()
                    if overlay.generation > base.generation and base.stat is not None:
                        base.close()
                        continue  # compacted under us: reopen the new base
                    if overlay.generation < base.generation:
                        # The journal the base was built from: the records after what it
                        # folded, or (an older one, left by a crash) nothing.
                        overlay = folded_tail(self.journal_path, base, overlay) or Overlay()
                    elif (
                        overlay.base_size is not None
                        and base.stat is not None
                        and base.stat.st_size != overlay.base_size
                    ):
                        raise size_mismatch(self.path, base.stat.st_size, overlay.base_size)
                    return Snapshot(self, base, overlay.frozen())
            except BaseException:
                base.close()
                raise
        raise StoreLocked(f"{self.path}: the store keeps changing under the reader; try again")

    def _refresh_overlay(self) -> Overlay:
        self._overlay = read_journal(self.journal_path, self._overlay)
        return self._overlay

    def _index_for(self, base: BaseFile) -> idindex.IdIndex | dict[str, tuple[int, int]] | None:
        """A big base's id index file, else one in memory once enough lookups pay for it."""
        if base.stat is None:
            return None
        key = (base.stat.st_ino, base.stat.st_mtime_ns, base.stat.st_size)
        if self._index is not None and self._index[0] == key:
            return self._index[1]
        if base.stat.st_size >= self.id_index_min_bytes:
            found = idindex.for_base(base)
            if found is None:  # a big base: a process of its own builds it; search meanwhile
                from .compactor import start

                with contextlib.suppress(OSError):  # (a folder we may only read)
                    start(self, ids_only=True)
                return None
            self._index = (key, found)
            return found
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
        """The span dicts of ``doc``, read from the current store. ``doc`` may come from an
        older snapshot; if a vacuum has moved the spans since, the document is looked up again."""
        with self.snapshot() as snap:
            try:
                return snap.spans(doc)
            except StoreCorrupted:
                fresh = snap.get(doc["trace_id"])
                if fresh is None or fresh.get("spans_at") == doc.get("spans_at"):
                    raise
                return snap.spans(fresh)

    # -- writing -------------------------------------------------------------------------------

    def _lock(self) -> ProcessLock:
        # flock belongs to an open file: a forked child that used its parent's descriptor would
        # share the parent's lock and write beside it. Each process opens the lock file itself.
        if self._process_lock is None or self._lock_pid != os.getpid():
            self._process_lock = ProcessLock(self.lock_path)
            self._lock_pid = os.getpid()
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
                BaseFile(self.path).close()
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

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The writers' lock alone, without reading the store: for repair, which must work on
        a store that cannot be read."""
        with self._mutex:
            self._lock().acquire(LOCK_TIMEOUT_S, self.path)
            try:
                yield
            finally:
                self._lock().release()

    def install_base(
        self, meta: dict, experiments: dict, items: Iterable[tuple[str, bytes]]
    ) -> None:
        """Write a whole new base and an empty journal for it (under :meth:`exclusive`)."""
        size, crc = atomic_write(self.path, layout(meta, experiments, items))
        self._reset_journal(int(meta["generation"]), size, crc)
        self._index = None

    def _prepare_locked(self) -> Snapshot:
        base = BaseFile(self.path)
        if base.stat is None or base.needs_rewrite:
            # First write, or an old-schema or foreign-layout file: write the base in the
            # current layout (migrations happen on disk only here, under the lock).
            base.close()
            self._compact_locked()
            base = BaseFile(self.path)
        overlay = self._refresh_overlay()
        if base.stat is not None and folded_tail(self.journal_path, base, overlay) is not None:
            # A compaction installed this base and died before rewriting the journal: finish.
            start = int(base.meta["folded"]["offset"])
            self._rewrite_journal(base.generation, base.stat.st_size, None, start, overlay.offset)
            overlay = self._refresh_overlay()
        if overlay.generation != base.generation:
            # No journal for this base (deleted, or a crash right after a compaction's base
            # rename): read the whole base once before trusting it with new appends.
            for tid, raw in base.iter_raw():
                loads_doc(base, tid, raw)
            self._reset_journal(base.generation, base.stat.st_size if base.stat else None)
            overlay = self._refresh_overlay()
        elif overlay.base_size is not None and base.stat and base.stat.st_size != overlay.base_size:
            raise size_mismatch(self.path, base.stat.st_size, overlay.base_size)
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
        atomic_write(self.journal_path, [head])
        journal.drop_checkpoint(self.journal_path)
        self._overlay = None

    def _rewrite_journal(
        self, generation: int, base_size: int | None, base_crc: int | None, start: int, end: int
    ) -> None:
        """A journal for base ``generation`` holding the old journal's records from ``start``
        (what the base did not fold) to ``end`` (the last whole line); under the lock."""
        with open(self.journal_path, "rb") as fh:
            fh.seek(start)
            records = fh.read(end - start)
        head = encode_record(
            {
                "journal": JOURNAL_VERSION,
                "generation": generation,
                "base_size": base_size,
                "base_crc": base_crc,
            }
        )
        atomic_write(self.journal_path, [head, records])
        journal.checkpoint_rewritten(self.journal_path, CHECKPOINT_RECORDS)
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
            overlay.apply(record, (overlay.offset, len(line) - 1))
            overlay.records += 1
            overlay.offset += len(line)
            journal.checkpoint_if_due(
                self.journal_path, overlay, CHECKPOINT_RECORDS, CHECKPOINT_BYTES
            )
        else:
            self._refresh_overlay()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic write (see :mod:`.transaction`): lock, current snapshot, one record."""
        with self._writing() as snap:
            tx = Transaction(self, snap)
            yield tx
            record = tx.record()
            if record is not None:
                self._append(record)
                self._compact_quietly(snap)

    def write(self, build: Callable[[Snapshot], tuple[dict | None, Any]]) -> Any:
        """``build(snapshot) -> (record or None, result)`` in one transaction."""
        with self.transaction() as tx:
            record, result = build(tx.snapshot)
            if record is not None:
                tx.append(record)
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
        progress: Callable[[int, int], None] | None = None,  # one write: nothing to report
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
                since = snapshot_version(snap)
            if not self.path.exists() and record_of(result) is None:
                return result  # nothing to write: a failed write creates no store
            with self.transaction() as tx:
                changed = tx.changed_since(since)
                if changed is None:
                    if attempt < attempts - 1:
                        continue
                    result = plan(tx.snapshot)
                elif changed:
                    result = refresh(tx.snapshot, result, changed)
                record = record_of(result)
                if record is not None:
                    tx.append(record)
                return result
        raise AssertionError("unreachable")

    def changed_since(self, since: tuple[int, int | None, int] | None) -> set[str] | None:
        """Trace ids the journal changed after ``since`` (call in a transaction); None when
        that cannot be told (the base was replaced)."""
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
            touched_ids(decode_record(line), changed)
        return changed

    def append_spans(self, snap: Snapshot, items: list[tuple[str, list[dict]]]) -> list[list[int]]:
        """Append span payloads (call under the write lock); returns ``[offset, length]`` each."""
        lines = [encode_record({"trace_id": tid, "spans": spans}) for tid, spans in items]
        return self.append_span_lines(snap, lines)

    def append_span_lines(self, snap: Snapshot, lines: list[bytes]) -> list[list[int]]:
        """Append encoded span records (see :meth:`append_spans`)."""
        if not lines:
            return []
        mode = file_mode(self.path)
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
        merge: Merge | None = None,
    ) -> tuple[int, int]:
        """Insert or replace traces (info document, span dicts) in one durable write.

        Returns (new, replaced) counts; ``count_replaced=False`` skips the lookups for callers
        whose ids are freshly generated (recording) and reports them all as new. ``extra_ops``
        ride in the same record (experiments the traces belong to, say), so they land together
        or not at all.
        """

        for doc, spans in items:
            check_trace(doc, spans, encode=False)
        # Encoded once, before the lock: the encoding is the check that spans are JSON, and
        # a bad document never reaches the files.
        lines = [record_line(encode_spans(doc["trace_id"], spans)) for doc, spans in items]
        with self.transaction() as tx:
            for op in extra_ops:
                tx.append(op)
            ids = (doc["trace_id"] for doc, _spans in items)
            existing = tx.snapshot.get_many(ids) if count_replaced or merge else {}
            if merge is not None and existing:
                items = list(items)
                for i, (doc, spans) in enumerate(items):
                    old = existing.get(doc["trace_id"])
                    if old is not None:
                        items[i] = merged = merge(old, tx.snapshot.spans(old), doc, spans)
                        check_trace(merged[0], merged[1], encode=False)
                        lines[i] = record_line(encode_spans(doc["trace_id"], merged[1]))
            locs = tx.append_span_lines(lines)
            for (doc, spans), loc in zip(items, locs, strict=True):
                tx.append({"op": "put", "doc": {**doc, "spans_at": loc, **summary(spans)}})
            return len(items) - len(existing), len(existing)

    def create_experiment(self, name: str) -> str:
        with self.transaction() as tx:
            exps = tx.snapshot.experiments()
            for e in exps:
                if e["name"] == name:
                    return str(e["experiment_id"])
            new_id = next_experiment_id(e["experiment_id"] for e in exps)
            now = int(time.time() * 1000)
            tx.append(
                {
                    "op": "exp",
                    "doc": {"experiment_id": new_id, "name": name, "creation_time_ms": now},
                }
            )
            return new_id

    # -- upkeep --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return maintenance.info(self)

    def check(self) -> Any:
        return maintenance.check(self)

    def repair(self) -> dict[str, Any]:
        return maintenance.repair(self)

    def explain(self, node: Any, order: Any = None, paged: bool = True) -> list[str]:
        """How a search with ``node`` in ``order`` reads this store (``search --explain``)."""
        return ordered.explain(self, node, order, paged)

    # -- compaction ----------------------------------------------------------------------------

    def _maybe_compact(self, snap: Snapshot) -> None:
        size = self._overlay.offset if self._overlay else 0
        base_size = snap.base.stat.st_size if snap.base.stat else 0
        if base_size <= self.inline_compact_bytes:
            # Small enough to rebuild within the write (well under a second).
            if size > (self.compact_bytes or max(COMPACT_MIN_BYTES, base_size // 4)):
                self._compact_locked()
            return
        # A big base is rebuilt beside the writers, so the journal (which every command
        # replays) can be kept short without any write waiting for a rebuild.
        if size > (self.compact_bytes or min(max(COMPACT_MIN_BYTES, base_size // 4), JOURNAL_MAX)):
            from .compactor import start

            if not start(self):
                log.debug("compaction already running for %s", self.path)

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        """Fold the journal into a new base file (atomic); returns what it did.

        ``vacuum`` also copies the live spans into a new span file and drops the old one, which
        reclaims the bytes of replaced traces and of writes a crash interrupted.
        """
        with self._writing():
            return self._compact_locked(vacuum)

    def _compact_locked(self, vacuum: bool = False, staged: Staged | None = None) -> dict:
        base = BaseFile(self.path)
        old_spans = self.spans_path_for(base.meta)
        new_spans = old_spans
        moved: dict[str, list[int]] = {}
        replaced = 0
        try:
            overlay = self._refresh_overlay()
            if overlay.generation != base.generation:
                overlay = Overlay()
            generation = base.generation + 1
            folded = overlay.records
            fresh_spans = self.path.with_name(f"{self.path.name}-spans.{generation}")
            if vacuum:
                new_spans = fresh_spans
                moved = copy_live_spans(base, old_spans, new_spans, overlay.merged(base))
            staged_ids = staged.ids if staged is not None else {}
            new_spans, start, shift = (
                staged.place_spans(old_spans, fresh_spans) if staged else (new_spans, 0, 0)
            )

            def traces() -> Iterator[tuple[str, bytes]]:
                nonlocal replaced
                for tid, raw, doc in overlay.merged(base):
                    if tid in staged_ids:
                        replaced += 1
                    elif tid in moved or shift:  # (a vacuum moved its spans, or an import did)
                        doc = doc or loads_doc(base, tid, raw)
                        doc = {**doc, "spans_at": moved[tid]} if moved else shifted(doc, shift)
                        yield tid, orjson.dumps(doc)
                    else:
                        yield tid, raw if doc is None else orjson.dumps(doc)
                if staged is not None:
                    yield from staged.documents(start)

            experiments = {**base.experiments, **overlay.experiments}
            for op in staged.experiments if staged is not None else ():
                experiments.setdefault(op["doc"]["experiment_id"], op["doc"])
            meta = {**base.meta, "generation": generation}
            meta.pop("folded", None)
            if overlay.generation == base.generation:  # all of it: readers skip that journal
                meta["folded"] = folded_mark(overlay)
            if new_spans != old_spans:
                meta["spans_file"] = new_spans.name
            size, crc = atomic_write(self.path, layout(meta, experiments, traces()))
        finally:
            base.close()
        # A crash here leaves journal g beside base g+1: readers ignore it (invariant 4).
        self._reset_journal(generation, size, crc)
        self._index = None
        result = {"records": folded, "generation": generation}
        if staged is not None:
            result.update(new=len(staged.ids) - replaced, updated=replaced)
        return self._tidied(old_spans, new_spans, vacuum, result)

    def _tidied(self, old_spans: Path, new_spans: Path, vacuum: bool, result: dict) -> dict:
        """After a compaction: the span file it replaced removed, and any orphans."""
        if old_spans != new_spans:
            if vacuum:
                before = old_spans.stat().st_size if old_spans.exists() else 0
                result.update(spans_bytes_before=before, spans_bytes_after=new_spans.stat().st_size)
            # Snapshots taken before hold the old file open; later readers use the new one.
            with contextlib.suppress(OSError):
                old_spans.unlink()
        removed = remove_orphans(self.path, new_spans)
        if removed:
            result["orphans_removed"] = removed
        return result
