"""``tracetag import`` and the OTLP receiver's writes: files and requests into a store.

MLflow and tracetag JSON carry whole traces, which replace what the store has. OTLP carries
spans, and the spans of one trace may come in several requests or files: they are assembled by
trace id, and a trace already stored gets the new spans merged in, inside the write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ImportFormatError, InvalidInput
from .formats import IMPORT_FORMATS
from .model import trace_to_doc
from .schema import check_trace, next_experiment_id

if TYPE_CHECKING:
    from .api import TracetagClient
    from .backend import Backend, Merge
    from .otlp import Assembled, OtelSpan

__all__ = ["ImportSummary", "import_sources", "ingest_otlp"]


class ImportSummary:
    def __init__(self, new: int, updated: int, invalid: Sequence[tuple[int | str, str]]):
        self.new = new
        self.updated = updated
        self.invalid = list(invalid)

    @property
    def imported(self) -> int:
        return self.new + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "new": self.new,
            "updated": self.updated,
            "invalid": [{"line": n, "error": m} for n, m in self.invalid],
        }


def import_sources(
    client: TracetagClient,
    sources: Sequence[tuple[str, bytes]],
    skip_invalid: bool,
    format: str | None,
    experiment: str | None,
    labels: str,
) -> ImportSummary:
    """Import ``sources`` in one write (see :meth:`TracetagClient.import_sources`)."""
    from .copying import experiment_record
    from .interop import parse_traces
    from .otlp import detect_format, read_otlp

    if format is not None and format not in IMPORT_FORMATS:
        raise InvalidInput(f"unknown import format {format!r}; use json or otlp")
    items: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    invalid: list[tuple[int | str, str]] = []
    otlp_spans: list[OtelSpan] = []
    many = len(sources) > 1
    for source, data in sources:
        bad: list[tuple[int, str]]
        if (format or detect_format(data)) == "otlp":
            spans, bad = read_otlp(data, source, skip_invalid=skip_invalid)
            otlp_spans += spans
        else:
            parsed = parse_traces(data, source, skip_invalid=skip_invalid)
            items += [trace_to_doc(t) for t in parsed.traces]
            bad = parsed.invalid
        invalid += [(n, f"{source}: {m}" if many else m) for n, m in bad]
    with client.snapshot() as snap:
        exps = snap.experiments()
    names = {e["name"] for e in exps}
    known = {e["experiment_id"] for e in exps}
    extra: list[dict[str, Any]] = []
    merge = None
    if otlp_spans:
        eid = _experiment_id(experiment, exps)
        if (
            eid is not None and eid not in known
        ):  # a new name: the experiment is made in the same write
            extra.append(experiment_record({"name": experiment}, eid, names))
            known.add(eid)
        assembled, rejected = otlp_traces(otlp_spans, eid, labels, skip_invalid)
        invalid += [(a.doc["trace_id"], msg) for a, msg in rejected]
        items += [(a.doc, a.spans) for a in assembled.values()]
        merge = otlp_merge(assembled)
    now = int(time.time() * 1000)
    new_exps = sorted({doc["experiment_id"] for doc, _s in items} - known)
    extra += [experiment_record(None, e, names, now) for e in new_exps]
    if not items:
        return ImportSummary(0, 0, invalid)
    new, updated = client.store.put_traces(items, extra, merge=merge)
    return ImportSummary(new, updated, invalid)


def _experiment_id(experiment: str | None, exps: list[dict[str, Any]]) -> str | None:
    """The id of ``experiment`` (an id or a name); a name not in use gets the next id."""
    if experiment is None:
        return None
    for e in exps:
        if experiment == e["experiment_id"]:
            return experiment
    for e in exps:
        if experiment == e["name"]:
            return str(e["experiment_id"])
    if not experiment.strip():
        raise InvalidInput("experiment name is empty")
    return next_experiment_id(e["experiment_id"] for e in exps)


def ingest_otlp(
    store: Backend, spans: Sequence[OtelSpan], experiment_id: str, labels: str
) -> tuple[int, list[tuple[str, int, str]]]:
    """One OTLP request's spans in one write; (traces written, [(id, spans, why)] refused)."""
    assembled, rejected = otlp_traces(spans, experiment_id, labels, True)
    refused = [(a.doc["trace_id"], len(a.spans), msg) for a, msg in rejected]
    if assembled:
        items = [(a.doc, a.spans) for a in assembled.values()]
        store.put_traces(items, count_replaced=False, merge=otlp_merge(assembled))
    return len(assembled), refused


def otlp_traces(
    spans: Sequence[OtelSpan], experiment_id: str | None, labels: str, skip_invalid: bool
) -> tuple[dict[str, Assembled], list[tuple[Assembled, str]]]:
    """OTLP spans as traces by id, each checked as the store will; a trace that fails is
    named (and left out, with why, if ``skip_invalid``)."""
    from .otlp import LABEL_MODES, assemble

    if labels not in LABEL_MODES:
        raise InvalidInput(f"unknown labels mode {labels!r}; use {', '.join(LABEL_MODES)}")
    out: dict[str, Assembled] = {}
    rejected: list[tuple[Assembled, str]] = []
    for a in assemble(spans, experiment_id, labels):
        try:
            check_trace(a.doc, a.spans)
        except InvalidInput as e:
            if not skip_invalid:
                raise ImportFormatError(f"trace {a.doc['trace_id']}: {e}") from None
            rejected.append((a, str(e)))
            continue
        out[a.doc["trace_id"]] = a
    return out, rejected


def otlp_merge(assembled: dict[str, Assembled]) -> Merge:
    from .otlp import merge_trace

    def merge(
        old: dict[str, Any], old_spans: list[dict[str, Any]], new: dict[str, Any], _s: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return merge_trace(old, old_spans, assembled[new["trace_id"]])

    return merge
