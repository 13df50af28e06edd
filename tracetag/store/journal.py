"""The journal: the append-only log of small operations that readers replay over the base."""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreCorrupted
from .base import BaseFile, loads_doc
from .files import decode_record, encode_record
from .paths import create_file, file_mode
from .puts import JournalFile, Puts

_MAX_TOUCHED = 4096  # base traces whose tags the journal changed, each looked up by id

JOURNAL_VERSION = 1


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
    puts: Puts = field(default_factory=Puts)
    # Tag changes for traces whose document is in the base: key -> value, or None to delete.
    deltas: dict[str, dict[str, str | None]] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    # Traces deleted since the base was written (a later put brings one back).
    deleted: set[str] = field(default_factory=set)
    # ``records`` and ``offset`` when it was loaded from or saved as a checkpoint (see
    # save_checkpoint).
    checkpointed: int = 0
    checkpointed_offset: int = 0

    def apply(self, rec: dict, at: tuple[int, int] | None = None) -> None:
        """Replay one record; ``at``: where its line is in the journal (offset, length)."""
        op = rec.get("op")
        if op == "batch":
            for sub in rec["ops"]:
                self.apply(sub, at)
        elif op == "put":
            doc = rec["doc"]
            self.puts.put(doc["trace_id"], doc, at)
            self.deltas.pop(doc["trace_id"], None)
            self.deleted.discard(doc["trace_id"])
        elif op == "del":
            for tid in rec["ids"]:
                self.puts.discard(tid)
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

    def changed_tags(self, keys: set[str] | None) -> set[str]:
        """The base traces whose tag changes touch ``keys`` (None: every changed one). Another
        change leaves whether a trace matches a filter reading ``keys`` as its base document
        says: indexes and columns of the base still answer for it."""
        if keys is None:
            return set(self.deltas)
        return {tid for tid, delta in self.deltas.items() if not keys.isdisjoint(delta)}

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
            self.puts.copy(),
            dict(self.deltas),
            dict(self.experiments),
            set(self.deleted),
            self.checkpointed,
            self.checkpointed_offset,
        )

    def holding(
        self, base: BaseFile, needle: bytes, get: Callable[[str], dict | None]
    ) -> Iterator[tuple[str, bytes, dict | None]] | None:
        """:meth:`merged`, restricted to what can hold ``needle``: the base documents whose
        bytes hold it (a byte search, base.iter_holding), then the traces the journal put whose
        bytes may hold it, and every one whose tags it changed (``get(id)``: its document now;
        any change may have given it the needle). None when the journal changed the tags of
        too many to look each one up: merge them all instead."""
        if len(self.deltas) > _MAX_TOUCHED:
            return None
        return self._holding(base, needle, self.puts.keys() | self.deltas.keys(), get)

    def _holding(
        self,
        base: BaseFile,
        needle: bytes,
        touched: set[str],
        get: Callable[[str], dict | None],
    ) -> Iterator[tuple[str, bytes, dict | None]]:
        deleted = self.deleted
        for tid, raw in base.iter_holding(needle):
            if tid not in deleted and tid not in touched:
                yield tid, raw, None
        for tid, put in self.puts.holding([needle]):  # (read only if their bytes hold it)
            yield tid, b"", put
        for tid in self.deltas.keys() - deleted:
            doc = get(tid)
            if doc is not None:
                yield tid, b"", doc

    def merged(self, base: BaseFile) -> Iterator[tuple[str, bytes, dict | None]]:
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
                yield tid, raw, self.merge(loads_doc(base, tid, raw))
            else:
                yield tid, raw, None
        for tid, doc in puts.items():
            if tid not in seen:
                yield tid, b"", doc


def checkpoint_path(journal: Path) -> Path:
    return journal.with_name(journal.name + "-checkpoint")


def save_checkpoint(journal: Path, overlay: Overlay) -> None:
    """Write ``overlay`` (the journal replayed to ``overlay.offset``) beside the journal, so a
    process that opens the store loads it and replays only the records after it: the cost of
    opening then follows what the journal changed, not how many records say so (a million
    single-tag writes to a thousand traces are a thousand changed traces; the documents of
    recorded traces it names by where they are in the journal, see puts.py). Derived data, by
    writers under the lock only: renamed into place (never half there), not fsynced (a lost
    or stale one is only not used); as private as the journal (it holds trace data)."""
    with open(journal, "rb") as fh:
        tail = _tail_crc(fh.fileno(), overlay.offset)
    state = {
        "generation": overlay.generation,
        "inode": overlay.inode,
        "offset": overlay.offset,
        "tail": tail,
        "records": overlay.records,
        "base_size": overlay.base_size,
        "base_crc": overlay.base_crc,
        **overlay.puts.saved(),
        "deltas": overlay.deltas,
        "experiments": overlay.experiments,
        "deleted": sorted(overlay.deleted),
    }
    target = checkpoint_path(journal)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(create_file(tmp, file_mode(journal)), "wb") as out:
            out.write(encode_record(state))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    overlay.checkpointed = overlay.records
    overlay.checkpointed_offset = overlay.offset


def checkpoint_if_due(journal: Path, overlay: Overlay, records: int, size: int) -> None:
    """Save a checkpoint when ``records`` records or ``size`` bytes were appended since the
    last one (a writer, under the lock, after its append)."""
    if (
        overlay.records - overlay.checkpointed >= records
        or overlay.offset - overlay.checkpointed_offset >= size
    ):
        with contextlib.suppress(OSError):  # (derived: opening replays instead)
            save_checkpoint(journal, overlay)


def drop_checkpoint(journal: Path) -> None:
    """Under the lock, when the journal is replaced (its checkpoint names the old one)."""
    with contextlib.suppress(OSError):
        os.unlink(checkpoint_path(journal))


def checkpoint_rewritten(journal: Path, records: int) -> None:
    """Under the lock, when a compaction has rewritten the journal with the records it did not
    fold: its checkpoint (of the old journal) goes, and when those are ``records`` or more (a
    busy store: written while the compaction ran), one of the new journal takes its place, so
    that no command replays them all until the next writer saves one."""
    drop_checkpoint(journal)
    with contextlib.suppress(OSError, StoreCorrupted):
        overlay = read_journal(journal, None)
        if overlay.records >= records:
            save_checkpoint(journal, overlay)


def _tail_crc(fd: int, offset: int) -> int:
    """The checksum of the 256 bytes of the journal before ``offset`` (a checkpoint's check
    that the journal it names still holds what it replayed)."""
    start = max(0, offset - 256)
    return zlib.crc32(os.pread(fd, offset - start, start))


def _from_checkpoint(journal: Path, fd: int, st: os.stat_result, generation: int) -> Overlay | None:
    """The overlay a checkpoint of this journal (same file, generation, bytes) holds."""
    try:
        with open(checkpoint_path(journal), "rb") as fh:
            state = decode_record(fh.read().rstrip(b"\n"))
        offset = state["offset"]
        if (
            (state["inode"], state["generation"]) != (st.st_ino, generation)
            or not isinstance(offset, int)
            or not 0 < offset <= st.st_size
            or _tail_crc(fd, offset) != state["tail"]
        ):
            return None
        return Overlay(
            generation=generation,
            offset=offset,
            inode=st.st_ino,
            records=state["records"],
            base_size=state["base_size"],
            base_crc=state["base_crc"],
            puts=Puts.loaded(state, JournalFile(journal, fd)),
            deltas=state["deltas"],
            experiments=state["experiments"],
            deleted=set(state["deleted"]),
            checkpointed=state["records"],
            checkpointed_offset=offset,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # (missing, torn, of another journal: replay it all)


def read_journal(path: Path, overlay: Overlay | None) -> Overlay:
    """Replay the journal, continuing from ``overlay`` when it is the same file and generation,
    else from its checkpoint when there is a current one."""
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
            overlay = _from_checkpoint(path, fh.fileno(), st, generation) or Overlay(
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
            overlay.apply(decode_record(data[pos:nl]), (overlay.offset + pos, nl - pos))
        except (ValueError, KeyError, TypeError) as e:
            raise StoreCorrupted(
                f"{path}: damaged journal, record {overlay.records} ({e}); "
                "run 'tracetag store check'"
            ) from None
        pos = nl + 1
    overlay.offset += end
    return overlay


def folded_mark(overlay: Overlay) -> dict:
    """What a new base records of the journal it folds: which journal (generation and the base
    it belonged to) and how far. See :func:`folded_tail`."""
    return {
        "generation": overlay.generation,
        "offset": overlay.offset,
        "base_size": overlay.base_size,
        "base_crc": overlay.base_crc,
    }


def folded_tail(path: Path, base: BaseFile, overlay: Overlay) -> Overlay | None:
    """The records a new base has not folded, when the journal beside it is the older one it
    was built from: a compaction that ran beside other writers installs its base first and
    rewrites the journal after (a crash in between leaves exactly this). None when the journal
    is not that one (then it is stale and everything is in the base)."""
    mark = base.meta.get("folded")
    if (
        not isinstance(mark, dict)
        or overlay.generation != base.generation - 1
        or mark.get("generation") != overlay.generation
        or mark.get("base_size") != overlay.base_size
        or mark.get("base_crc") != overlay.base_crc
        or not isinstance(mark.get("offset"), int)
    ):
        return None
    start = Overlay(
        generation=overlay.generation,
        offset=mark["offset"],
        inode=overlay.inode,
        base_size=overlay.base_size,
        base_crc=overlay.base_crc,
    )
    return read_journal(path, start)


def touched_ids(rec: dict, into: set[str]) -> None:
    """The trace ids one journal record changes."""
    op = rec.get("op")
    if op == "batch":
        for sub in rec["ops"]:
            touched_ids(sub, into)
    elif op == "put":
        into.add(rec["doc"]["trace_id"])
    elif op in ("tag", "del"):
        into.update(rec["ids"])
