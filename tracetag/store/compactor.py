"""Compaction beside the writers: a big base is rebuilt without the writers' lock, which is
taken only to install it, so no write waits for the rebuild.

1. Without the lock, from a snapshot (base ``g``, journal read to offset ``X``): the new base
   ``g+1`` is written to a temp file and fsynced. Its meta records what it folded (journal
   ``g`` up to ``X``: :func:`~tracetag.store.journal.folded_mark`).
2. Under the lock, if the base is still ``g``: the temp file is renamed over the base. From this
   instant a reader that finds journal ``g`` beside base ``g+1`` replays it from ``X`` (what
   other writers appended meanwhile), so nothing acknowledged is missing.
3. Still under the lock: a journal ``g+1`` holding those records replaces journal ``g``. A crash
   between 2 and 3 leaves the state of 2, which the next writer finishes (``_prepare_locked``).

The store starts it as a process of its own (``python -m tracetag.store PATH``) when
a write finds the journal over its limit and the base too big to rebuild within the write; one
runs at a time (an ``flock`` on ``PATH-compacting``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from . import idindex
from .base import BaseFile, layout
from .files import fsync_dir, write_synced
from .journal import folded_mark
from .paths import create_file, file_mode

if TYPE_CHECKING:
    from .local import Store

__all__ = ["build_id_index", "compact_beside_writers", "only_one", "start"]


def _lock_path(store: Store) -> Path:
    return store.path.with_name(store.path.name + "-compacting")


@contextlib.contextmanager
def only_one(store: Store) -> Iterator[bool]:
    """True when this process holds the compaction lock (nobody else is compacting)."""
    import fcntl

    fd = create_file(_lock_path(store), file_mode(store.path), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def start(store: Store, ids_only: bool = False) -> bool:
    """Start a compaction process for ``store`` unless one is running; True if started.
    ``ids_only``: the process only builds the id index of the base (see idindex)."""
    if sys.platform == "win32":  # pragma: no cover - no flock: compact within the write
        return False
    with only_one(store) as free:
        if not free:
            return False
        # Nobody compacts now: a rebuild killed before its install left only this.
        for stale in store.path.parent.glob(f".{store.path.name}.compact-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetag.store", str(store.path), *(["--ids"] * ids_only)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C of the command does not kill the rebuild
        close_fds=True,
    )
    # Reaped when it ends, if this process lives that long (a long-lived app, a server).
    threading.Thread(target=proc.wait, daemon=True, name="tracetag-compactor").start()
    return True


def compact_beside_writers(
    store: Store,
    after_build: Callable[[], None] | None = None,
    after_install: Callable[[], None] | None = None,
) -> dict[str, int] | None:
    """Steps 1-3 of the module's description; None when the store changed under the rebuild
    (another compaction) and nothing was installed. Tests use the hooks: ``after_build`` runs
    between steps 1 and 2 (others write meanwhile), ``after_install`` between 2 and 3 (a crash
    there leaves the state to recover from)."""
    with store.snapshot() as snap:
        base, overlay = snap.base, snap.overlay
        if base.stat is None or overlay.generation != base.generation:
            return None
        start_ino, start_gen = base.stat.st_ino, base.generation
        generation = start_gen + 1
        meta = {**base.meta, "generation": generation, "folded": folded_mark(overlay)}
        experiments = {**base.experiments, **overlay.experiments}

        def traces() -> Iterator[tuple[str, bytes]]:
            for tid, raw, doc in overlay.merged(base):
                yield tid, raw if doc is None else orjson.dumps(doc)

        tmp = store.path.with_name(f".{store.path.name}.compact-{os.getpid()}")
        size, crc = write_synced(tmp, layout(meta, experiments, traces()), file_mode(store.path))
    # The new base's indexes, built before it is installed (a rename keeps the inode, size and
    # time they name), so that no search or lookup meets a big base without them.
    indexes = None
    if size >= store.id_index_min_bytes:
        new_base = BaseFile(tmp)
        try:
            indexes = idindex.prepare(new_base, store.path)
        finally:
            new_base.close()
    try:
        if after_build is not None:
            after_build()
        with store._writing() as now:
            if now.base.stat is None or (now.base.stat.st_ino, now.base.generation) != (
                start_ino,
                start_gen,
            ):
                return None
            end = store._overlay.offset if store._overlay is not None else overlay.offset
            os.replace(tmp, store.path)
            idindex.install(indexes)
            indexes = None
            fsync_dir(store.path)
            if after_install is not None:
                after_install()
            store._rewrite_journal(generation, size, crc, overlay.offset, end)
            store._index = None
            result = {"records": overlay.records, "generation": generation}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if indexes is not None:  # not installed: the store changed under the rebuild
            idindex.discard(indexes)
    build_id_index(store)  # (when they could not be prepared)
    return result


def build_id_index(store: Store, wanted: bool = False) -> bool:
    """Build the indexes of the store's base unless they are current or (``wanted`` False:
    the caller did not decide for them) the base is too small to want them."""
    base = BaseFile(store.path)
    try:
        if base.stat is None or (not wanted and base.stat.st_size < store.id_index_min_bytes):
            return False
        found = idindex.current(base)
        if found is not None:
            found.close()
            return False
        return idindex.build(base) is not None
    finally:
        base.close()
