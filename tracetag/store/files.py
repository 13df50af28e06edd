"""Writing bytes safely: whole writes or none, atomic replacement, checksummed records,
and trace ids as the base file holds them."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..errors import StoreError
from .paths import create_file, file_mode


def id_key(trace_id: str) -> bytes:
    """A trace id as the base file holds it: a JSON string (ids are validated, but a store
    written by an older version may hold any string; encoded, it can never break a line)."""
    return orjson.dumps(trace_id)


def id_from_key(raw: bytes) -> str:
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


def fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, chunks: Iterable[bytes], mode: int) -> tuple[int, int]:
    """Write ``chunks`` to a new file and fsync it; returns its size and CRC-32."""
    size = crc = 0
    fd = create_file(path, mode)
    with open(fd, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            size += len(chunk)
            crc = zlib.crc32(chunk, crc)
        f.flush()
        os.fsync(f.fileno())
    return size, crc


def atomic_write(path: Path, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Write to a temp file in the same folder, fsync, rename over ``path``: old or new, never half.

    Returns the size and CRC-32 of what was written.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        size, crc = write_synced(tmp, chunks, file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path)
    return size, crc


def encode_record(obj: Any) -> bytes:
    """One checksummed line: 8 hex digits of CRC-32, a space, compact JSON, newline."""
    return record_line(orjson.dumps(obj))


def record_line(body: bytes) -> bytes:
    """A record line around JSON already encoded."""
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_record(line: bytes) -> Any:
    """Parse a line of :func:`encode_record` (without its newline); ``ValueError`` if damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        raise ValueError("not a record")
    body = line[9:]
    if int(line[:8], 16) != zlib.crc32(body):
        raise ValueError("checksum mismatch")
    return orjson.loads(body)


def trace_id_at(mm: Any, offset: int) -> str | None:
    """The trace id whose document starts at ``offset`` of the base (its key precedes it)."""
    line = mm.rfind(b"\n", max(0, offset - 300), offset)
    if line < 0 or mm[offset - 2 : offset] != b": ":
        return None
    return id_from_key(mm[line + 2 : offset - 3])


def document_at(fd: int, offset: int, length: int) -> tuple[str | None, bytes]:
    """(trace id, document bytes) of the base document at ``offset``, read by a system call:
    for documents scattered over the base, since a page fault in a mapped file maps a whole
    folio of the page cache (up to 2 MiB each on this kind of kernel: a few hundred documents
    would count hundreds of MiB against the process)."""
    start = max(0, offset - 300)  # (the document's key, its trace id, precedes it)
    data = os.pread(fd, offset + length - start, start)
    return trace_id_at(data, offset - start), data[offset - start :]
