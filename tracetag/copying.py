"""``tracetag store copy``: traces from one store into another, whatever their backends."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .model import INFO_FIELDS
from .query import select

if TYPE_CHECKING:
    from .api import TracetagClient
    from .filters import ast as A

__all__ = ["copy_traces", "experiment_record"]


def copy_traces(
    source: TracetagClient,
    target: TracetagClient,
    node: A.Node | None,
    experiment_ids: Iterable[str] | None,
    batch: int,
    progress: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Copy the matches of ``node`` with the experiments they need, ``batch`` traces per atomic
    write (an upsert, so a second run updates); returns (new, updated)."""
    new = updated = 0
    with target.snapshot() as here:
        known = {e["experiment_id"]: e["name"] for e in here.experiments()}
    names = set(known.values())
    items: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    extra: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal new, updated
        n, u = target.store.put_traces(items, extra)
        new, updated = new + n, updated + u
        if progress is not None:
            progress(len(items))
        items.clear()
        extra.clear()

    with source.snapshot() as snap:
        exps = {e["experiment_id"]: e for e in snap.experiments()}
        for doc in select(snap, node, experiment_ids):
            eid = doc["experiment_id"]
            if eid not in known:
                extra.append(experiment_record(exps.get(eid), eid, names))
                known[eid] = extra[-1]["doc"]["name"]
            items.append(({k: doc.get(k) for k in INFO_FIELDS}, snap.spans(doc)))
            if len(items) >= batch:
                flush()
        if items or extra:
            flush()
    return new, updated


def experiment_record(
    exp: dict[str, Any] | None, eid: str, names: set[str], created: int = 0
) -> dict[str, Any]:
    """The record creating experiment ``eid`` (named as ``exp``, else ``experiment-ID``) in a
    store whose experiment names are ``names``: a name taken by another experiment gets a
    number (names are unique in a database and in MLflow)."""
    base = (exp or {}).get("name") or f"experiment-{eid}"
    name, n = base, 1
    while name in names:
        n += 1
        name = f"{base} ({n})"
    names.add(name)
    created = (exp or {}).get("creation_time_ms") or created
    return {"op": "exp", "doc": {"experiment_id": eid, "name": name, "creation_time_ms": created}}
