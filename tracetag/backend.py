"""The seam where a storage backend plugs in: what the client needs from storage, and nothing more.

:class:`tracetag.api.TracetagClient` (and through it the CLI and the fluent functions) only
calls what :class:`Backend` and :class:`ReadView` declare; the local file store
(:class:`tracetag.store.Store`) is the first implementation. ``docs/backends.md`` states the
contract: what is atomic, what a snapshot sees, what is validated where.

Writes are expressed as journal-style records, the same for every backend:

- ``{"op": "put", "doc": TraceDoc}``: insert or replace a trace's info (spans go with
  ``put_traces``);
- ``{"op": "tag", "ids": [...], "set": {k: v}, "del": [k]}``: set and delete tags;
- ``{"op": "del", "ids": [...]}``: delete traces;
- ``{"op": "exp", "doc": {...}}``: create an experiment;
- ``{"op": "batch", "ops": [...]}``: several of these, all or nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

__all__ = ["BACKENDS", "Backend", "Merge", "Predicate", "ReadView", "open_backend"]

Predicate = Callable[[dict[str, Any]], bool | None]
# merge(stored doc, its spans, new doc, new spans) -> (doc, spans) to write instead of the new
Merge = Callable[
    [dict[str, Any], list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]],
    tuple[dict[str, Any], list[dict[str, Any]]],
]


@runtime_checkable
class ReadView(Protocol):
    """A consistent view of a backend at one moment; later writes are not seen through it."""

    def select_raw(
        self,
        predicate: Predicate,
        required: list[bytes] | None = None,
        experiment_ids: set[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        node: Any = None,
        now: int | None = None,
        order: list[Any] | None = None,
        limit: int | None = None,
        after: tuple[Any, ...] | None = None,
        fields: tuple[str, ...] | None = None,
    ) -> Iterator[tuple[dict[str, Any], bytes | None]]:
        """Documents for which ``predicate`` is True, with their JSON bytes when the backend
        has them as they are (else None). ``required``: byte strings every match contains, a
        hint a backend may use to skip documents unparsed.

        Hints a database may push down (all optional to honour): ``node``, the filter AST the
        predicate was compiled from, with its ``now``; ``order`` (``tracetag.query.OrderKey``s),
        ``limit`` and ``after`` (a sort key): a backend that honours them returns the first
        ``limit`` matches after ``after`` in that order. The predicate stays the judge.
        ``fields``: the only fields (besides ``trace_id``) the caller reads, so a backend may
        leave the others out of the documents it has already decided match."""
        ...

    def iter_docs(self) -> Iterator[dict[str, Any]]: ...

    def get(self, trace_id: str) -> dict[str, Any] | None: ...

    def get_many(self, trace_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def require(self, trace_id: str) -> dict[str, Any]:
        """The document, or :class:`~tracetag.errors.TraceNotFound`."""
        ...

    def experiments(self) -> list[dict[str, Any]]: ...

    def spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> ReadView: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A trace store. Every method that writes is one atomic write."""

    path: Any  # where it is: a file path, a URL; shown in messages

    def snapshot(self) -> ReadView: ...

    def read_spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The spans of ``doc``, which may come from an older snapshot."""
        ...

    def put_traces(
        self,
        items: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        extra_ops: Iterable[dict[str, Any]] = (),
        *,
        count_replaced: bool = True,
        merge: Merge | None = None,
    ) -> tuple[int, int]:
        """Insert or replace traces (:class:`~tracetag.model.TraceDoc`, span dicts), validated by
        :func:`tracetag.schema.check_trace` before anything is written; returns (new, replaced).

        ``merge``: a trace already stored is written as ``merge(stored, stored spans, new,
        new spans)``, computed inside the write (so a tag set meanwhile is not lost)."""
        ...

    def write_planned(
        self,
        plan: Callable[[Any], Any],
        refresh: Callable[[Any, Any, set[str]], Any],
        record_of: Callable[[Any], dict[str, Any] | None],
        attempts: int = 3,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """A batch write: ``plan(view)`` without holding writers back, ``refresh(view, result,
        changed_ids)`` for what changed meanwhile, then the one record ``record_of(result)``.
        A backend whose write itself takes long (many requests) reports ``progress(done,
        total)``."""
        ...

    def create_experiment(self, name: str) -> str: ...

    def compact(self, vacuum: bool = False) -> dict[str, int]: ...

    def info(self) -> dict[str, Any]:
        """Where the store is, how many traces, how big."""
        ...

    def check(self) -> Any:
        """A report with ``ok``, ``errors``, ``warnings``, ``lines()`` and ``to_dict()``."""
        ...

    def repair(self) -> dict[str, Any]:
        """Rebuild from what is readable, after a backup; returns what was dropped."""
        ...


def _open(location: str | os.PathLike[str] | None) -> Backend:
    from . import runtime

    return runtime.store_for(location)  # one object per file, database or server


# Backends by name; runtime.store_for tells them apart by the location. The behavioural suite
# (tests/test_backend_contract.py) runs against each one that has transactions; an MLflow
# server has none and has its own tests.
BACKENDS: dict[str, Callable[[str | os.PathLike[str] | None], Backend]] = {
    "local": _open,
    "postgresql": _open,
    "mlflow": _open,
}


def backend_kind(location: str | os.PathLike[str] | None) -> str:
    """Which backend a ``--store`` value names: a ``postgresql://`` URL, an ``http(s)://``
    MLflow tracking server, else a file."""
    from .locations import is_mlflow_url, is_postgres_url
    from .runtime import chosen_store

    chosen = chosen_store(location)
    if is_postgres_url(chosen):
        return "postgresql"
    return "mlflow" if is_mlflow_url(chosen) else "local"


def open_backend(location: str | os.PathLike[str] | None) -> Backend:
    """The backend for a ``--store`` value (None: the default store)."""
    return BACKENDS[backend_kind(location)](location)
