"""TinyDB access to the base file, for people who want the TinyDB API on a store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from .base import BaseFile, layout, loads_doc, new_meta
from .files import atomic_write
from .paths import resolve_store_path


class TraceStorage:
    """A TinyDB storage for the base file, writing its one-document-per-line layout atomically.

    ``open_tinydb(path)`` gives a TinyDB whose tables read the store's documents with the usual
    TinyDB API (read-only use is safe at any time; writes bypass the journal, so only use them
    on a store no tracetag process is using).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def read(self) -> dict | None:
        base = BaseFile(self.path)
        try:
            if base.stat is None:
                return None
            traces = {tid: loads_doc(base, tid, raw) for tid, raw in base.iter_raw()}
            return {"_meta": {"1": base.meta}, "experiments": base.experiments, "traces": traces}
        finally:
            base.close()

    def write(self, data: dict) -> None:
        meta = (data.get("_meta") or {}).get("1") or new_meta()
        traces = ((k, orjson.dumps(v)) for k, v in (data.get("traces") or {}).items())
        atomic_write(self.path, layout(meta, data.get("experiments") or {}, traces))

    def close(self) -> None:
        pass


def open_tinydb(path: str | os.PathLike[str]) -> Any:
    """A ``tinydb.TinyDB`` over the base file; documents are keyed by trace / experiment id."""
    from tinydb import Storage, TinyDB
    from tinydb.table import Table

    class StrIdTable(Table):
        document_id_class = str  # type: ignore[assignment]  # trace ids, not numbers

    class _Storage(TraceStorage, Storage):
        pass

    class StoreDB(TinyDB):
        table_class = StrIdTable

    return StoreDB(str(resolve_store_path(path)), storage=_Storage)
