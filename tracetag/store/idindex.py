"""The indexes beside a big base: where each trace's document starts, by id and by time.

Without them a lookup by id (``show ID``, ``tag set ID``) searches the base's bytes (0.3 s and
hundreds of MiB of mapped pages at a million traces), and the first page of a search
(``search -n 100``, newest first) reads every document. ``PATH-ids`` is a sorted table of
(8-byte hash of the id, offset, length), found by binary search; ``PATH-order`` lists the same
documents newest first (``timestamp_ms`` descending, then trace id), with their times.

Both are derived data, never a source of truth. Each names the base it was built from (inode,
size, modification time) and checksums its entries by blocks: an index of another base (a
compaction replaced it since) or one cut short is stale and unused, a damaged block is found
when first read (the command reads the base instead and the index is removed), and either is
built again. A hit
by id is checked against the bytes of the base (the id's key must precede the document). They
are written to temporary files and renamed, so a kill at any moment leaves old, new or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .columns import Columns, ColumnsBuilder, columns_path
from .files import file_mode, write_synced

__all__ = [
    "INDEX_MIN_BYTES",
    "DamagedIndex",
    "IdIndex",
    "OrderIndex",
    "TagIndex",
    "build",
    "columns_for",
    "for_base",
    "index_path",
    "order_path",
    "state",
    "tags_for",
]

# Below this a search of the base's bytes takes a few milliseconds: no index is kept.
INDEX_MIN_BYTES = 16 << 20
# Up to this the lookup that finds the indexes missing builds them (~0.8 s); beyond, a process
# of its own does, as compaction (2.5 s at 100,000 traces, 26 s at a million).
INLINE_BUILD_BYTES = 24 << 20

_HEAD = struct.Struct("<QQQQI")  # base inode, size, mtime_ns; number of entries, their CRC-32


def index_path(base_path: Path) -> Path:
    return base_path.with_name(base_path.name + "-ids")


def order_path(base_path: Path) -> Path:
    return base_path.with_name(base_path.name + "-order")


def tags_path(base_path: Path) -> Path:
    return base_path.with_name(base_path.name + "-tags")


def _files(base_path: Path) -> tuple[tuple[type[_Table], Path], ...]:
    """Each index beside a base and its file, the id index last: it is written last, so its
    being current says the others are."""
    return (
        (ColumnFile, columns_path(base_path)),
        (TagIndex, tags_path(base_path)),
        (OrderIndex, order_path(base_path)),
        (IdIndex, index_path(base_path)),
    )


def base_key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def id_hash(trace_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "little")


class DamagedIndex(Exception):
    """A block of an index does not match its checksum: use the base instead."""


BLOCK = 4096  # entries per checksummed block


class _Table:
    """A file of fixed-size entries after a header naming the base they were built from.

    The entries are checksummed by blocks of ``BLOCK``, each checked the first time it is
    read: a lookup touches a few blocks, not the whole file (whose check would cost a big
    index's size in memory and time on every command). A damaged block raises
    :class:`DamagedIndex`, and the caller reads the base instead.
    """

    MAGIC = b""
    ENTRY = struct.Struct("<Q")

    def __init__(self, mm: mmap.mmap, count: int, crcs: list[int]):
        self._mm = mm
        self._count = count
        self._crcs = crcs
        self._checked: set[int] = set()
        self._start = len(self.MAGIC) + _HEAD.size + 4 * len(crcs)
        self.path: Path | None = None

    def __len__(self) -> int:
        return self._count

    @classmethod
    def open(cls, path: Path, key: tuple[int, int, int]) -> Any:
        """The table at ``path`` if it was built from the base ``key`` describes and is
        whole; None otherwise."""
        start = len(cls.MAGIC) + _HEAD.size
        try:
            with open(path, "rb") as fh:
                head = fh.read(start)
                if len(head) < start or not head.startswith(cls.MAGIC):
                    return None
                ino, size, mtime, count, crc = _HEAD.unpack_from(head, len(cls.MAGIC))
                if (ino, size, mtime) != key:
                    return None
                blocks = -(-count // BLOCK)
                if os.fstat(fh.fileno()).st_size != start + 4 * blocks + count * cls.ENTRY.size:
                    return None  # cut short: built by a process that did not finish
                table = fh.read(4 * blocks)
                if zlib.crc32(table) != crc:
                    return None
                crcs = list(struct.unpack(f"<{blocks}I", table))
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if count else None
        except OSError:
            return None
        table_ = cls(mm or mmap.mmap(-1, 1), count, crcs)
        table_.path = path
        return table_

    @classmethod
    def names(cls, path: Path, key: tuple[int, int, int]) -> bool:
        """Whether the table at ``path`` says it was built from the base ``key`` describes
        (its header only: :meth:`open` checks the rest)."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(cls.MAGIC) + _HEAD.size)
        except OSError:
            return False
        if len(head) < len(cls.MAGIC) + _HEAD.size or not head.startswith(cls.MAGIC):
            return False
        return tuple(_HEAD.unpack_from(head, len(cls.MAGIC))[:3]) == key

    def close(self) -> None:
        self._mm.close()

    def remove(self) -> None:
        """Remove a damaged table's file: derived data, the next use builds it again."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _whole(self, block: int) -> bool:
        if block not in self._checked:
            size = self.ENTRY.size
            first = self._start + block * BLOCK * size
            last = min(first + BLOCK * size, self._start + self._count * size)
            if zlib.crc32(self._mm[first:last]) != self._crcs[block]:
                return False
            self._checked.add(block)
        return True

    def entry(self, i: int) -> tuple[int, int, int]:
        block = i // BLOCK
        if not self._whole(block):
            self.remove()
            raise DamagedIndex(f"block {block} of {self.path} does not match its checksum")
        value: tuple[int, int, int] = self.ENTRY.unpack_from(
            self._mm, self._start + i * self.ENTRY.size
        )
        return value

    def first_at_least(self, key: int) -> int:
        """The position of the first entry whose first field is ``key`` or more (a table
        sorted by it)."""
        return self._bisect(key, False)

    def _bisect(self, key: int, descending: bool) -> int:
        """The first position whose first field is not below ``key`` (``descending``: not
        above it). Inlined: a journal of 10,000 recorded traces asks it 10,000 times."""
        unpack, mm, start, size = self.ENTRY.unpack_from, self._mm, self._start, self.ENTRY.size
        checked = self._checked
        lo, hi = 0, self._count
        while lo < hi:
            mid = (lo + hi) // 2
            if mid // BLOCK not in checked:
                self.entry(mid)  # (checks its block first: DamagedIndex)
            value = unpack(mm, start + mid * size)[0]
            if value > key if descending else value < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def verify(self) -> bool:
        """Every block against its checksum (``store check``)."""
        return all(self._whole(block) for block in range(len(self._crcs)))

    @classmethod
    def pack(cls, entries: list[tuple[int, int, int]]) -> bytes:
        pack = cls.ENTRY.pack
        return b"".join([pack(*e) for e in entries])

    @classmethod
    def write_body(cls, path: Path, base: Any, body: bytes, count: int) -> Path | None:
        """Write the table to a temporary file beside ``path``; its name, or None if it could
        not be written. The caller renames it to ``path``."""
        step = BLOCK * cls.ENTRY.size
        view = memoryview(body)
        crcs = [zlib.crc32(view[i : i + step]) for i in range(0, len(body), step)]
        view.release()
        table = struct.pack(f"<{len(crcs)}I", *crcs)
        head = cls.MAGIC + _HEAD.pack(*base_key(base.stat), count, zlib.crc32(table))
        # Named as the store's other temporary files, so a compaction removes one a kill left.
        name, kind = path.name.rsplit("-", 1)
        tmp = path.with_name(f".{name}.tmp-{kind}-{os.getpid()}")
        try:
            write_synced(tmp, [head, table, body], file_mode(path.with_name(name)))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return None
        return tmp


class IdIndex(_Table):
    """``candidates(id)``: the (offset, length) the id's hash points to."""

    MAGIC = b"tracetag-ids 1\n"
    ENTRY = struct.Struct("<QQI")  # id hash, document offset, document length

    def candidates(self, trace_id: str) -> list[tuple[int, int]]:
        h = id_hash(trace_id)
        lo = self.first_at_least(h)
        found = []
        while lo < self._count:
            eh, offset, length = self.entry(lo)
            if eh != h:
                break
            found.append((offset, length))
            lo += 1
        return found


class OrderIndex(_Table):
    """Entries (timestamp_ms, offset, length), newest first, ties by trace id."""

    MAGIC = b"tracetag-order 1\n"
    ENTRY = struct.Struct("<qQI")

    def first_not_newer(self, timestamp_ms: int) -> int:
        """The position of the first entry at or before ``timestamp_ms``."""
        return self._bisect(timestamp_ms, True)


class TagIndex(_Table):
    """Entries (hash of a tag's key and value, position in the order index), by hash, then
    position: the traces with a tag, newest first. A hash is not a tag (two may share one): the
    filter decides on every document it points to."""

    MAGIC = b"tracetag-tags 1\n"
    ENTRY = struct.Struct("<QI")

    def run(self, key: str, value: str) -> tuple[int, int]:
        """The entries [first, end) of the tag's hash (two binary searches, nothing read)."""
        h = tag_hash(key, value)
        return self.first_at_least(h), self.first_at_least(h + 1)

    def positions(self, run: tuple[int, int]) -> list[int]:
        return [self.entry(i)[1] for i in range(*run)]


class ColumnFile(_Table):
    """The columns file (columns.py): its bytes are the entries, checked whole when loaded
    (12-30 bytes a trace: milliseconds)."""

    MAGIC = b"tracetag-columns 1\n"
    ENTRY = struct.Struct("<B")

    def load(self) -> Columns | None:
        if not self.verify():
            self.remove()
            return None
        return Columns(self._mm[self._start : self._start + self._count])


def tag_hash(key: str, value: str) -> int:
    data = key.encode() + b"\0" + value.encode()
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


def _tag_postings(
    mm: Any, newest_first: list[tuple[int, str, int, int]], columns: ColumnsBuilder
) -> tuple[bytes, int]:
    """The tag index's entries: each document's tags, read again in order (keeping every
    document's tags from the first pass would cost more memory than the base); and the
    columns, from the same documents."""
    buckets: dict[int, array[int]] = {}
    for position, (_neg, _tid, offset, length) in enumerate(newest_first):
        doc = orjson.loads(mm[offset : offset + length])
        columns.add(position, doc)
        tags = doc.get("tags")
        if not isinstance(tags, dict):
            continue
        for k, v in tags.items():
            if isinstance(k, str) and isinstance(v, str):
                h = tag_hash(k, v)
                found = buckets.get(h)
                if found is None:
                    buckets[h] = found = array("I")
                found.append(position)  # (positions come in order: each run is sorted)
    parts = []
    count = 0
    for h in sorted(buckets):
        hb = h.to_bytes(8, "little")
        run = buckets[h]
        parts.append(b"".join([hb + p.to_bytes(4, "little") for p in run]))
        count += len(run)
    return b"".join(parts), count


def prepare(base: Any, target: Path) -> list[tuple[Path, Path]] | None:
    """Write the indexes of ``base`` (an open BaseFile, to be found at ``target``) to
    temporary files: the (temporary, final) names to rename them by, the id index last (its
    being current is what says the others are); None if they cannot be written (a read-only
    folder, a full disk: lookups then search, as without an index)."""
    if base.stat is None:
        return None
    located = base.build_index()
    ids = sorted((id_hash(tid), offset, length) for tid, (offset, length) in located.items())
    newest_first = []
    # (The open base, not its path: a compaction may have renamed another file there since.)
    with mmap.mmap(base._fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for tid, (offset, length) in located.items():
            try:
                ts = orjson.loads(mm[offset : offset + length]).get("timestamp_ms")
            except orjson.JSONDecodeError:
                return None  # a damaged base: `store check` says so; nothing is indexed
            ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
            newest_first.append((-ts, tid, offset, length))
        newest_first.sort()
        columns = ColumnsBuilder(len(newest_first))
        tags_body, tags_count = _tag_postings(mm, newest_first, columns)
    order = [(-neg, offset, length) for neg, _tid, offset, length in newest_first]
    columns_body = columns.body(newest_first)
    bodies = {
        ColumnFile: (columns_body, len(columns_body)),
        TagIndex: (tags_body, tags_count),
        OrderIndex: (OrderIndex.pack(order), len(order)),
        IdIndex: (IdIndex.pack(ids), len(ids)),
    }
    written = [
        (table.write_body(final, base, *bodies[table]), final) for table, final in _files(target)
    ]
    if any(tmp is None for tmp, _final in written):
        discard(written)
        return None
    return [(tmp, final) for tmp, final in written if tmp is not None]


def install(renames: list[tuple[Path, Path]] | None) -> bool:
    """Rename prepared indexes into place; False (and nothing left behind) if it failed."""
    if renames is None:
        return False
    try:
        for tmp, final in renames:
            os.replace(tmp, final)
    except OSError:
        discard(renames)
        return False
    return True


def discard(renames: Sequence[tuple[Path | None, Path]]) -> None:
    for tmp, _final in renames:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def build(base: Any) -> IdIndex | None:
    """Write and install the indexes of ``base``; its id index, or None."""
    if not install(prepare(base, base.path)):
        return None
    return current(base)


def current(base: Any) -> IdIndex | None:
    """The id index of ``base`` (an open BaseFile) when all its indexes are current (their
    headers name it: each block is checked when read); None otherwise."""
    key = base_key(base.stat)
    found: IdIndex | None = IdIndex.open(index_path(base.path), key)
    if found is not None and not all(t.names(p, key) for t, p in _files(base.path)[:-1]):
        found.close()
        found = None
    return found


def for_base(base: Any) -> IdIndex | None:
    """The current id index of ``base``, built here when missing or stale if that takes well
    under a second; else None: the caller has a process of its own build it (seconds for a big
    base) and searches the bytes meanwhile."""
    found = current(base)
    if found is None and base.stat.st_size <= INLINE_BUILD_BYTES:
        found = build(base)
    return found


def order_for(base: Any) -> OrderIndex | None:
    """The current order index of ``base``, if there is one (never built here)."""
    if base.stat is None:
        return None
    found: OrderIndex | None = OrderIndex.open(order_path(base.path), base_key(base.stat))
    return found


def columns_for(base: Any) -> Columns | None:
    """The current columns of ``base``, checked, if there are (never built here)."""
    if base.stat is None:
        return None
    found: ColumnFile | None = ColumnFile.open(columns_path(base.path), base_key(base.stat))
    if found is None:
        return None
    try:
        return found.load()
    finally:
        found.close()


def tags_for(base: Any) -> TagIndex | None:
    """The current tag index of ``base``, if there is one (never built here)."""
    if base.stat is None:
        return None
    found: TagIndex | None = TagIndex.open(tags_path(base.path), base_key(base.stat))
    return found


def state(base: Any, min_bytes: int = INDEX_MIN_BYTES, *, whole: bool = True) -> str:
    """``current``, ``stale`` (built from another base, or cut short: rebuilt on the next
    lookup), ``damaged`` (a block that fails its checksum), ``missing``, or ``not needed`` (a
    base too small to want one). ``whole=False`` reads the headers only (``store info``)."""
    if base.stat is None or base.stat.st_size < min_bytes:
        return "not needed"
    if not index_path(base.path).exists():
        return "missing"
    key = base_key(base.stat)
    if not whole:
        return "current" if all(t.names(p, key) for t, p in _files(base.path)) else "stale"
    for table, path in _files(base.path):
        index = table.open(path, key)
        if index is None:
            return "stale"
        undamaged = index.verify()
        index.close()
        if not undamaged:
            return "damaged"
    return "current"


def index_bytes(base_path: Path) -> int:
    """What the indexes beside a base take on disk."""
    total = 0
    for _table, path in _files(base_path):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
