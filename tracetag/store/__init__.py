"""The local trace store: a TinyDB JSON document file, a journal beside it, spans apart.

``local`` holds :class:`Store` (writes, transactions, compaction); the modules below it are the
pieces it is made of, in the order they depend on each other: ``paths`` (where a store lives),
``files`` (whole writes, atomic replacement, records), ``base`` (the base file and its
migrations), ``journal`` (the replayed log), ``snapshot`` (a read view), ``lock``, and the
``maintenance`` commands (info, check, repair) and ``tinydb`` access on top. ``docs/store.md``
has the design and its invariants.
"""

from __future__ import annotations

from .base import MIGRATIONS, SCHEMA_VERSION
from .local import Store
from .paths import PRIVATE_DIR, PRIVATE_FILE, create_file, default_store_path, resolve_store_path
from .snapshot import Snapshot
from .tinydb import TraceStorage, open_tinydb

__all__ = [
    "MIGRATIONS",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "SCHEMA_VERSION",
    "Snapshot",
    "Store",
    "TraceStorage",
    "create_file",
    "default_store_path",
    "open_tinydb",
    "resolve_store_path",
]
