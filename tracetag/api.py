"""The Python API: ``TracetagClient`` and the fluent functions, in MLflow's shape.

``tracetag.search_traces(...)``, ``tracetag.set_trace_tag(...)`` and ``TracetagClient()`` (also
importable as ``MlflowClient``) take the same arguments as MLflow's, so MLflow examples port by
renaming ``mlflow`` to ``tracetag``. Every mutation is one durable write to the store.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any

import orjson

from . import recorder
from .backend import Backend, ReadView, open_backend
from .errors import ExperimentNotFound, InvalidInput, TagNotFound, TraceNotFound
from .formats import EXPORT_FORMATS
from .importing import ImportSummary, import_sources
from .model import Span, Trace, TraceData, TraceInfo, doc_to_trace, trace_to_doc
from .planning import DeletePlan, DeleteReport, Selection, TagPlan

if TYPE_CHECKING:
    from .analytics import GroupStats
    from .filters import ast as A
    from .lint import Finding, LintConfig
    from .query import SearchPage
    from .store.maintenance import CheckReport
from .tags import (
    TagChange,
    TagReport,
    plan_change,
    tag_record,
    validate_deletable_key,
    validate_tags,
)

__all__ = [
    "DeleteReport",
    "ImportSummary",
    "PagedList",
    "TagNotFound",
    "TracetagClient",
]


class PagedList(list):
    """A page of results; ``token`` fetches the next page (None on the last one)."""

    def __init__(self, items: Iterable[Any], token: str | None):
        super().__init__(items)
        self.token = token


class TracetagClient:
    """Access to one store. ``store`` is a path, a ``Store``, or None for the default store."""

    def __init__(self, store: str | os.PathLike[str] | Backend | None = None):
        if store is None or isinstance(store, str | os.PathLike):
            store = open_backend(store)
        self.store: Backend = store

    def __repr__(self) -> str:
        return f"TracetagClient({str(self.store.path)!r})"

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> ReadView:
        """A view of the store that includes every trace this process has recorded."""
        recorder.flush()
        return self.store.snapshot()

    def search_traces(
        self,
        experiment_ids: Iterable[str] | None = None,
        filter_string: str | None = None,
        max_results: int | None = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        run_id: str | None = None,
        include_spans: bool = True,
        return_type: str = "list",
        *,
        now: int | None = None,
    ) -> PagedList | Any:
        """Traces matching ``filter_string``, as MLflow's ``MlflowClient.search_traces``.

        ``experiment_ids=None`` searches every experiment; ``max_results=None`` returns all.
        ``run_id`` adds ``run_id = '...'``; ``include_spans=False`` leaves spans out. The
        result is a list with the next page's ``token``, or, with ``return_type="pandas"``,
        MLflow's other shape: a DataFrame with the info fields and a ``trace`` column.
        """
        if return_type not in ("list", "pandas"):
            raise InvalidInput(f"return_type must be 'list' or 'pandas', not {return_type!r}")
        page = self.search_page(
            experiment_ids, filter_string, max_results, order_by, page_token, run_id, now=now
        )
        if include_spans:
            traces = [doc_to_trace(d, partial(self.store.read_spans, d)) for d in page]
        else:
            traces = [Trace(TraceInfo.from_dict(d)) for d in page]
        if return_type == "pandas":
            return _dataframe(traces)
        return PagedList(traces, page.token)

    def search_page(
        self,
        experiment_ids: Iterable[str] | None = None,
        filter_string: str | None = None,
        max_results: int | None = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        run_id: str | None = None,
        *,
        now: int | None = None,
        ids_only: bool = False,
    ) -> SearchPage:
        """The matching info documents as a ``SearchPage``: iterate it for dicts, in order,
        parsed one at a time (what the CLI streams); ``.token`` fetches the next page.
        ``ids_only``: only ``trace_ids()`` is wanted (no document is kept)."""
        from .filters import ast as A
        from .filters import parse_filter
        from .query import search

        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        node = parse_filter(filter_string)
        if run_id is not None:
            by_run = A.Compare(A.Field("attribute", "run_id"), "=", A.String(run_id))
            node = by_run if node is None else A.And((node, by_run))
        with self.snapshot() as snap:
            if experiment_ids is not None:
                known = {e["experiment_id"] for e in snap.experiments()}
                for e in experiment_ids:
                    if str(e) not in known:
                        raise ExperimentNotFound(str(e))
            return search(
                snap,
                node,
                None if experiment_ids is None else list(experiment_ids),
                order_by,
                max_results,
                page_token,
                now=now,
                ids_only=ids_only,
            )

    def get_trace(self, trace_id: str) -> Trace:
        from . import tracing

        live = tracing.live_trace(trace_id)
        if live is not None:
            return live.to_trace()
        with self.snapshot() as snap:
            doc = snap.require(trace_id)
            spans = [Span.from_dict(s) for s in snap.spans(doc)]
        return Trace(TraceInfo.from_dict(doc), TraceData(spans))

    # -- tags ----------------------------------------------------------------------------------

    def set_trace_tag(self, trace_id: str, key: str, value: Any) -> None:
        self.set_trace_tags(trace_id, {key: value})

    def set_trace_tags(self, trace_id: str, tags: Mapping[str, Any]) -> None:
        """Add or update several tags of one trace in one write."""
        clean = validate_tags(tags)
        if self._apply_live(trace_id, clean, ()):
            return
        report = self.update_tags([trace_id], set=clean)
        if report.not_found:
            raise TraceNotFound(trace_id)

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        validate_deletable_key(key)
        if self._apply_live(trace_id, {}, (key,)):
            return
        report = self.update_tags([trace_id], delete=[key])
        if report.not_found:
            raise TraceNotFound(trace_id)
        if report.missing_keys:
            raise TagNotFound(trace_id, key)

    def _apply_live(self, trace_id: str, sets: dict[str, str], deletes: Iterable[str]) -> bool:
        """A trace still being recorded in this process takes the change in memory."""
        from . import tracing

        live = tracing.live_trace(trace_id)
        if live is None:
            return False
        live.update_tags(sets, deletes)
        return True

    def update_tags(
        self,
        trace_ids: Iterable[str] | None = None,
        *,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        set: Mapping[str, Any] | None = None,
        delete: Iterable[str] = (),
        dry_run: bool = False,
        strict: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> TagReport:
        """Set and delete tags on many traces, chosen by id or by filter, in one atomic write.

        Unknown ids and missing keys are reported, and the rest is applied, unless ``strict``
        (then nothing is written) or ``dry_run`` (never written). ``progress(done, total)``
        follows the scan of a filter.
        """
        sets = validate_tags(set or {})
        dels = [validate_deletable_key(k) for k in delete]
        if trace_ids is None and filter_string is None:
            raise InvalidInput("give trace ids or a filter")
        ids = None if trace_ids is None else list(dict.fromkeys(trace_ids))
        selection = Selection(
            ids,
            None if ids is not None else _parse(filter_string),
            None if experiment_ids is None else [str(e) for e in experiment_ids],
            progress,
            fields=("tags",),
        )
        # Planned while streaming: a batch over 100,000 traces holds their changes, not their
        # documents.
        plan = TagPlan(
            selection, lambda d: plan_change(d["trace_id"], d["tags"], sets, dels), dry_run
        )
        return self.apply_changes(plan, dry_run=dry_run, strict=strict)

    def apply_changes(
        self,
        plan: TagPlan,
        *,
        dry_run: bool = False,
        strict: bool = False,
    ) -> TagReport:
        """Apply a plan's per-trace changes in one atomic write (planned without the lock)."""
        if dry_run:
            with self.snapshot() as snap:
                return plan.plan(snap)
        recorder.flush()  # traces this process recorded are there to be changed

        def record_of(report: TagReport) -> dict | None:
            if strict and not report.ok:
                return None
            record = tag_record(report.changes)
            report.written = record is not None
            return record

        result: TagReport = self.store.write_planned(
            plan.plan, plan.refresh, record_of, progress=plan.selection.progress
        )
        return result

    def replace_tags(
        self, trace_id: str, tags: Mapping[str, str], base: Mapping[str, str]
    ) -> TagChange:
        """Make a trace's tags go from ``base`` to ``tags`` (an editor's result) in one write.

        Only keys the edit touched are written, so a concurrent change to another key stays.
        """
        new = validate_tags(tags)
        sets = {k: v for k, v in new.items() if base.get(k) != v}
        dels = [k for k in base if k not in new]
        plan = TagPlan(
            Selection([trace_id]), lambda d: plan_change(trace_id, d["tags"], sets, dels)
        )
        report = self.apply_changes(plan)
        if report.not_found:
            raise TraceNotFound(trace_id)
        return report.changes[0]

    # -- deleting traces -----------------------------------------------------------------------

    def delete_traces(
        self,
        experiment_id: str | None = None,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: Iterable[str] | None = None,
        *,
        filter_string: str | None = None,
        dry_run: bool = False,
    ) -> DeleteReport:
        """Delete traces, as MLflow's ``delete_traces``, in one atomic write.

        Either ``trace_ids``, or ``max_timestamp_millis`` and/or ``filter_string`` (a guard
        against deleting everything by accident); ``experiment_id`` narrows both;
        ``max_traces`` keeps to the oldest N. The report's ``deleted`` counts what went (MLflow
        returns that number); unknown ids are reported, not fatal. Spans stay in the span file
        until ``compact(vacuum=True)``.
        """
        if trace_ids is None and max_timestamp_millis is None and filter_string is None:
            raise InvalidInput("give trace ids, max_timestamp_millis or a filter")
        if max_traces is not None and max_traces < 1:
            raise InvalidInput(f"max_traces must be at least 1, got {max_traces}")
        from .filters import ast as A

        ids = None if trace_ids is None else list(dict.fromkeys(trace_ids))
        exps = None if experiment_id is None else [str(experiment_id)]
        node = None
        if ids is None:
            node = _parse(filter_string)
            if max_timestamp_millis is not None:
                older = A.Compare(
                    A.Field("attribute", "timestamp_ms"), "<=", A.Number(max_timestamp_millis)
                )
                node = older if node is None else A.And((node, older))
        plan = DeletePlan(Selection(ids, node, exps), max_traces, dry_run)
        recorder.flush()
        if dry_run:
            with self.snapshot() as snap:
                return plan.plan(snap)

        def record_of(report: DeleteReport) -> dict | None:
            if not report.trace_ids:
                return None
            report.written = True
            return {"op": "del", "ids": report.trace_ids}

        result: DeleteReport = self.store.write_planned(plan.plan, plan.refresh, record_of)
        return result

    # -- analysis and upkeep: everything the CLI does goes through the client ----------------

    def get_tags(self, trace_id: str) -> dict[str, str]:
        with self.snapshot() as snap:
            tags: dict[str, str] = snap.require(trace_id)["tags"]
            return tags

    def stats(
        self,
        group_by: Sequence[str] = (),
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        sort: str = "count",
    ) -> GroupStats:
        """Count, errors, error rate and nearest-rank duration percentiles per group."""
        from .analytics import group_stats

        with self.snapshot() as snap:
            return group_stats(snap, list(group_by), filter_string, experiment_ids, sort)

    def tag_keys(
        self, filter_string: str | None = None, experiment_ids: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        from .analytics import tag_keys

        with self.snapshot() as snap:
            return tag_keys(snap, filter_string, experiment_ids)

    def tag_values(
        self,
        key: str,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        from .analytics import tag_values

        with self.snapshot() as snap:
            return tag_values(snap, key, filter_string, experiment_ids)

    def lint(
        self,
        config: LintConfig | None = None,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
    ) -> list[Finding]:
        """Findings of the naming guidelines (see :mod:`tracetag.lint`)."""
        from .lint import lint_store

        with self.snapshot() as snap:
            return lint_store(snap, config, filter_string, experiment_ids)

    def fix_lint(
        self,
        findings: list[Finding],
        config: LintConfig | None = None,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        rules: Iterable[str] | None = None,
    ) -> TagReport:
        from .lint import fix_findings

        return fix_findings(
            self, findings, config, filter_string, experiment_ids, dry_run=dry_run, rules=rules
        )

    def info(self) -> dict[str, Any]:
        return self.store.info()

    def check(self) -> CheckReport:
        report: CheckReport = self.store.check()
        return report

    def repair(self) -> dict[str, Any]:
        return self.store.repair()

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        return self.store.compact(vacuum=vacuum)

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise InvalidInput("experiment name is empty")
        return self.store.create_experiment(name)

    def list_experiments(self) -> list[dict]:
        with self.snapshot() as snap:
            exps = snap.experiments()
            counted = getattr(snap, "trace_counts", None)  # a database counts by itself
            counts = counted() if counted else Counter(d["experiment_id"] for d in snap.iter_docs())
        return [{**e, "traces": counts.get(e["experiment_id"], 0)} for e in exps]

    def resolve_experiment_ids(self, values: Iterable[str]) -> list[str]:
        """Experiment ids for ids or names (an id wins); an unknown one is an error."""
        with self.snapshot() as snap:
            exps = snap.experiments()
        ids = {e["experiment_id"] for e in exps}
        by_name = {e["name"]: e["experiment_id"] for e in exps}
        out = []
        for v in values:
            if v not in ids and v not in by_name:
                raise ExperimentNotFound(v)
            out.append(v if v in ids else by_name[v])
        return out

    def get_experiment_by_name(self, name: str) -> dict | None:
        with self.snapshot() as snap:
            return next((e for e in snap.experiments() if e["name"] == name), None)

    def get_experiment(self, experiment_id: str) -> dict:
        with self.snapshot() as snap:
            for e in snap.experiments():
                if e["experiment_id"] == str(experiment_id):
                    return e
        raise ExperimentNotFound(str(experiment_id))

    # -- writing traces ------------------------------------------------------------------------

    def log_traces(self, traces: list[Trace]) -> tuple[int, int]:
        """Store finished traces (new or replacing ones with the same id) in one write."""
        return self.store.put_traces([trace_to_doc(t) for t in traces])

    def import_traces(
        self,
        data: bytes,
        source: str = "-",
        *,
        skip_invalid: bool = False,
        format: str | None = None,
        experiment: str | None = None,
        labels: str = "tag",
    ) -> ImportSummary:
        """Import MLflow or tracetag JSON (array, document or JSON lines) or OTLP (JSON or
        protobuf; ``format`` ``json`` or ``otlp``, else told from the data): all or nothing,
        unless ``skip_invalid``. See :meth:`import_sources`."""
        return self.import_sources(
            [(source, data)],
            skip_invalid=skip_invalid,
            format=format,
            experiment=experiment,
            labels=labels,
        )

    def import_files(self, files: Sequence[str], **options: Any) -> ImportSummary:
        """:meth:`import_sources` from files by name (``-``: stdin), with its options. A JSON
        file over 64 MB going into the file store is read a trace at a time (docs/store.md)."""
        from .importing import import_files

        return import_files(self, files, **options)

    def import_sources(
        self,
        sources: Sequence[tuple[str, bytes]],
        *,
        skip_invalid: bool = False,
        format: str | None = None,
        experiment: str | None = None,
        labels: str = "tag",
    ) -> ImportSummary:
        """Import several files, ``(name, bytes)`` each, in one atomic write.

        OTLP spans of one trace may be spread over requests and files: they are assembled by
        trace id, and a trace already stored gets the new spans merged in (see
        :func:`tracetag.otlp.merge_trace`). OTLP traces go to ``experiment`` (an id or name;
        a name not yet used makes a new experiment; default ``0``); ``labels`` says how label
        lists become tags (``tag``, ``joined``, ``ignore``)."""
        return import_sources(self, sources, skip_invalid, format, experiment, labels)

    def ingest_otlp(
        self, spans: Sequence[Any], experiment_id: str = "0", labels: str = "tag"
    ) -> tuple[int, list[tuple[str, int, str]]]:
        """Write OTLP spans (:class:`tracetag.otlp.OtelSpan`, one request's worth) as one
        atomic write, merged into the traces already stored. A trace the store refuses is
        left out; returns (traces written, [(trace id, its span count, why)] refused)."""
        from .importing import ingest_otlp

        return ingest_otlp(self.store, spans, experiment_id, labels)

    def export_traces(
        self,
        out: IO[bytes],
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        format: str = "tracetag",
    ) -> int:
        """Write tracetag JSON lines (``{"info", "spans"}``) that import back identically; with
        ``format="mlflow"`` MLflow's ``Trace.to_dict()`` lines, which MLflow reads; with
        ``format="otlp"`` one OTLP/JSON ``ExportTraceServiceRequest`` per trace and line.

        Streams in store order, one trace in memory at a time, whatever the store's size; a
        store built by importing an export keeps its order, so re-exporting gives equal bytes.
        """
        from .interop import to_mlflow_dict
        from .otlp.mapping import otlp_request
        from .query import select

        if format not in EXPORT_FORMATS:
            raise InvalidInput(f"unknown export format {format!r}; use tracetag, mlflow or otlp")
        n = 0
        with self.snapshot() as snap:
            for doc in select(snap, _parse(filter_string), experiment_ids):
                spans = [Span.from_dict(s) for s in snap.spans(doc)]
                info = TraceInfo.from_dict(doc)
                # Tags and metadata by key: stores keep no order of keys (PostgreSQL's jsonb
                # sorts them its own way), so two stores with the same traces export alike.
                info.tags = dict(sorted(info.tags.items()))
                info.metadata = dict(sorted(info.metadata.items()))
                trace = Trace(info, TraceData(spans))
                if format == "otlp":
                    data = otlp_request([trace_to_doc(trace)])
                else:
                    data = to_mlflow_dict(trace) if format == "mlflow" else trace.to_dict()
                out.write(orjson.dumps(data))
                out.write(b"\n")
                n += 1
        return n

    def copy_into(
        self,
        target: TracetagClient,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Copy this store's matching traces into ``target`` (see :meth:`copy_from`)."""
        return target.copy_from(self, filter_string, experiment_ids, progress=progress)

    def explain(self, node: A.Node | None, order: Any = None, paged: bool = True) -> list[str]:
        """How the backend evaluates ``node``: what it does itself, what tracetag checks (for
        the file store: whether a page in ``order`` is read through its order index)."""
        explain = getattr(self.store, "explain", None)
        return [] if explain is None else list(explain(node, order=order, paged=paged))

    def migrate(self) -> list[str]:
        """Apply the schema migrations a database lacks (a local store needs none)."""
        migrate = getattr(self.store, "migrate", None)
        return [] if migrate is None else list(migrate())

    def copy_from(
        self,
        source: TracetagClient,
        filter_string: str | None = None,
        experiment_ids: Iterable[str] | None = None,
        *,
        batch: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Copy the traces of ``source`` (info, tags, metadata, spans) that match into this
        store, with the experiments they belong to. Each batch of ``batch`` traces is one
        atomic write; running it again updates the copies, never duplicates them."""
        from .copying import copy_traces

        new, updated = copy_traces(
            source, self, _parse(filter_string), experiment_ids, batch, progress
        )
        return ImportSummary(new, updated, [])


def _dataframe(traces: list[Trace]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise InvalidInput("return_type='pandas' needs pandas installed") from None
    return pd.DataFrame([{**t.info.to_dict(), "trace": t} for t in traces])


def _parse(filter_string: str | None) -> A.Node | None:
    from .filters import parse_filter

    return parse_filter(filter_string)
