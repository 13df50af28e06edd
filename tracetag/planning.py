"""Batch writes planned outside the write lock.

A batch (``tag set --filter``, ``delete -f``, ``lint --fix``) is planned on a snapshot without the
lock: the filter may take as long as it takes and no other writer (a traced request, another
command) waits for it. Under the lock the store tells which traces changed since that snapshot,
and only those are planned again (:meth:`Plan.refresh`), so the lock is held for the time of an
append, whatever the filter. See :meth:`tracetag.store.Store.write_planned`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tags import TagChange, TagReport

if TYPE_CHECKING:  # the filter modules cost ~20 ms to import; a batch by ids needs none
    from .filters import ast as A

if TYPE_CHECKING:
    from .backend import ReadView

__all__ = ["DeletePlan", "DeleteReport", "Selection", "TagPlan"]


@dataclass
class Selection:
    """Which traces a batch is about: given ids, or a filter over some experiments."""

    ids: list[str] | None = None
    node: A.Node | None = None
    experiment_ids: list[str] | None = None
    progress: Callable[[int, int], None] | None = None
    # The fields the plan reads besides trace_id ("tags" for a tag change): a database then
    # sends only those for the traces its SQL selects exactly.
    fields: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        from .filters.evaluate import now_ms

        self._now = now_ms() if self.node is not None else 0  # one now() for plan and refresh
        self._exps = None if self.experiment_ids is None else set(self.experiment_ids)
        self._idset = None if self.ids is None else set(self.ids)

    def docs(self, snap: ReadView) -> tuple[Iterable[dict], list[str]]:
        """(the selected documents, ids asked for that do not exist)."""
        if self.ids is not None:
            found = snap.get_many(self.ids)
            docs = [found[i] for i in self.ids if i in found and self._in_experiments(found[i])]
            return docs, [i for i in self.ids if i not in found]
        from .filters import required_bytes

        selected: Iterator[dict] = (
            doc
            for doc, _raw in snap.select_raw(
                self._predicate(snap),
                required=required_bytes(self.node),
                experiment_ids=self._exps,
                progress=self.progress,
                node=self.node,
                now=self._now,
                fields=self.fields,
            )
        )
        return selected, []

    def _predicate(self, snap: ReadView) -> Callable[[dict], bool | None]:
        """The filter over ``snap``'s documents (span conditions read spans from it)."""
        if self.node is None:
            return lambda _d: True
        from .filters import compile_filter

        record_of = getattr(snap, "span_record", None)
        return compile_filter(self.node, self._now, spans_of=snap.spans, record_of=record_of)

    def _in_experiments(self, doc: dict) -> bool:
        return self._exps is None or doc["experiment_id"] in self._exps

    def matches(self, doc: dict, snap: ReadView) -> bool:
        if self._idset is not None:
            return doc["trace_id"] in self._idset and self._in_experiments(doc)
        return self._in_experiments(doc) and self._predicate(snap)(doc) is True

    def wanted(self, trace_id: str) -> bool:
        """Whether a missing ``trace_id`` is one the caller named (and so "not found")."""
        return self._idset is not None and trace_id in self._idset


class TagPlan:
    """Per-trace tag changes: ``change(doc)`` says what to do to one document (None: nothing)."""

    def __init__(
        self,
        selection: Selection,
        change: Callable[[dict], TagChange | None],
        dry_run: bool = False,
    ):
        self.selection = selection
        self.change = change
        self.dry_run = dry_run

    def plan(self, snap: ReadView) -> TagReport:
        docs, missing = self.selection.docs(snap)
        changes = [c for d in docs if (c := self.change(d)) is not None]
        return TagReport(changes, missing, dry_run=self.dry_run)

    def refresh(self, snap: ReadView, report: TagReport, changed: set[str]) -> TagReport:
        """The report with the traces in ``changed`` planned again on ``snap``."""
        changes = [c for c in report.changes if c.trace_id not in changed]
        missing = [t for t in report.not_found if t not in changed]
        for tid in sorted(changed):
            doc = snap.get(tid)
            if doc is None:
                if self.selection.wanted(tid):
                    missing.append(tid)
            elif self.selection.matches(doc, snap) and (c := self.change(doc)) is not None:
                changes.append(c)
        return TagReport(changes, missing, dry_run=self.dry_run)


class DeleteReport:
    """What a deletion removed (or would remove, with ``dry_run``)."""

    def __init__(self, trace_ids: list[str], not_found: list[str], dry_run: bool):
        self.trace_ids = trace_ids
        self.not_found = not_found
        self.dry_run = dry_run
        self.written = False

    @property
    def deleted(self) -> int:
        return len(self.trace_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            "trace_ids": self.trace_ids,
            "not_found": self.not_found,
            "dry_run": self.dry_run,
        }


class DeletePlan:
    """The traces to delete: every match, oldest first, cut to ``max_traces`` at the end (so a
    refresh can bring in a trace that was not among the oldest before)."""

    def __init__(self, selection: Selection, max_traces: int | None, dry_run: bool):
        self.selection = selection
        self.max_traces = max_traces
        self.dry_run = dry_run
        self._matches: dict[str, int] = {}
        self._missing: list[str] = []

    def _report(self) -> DeleteReport:
        victims = sorted((ts, tid) for tid, ts in self._matches.items())
        if self.max_traces is not None:
            victims = victims[: self.max_traces]  # the oldest first, as MLflow
        return DeleteReport([tid for _ts, tid in victims], list(self._missing), self.dry_run)

    def plan(self, snap: ReadView) -> DeleteReport:
        docs, self._missing = self.selection.docs(snap)
        self._matches = {d["trace_id"]: d["timestamp_ms"] for d in docs}
        return self._report()

    def refresh(self, snap: ReadView, _report: DeleteReport, changed: set[str]) -> DeleteReport:
        for tid in changed:
            self._matches.pop(tid, None)
            doc = snap.get(tid)
            if doc is not None and self.selection.matches(doc, snap):
                self._matches[tid] = doc["timestamp_ms"]
                if tid in self._missing:
                    self._missing.remove(tid)
            elif doc is None and self.selection.wanted(tid) and tid not in self._missing:
                self._missing.append(tid)
        return self._report()
