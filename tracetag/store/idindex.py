"""The id index: where each trace's document starts in the base file, as a file beside it.

Without it a lookup by id (``show ID``, ``tag set ID``) searches the base's bytes: 0.3 s and
hundreds of MiB of mapped pages at a million traces. The index is a sorted table of
(8-byte hash of the id, offset, length), found by binary search in a few pages.

It is derived data, never a source of truth. Its header names the base it was built from
(inode, size, modification time): an index of another base (a compaction replaced it since) is
stale and unused, and the next lookup builds a new one. Every hit is checked against the bytes
of the base (the id's key must precede the document), so a damaged or colliding entry can only
cost a fallback to the search, never a wrong answer. It is written to a temporary file and
renamed, so a kill at any moment leaves the old index, a new one, or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from .files import file_mode, write_synced

__all__ = ["INDEX_MIN_BYTES", "IdIndex", "build", "for_base", "index_path", "state"]

# Below this a search of the base's bytes takes a few milliseconds: no index is kept.
INDEX_MIN_BYTES = 16 << 20
# Up to this the lookup that finds the index missing builds it (~0.6 s); beyond, a process of
# its own does, as compaction (about 12 s at a million traces).
INLINE_BUILD_BYTES = 64 << 20

MAGIC = b"tracetag-ids 1\n"
_HEAD = struct.Struct("<QQQQI")  # base inode, size, mtime_ns; number of entries, their CRC-32
_ENTRY = struct.Struct("<QQI")  # id hash, document offset, document length
_START = len(MAGIC) + _HEAD.size


def index_path(base_path: Path) -> Path:
    return base_path.with_name(base_path.name + "-ids")


def base_key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def id_hash(trace_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "little")


class IdIndex:
    """An open index file; ``candidates(id)`` are the (offset, length) its hash points to."""

    def __init__(self, mm: mmap.mmap, count: int):
        self._mm = mm
        self._count = count

    @classmethod
    def open(cls, path: Path, key: tuple[int, int, int]) -> IdIndex | None:
        """The index at ``path`` if it was built from the base ``key`` describes and is whole;
        None otherwise."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(_START)
                if len(head) < _START or not head.startswith(MAGIC):
                    return None
                ino, size, mtime, count, crc = _HEAD.unpack_from(head, len(MAGIC))
                if (ino, size, mtime) != key:
                    return None
                if os.fstat(fh.fileno()).st_size != _START + count * _ENTRY.size:
                    return None  # cut short: built by a process that did not finish
                if count == 0:
                    return cls(mmap.mmap(-1, 1), 0)
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError:
            return None
        # Damaged entries could hide a trace: the checksum (~10 ms at a million) rules it out.
        view = memoryview(mm)
        try:
            whole = zlib.crc32(view[_START:]) == crc
        finally:
            view.release()
        if not whole:
            mm.close()
            return None
        return cls(mm, count)

    def close(self) -> None:
        self._mm.close()

    def candidates(self, trace_id: str) -> list[tuple[int, int]]:
        h = id_hash(trace_id)
        lo, hi = 0, self._count
        unpack = _ENTRY.unpack_from
        size = _ENTRY.size
        while lo < hi:
            mid = (lo + hi) // 2
            if unpack(self._mm, _START + mid * size)[0] < h:
                lo = mid + 1
            else:
                hi = mid
        found = []
        while lo < self._count:
            eh, offset, length = unpack(self._mm, _START + lo * size)
            if eh != h:
                break
            found.append((offset, length))
            lo += 1
        return found


def build(base: Any, path: Path) -> IdIndex | None:
    """Write the index of ``base`` (an open BaseFile) at ``path``; None if it cannot be (the
    folder is read-only, the disk is full: lookups then search, as without an index)."""
    if base.stat is None:
        return None
    entries = sorted(
        (id_hash(tid), offset, length) for tid, (offset, length) in base.build_index().items()
    )
    pack = _ENTRY.pack
    body = b"".join([pack(*e) for e in entries])
    data = MAGIC + _HEAD.pack(*base_key(base.stat), len(entries), zlib.crc32(body)) + body
    # Named as the store's other temporary files, so a writer removes one a kill left behind.
    tmp = path.with_name(f".{base.path.name}.tmp-ids-{os.getpid()}")
    try:
        write_synced(tmp, [data], file_mode(base.path))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return None
    return IdIndex.open(path, base_key(base.stat))


def for_base(base: Any) -> IdIndex | None:
    """The current index of ``base`` (an open BaseFile), built here when missing or stale if
    that takes well under a second; else None: the caller has a process of its own build it
    (seconds for a big base) and searches the bytes meanwhile."""
    path = index_path(base.path)
    found = IdIndex.open(path, base_key(base.stat))
    if found is None and base.stat.st_size <= INLINE_BUILD_BYTES:
        found = build(base, path)
    return found


def state(base: Any, path: Path, min_bytes: int = INDEX_MIN_BYTES) -> str:
    """``current``, ``stale`` (built from another base, or cut short: rebuilt on the next
    lookup), ``missing``, or ``not needed`` (a base too small to want one)."""
    if base.stat is None or base.stat.st_size < min_bytes:
        return "not needed"
    if not path.exists():
        return "missing"
    index = IdIndex.open(path, base_key(base.stat))
    if index is None:
        return "stale"
    index.close()
    return "current"
