"""An MLflow tracking server as a tracetag backend: ``--store http://host:5000``.

Everything goes through MLflow's public REST API (never its database). The server has no
transactions, no snapshots and no batch endpoints, so this backend differs from the others in
what it can promise, and says so: a view reads the server as it is at each request; a batch of
tag changes is one request per (trace, key), sent with bounded concurrency and retried on 429
and 5xx, and is not atomic. Every tag write is an assignment, so a batch that failed part-way
is finished by running the same command again. Failures are reported per trace
(:class:`BatchIncomplete`, exit 1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, StoreError, TracetagError
from ..locations import is_mlflow_url
from ..otlp.mapping import otlp_request
from ..schema import check_trace
from .convert import info_of_doc, otel_trace_id
from .http import HttpError, Server
from .view import MlflowView, is_unknown_trace

if TYPE_CHECKING:
    from ..backend import Merge

__all__ = ["BatchIncomplete", "MlflowStore", "is_mlflow_url"]

CONCURRENCY = 8  # requests in flight: the server answered 4-8 client threads alike
Request = tuple[str, str, str, Any]  # (trace id, method, path, JSON body)


class BatchIncomplete(TracetagError):
    """Some requests of a batch failed; the others were written (an MLflow server has no
    transactions). Running the same command again finishes it."""

    def __init__(self, failed: dict[str, str], done: int):
        shown = "; ".join(f"{tid}: {why}" for tid, why in list(failed.items())[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        self.done = done
        super().__init__(
            f"{len(failed)} traces not written ({shown}{more}); {done} were. An MLflow server "
            "has no transactions: run the same command again to finish"
        )
        self.failed = failed


class MlflowStore:
    """Traces on an MLflow tracking server (see :mod:`tracetag.backend`)."""

    def __init__(self, url: str):
        self.server = Server(url)
        self.url = url
        self.path = self.server.shown
        self.writes = 0

    def __repr__(self) -> str:
        return f"MlflowStore({self.path!r})"

    def snapshot(self) -> MlflowView:
        return MlflowView(self)

    def read_spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        return MlflowView(self).spans(doc)

    # -- writing -----------------------------------------------------------------------------

    def _experiment_ids(self) -> dict[str, str]:
        return {e["name"]: e["experiment_id"] for e in MlflowView(self).experiments()}

    def put_traces(
        self,
        items: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        extra_ops: Iterable[dict[str, Any]] = (),
        *,
        count_replaced: bool = True,
        merge: Merge | None = None,
    ) -> tuple[int, int]:
        """Spans through OTLP (``/v1/traces``), then each info through the traces endpoint,
        under the same trace ids: sending a trace again replaces it, never duplicates it.

        A server has no transactions: a ``merge`` reads the stored traces first, so a write
        that lands between that read and this one is overwritten."""
        if merge is not None and items:
            view = MlflowView(self)
            found = view.get_many(doc["trace_id"] for doc, _s in items)
            items = [
                merge(found[d["trace_id"]], view.spans(found[d["trace_id"]]), d, s)
                if d["trace_id"] in found
                else (d, s)
                for d, s in items
            ]
        for doc, spans in items:
            check_trace(doc, spans)
            otel_trace_id(doc["trace_id"])  # the server takes OpenTelemetry ids only
        # The server numbers experiments itself: one asked for as (id, name) is made (or found)
        # by name, and the traces meant for that id go to the server's.
        moved: dict[str, str] = {}
        for op in extra_ops:
            if op.get("op") == "exp":
                moved[op["doc"]["experiment_id"]] = self.create_experiment(op["doc"]["name"])
        items = [
            ({**d, "experiment_id": moved.get(d["experiment_id"], d["experiment_id"])}, s)
            for d, s in items
        ]
        replaced = 0
        if count_replaced and items:
            existing = MlflowView(self).get_many(doc["trace_id"] for doc, _s in items)
            replaced = len(existing)
        by_exp: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
        for doc, spans in items:
            by_exp.setdefault(doc["experiment_id"], []).append((doc, spans))
        infos: list[Request] = []  # each trace's tags, metadata, state and times
        for exp, group in by_exp.items():
            for i in range(0, len(group), 100):
                chunk = group[i : i + 100]
                headers = {"x-mlflow-experiment-id": exp}
                self.server.call(
                    "POST", "/v1/traces", otlp_request(chunk, trace_data=False), headers
                )
            infos += [
                (doc["trace_id"], "POST", "/api/3.0/mlflow/traces",
                 {"trace": {"trace_info": info_of_doc(doc, exp)}})
                for doc, _s in group
            ]  # fmt: skip
        self._send(infos)
        return len(items) - replaced, replaced

    def _send(
        self, requests: list[Request], progress: Callable[[int, int], None] | None = None
    ) -> None:
        """``requests`` ``CONCURRENCY`` at a time; :class:`BatchIncomplete` names the traces
        whose requests failed, and why."""
        failed: dict[str, str] = {}
        sent = [0]
        lock = threading.Lock()

        def send(req: Request) -> None:
            tid, method, path, body = req
            try:
                self.server.call(method, path, body)
            except HttpError as e:
                if not (method == "DELETE" and e.status == 404):  # a gone key is what we want
                    failed[tid] = "trace not found" if is_unknown_trace(e) else str(e)
            if progress is not None:
                with lock:
                    sent[0] += 1
                    progress(sent[0], len(requests))

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(send, requests))
        self.writes += 1
        if failed:
            raise BatchIncomplete(failed, len({r[0] for r in requests}) - len(failed))

    def apply(
        self,
        record: dict[str, Any],
        view: MlflowView,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """A write record as REST requests, ``CONCURRENCY`` at a time."""
        ops = record["ops"] if record.get("op") == "batch" else [record]
        requests: list[Request] = []
        for op in ops:
            if op["op"] == "tag":
                for tid in op["ids"]:
                    path = f"/api/3.0/mlflow/traces/{tid}/tags"
                    requests += [
                        (tid, "PATCH", path, {"key": k, "value": v}) for k, v in op["set"].items()
                    ]
                    requests += [(tid, "DELETE", path, {"key": k}) for k in op.get("del") or []]
            elif op["op"] == "del":
                self._delete(op["ids"], view)
            elif op["op"] == "exp":
                self.create_experiment(op["doc"]["name"])
            else:
                raise InvalidInput(f"an MLflow server cannot take {op['op']!r} writes here")
        self._send(requests, progress)

    def _delete(self, ids: list[str], view: MlflowView) -> None:
        by_exp: dict[str, list[str]] = {}
        for tid, doc in view.get_many(ids).items():
            by_exp.setdefault(doc["experiment_id"], []).append(tid)
        for exp, tids in by_exp.items():
            for i in range(0, len(tids), 100):
                body = {"experiment_id": exp, "request_ids": tids[i : i + 100]}
                self.server.call("POST", "/api/3.0/mlflow/traces/delete-traces", body)

    def write_planned(
        self,
        plan: Callable[[Any], Any],
        refresh: Callable[[Any, Any, set[str]], Any],
        record_of: Callable[[Any], dict[str, Any] | None],
        attempts: int = 3,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Plan on the server as it is, then send the record (not atomic: see the module)."""
        view = MlflowView(self)
        result = plan(view)
        record = record_of(result)
        if record is not None:
            try:
                self.apply(record, view, progress)
            except BatchIncomplete as e:
                missing = getattr(result, "not_found", None) or []
                raise BatchIncomplete(
                    {**dict.fromkeys(missing, "trace not found"), **e.failed}, e.done
                ) from None
        return result

    def create_experiment(self, name: str) -> str:
        known = self._experiment_ids()
        if name in known:
            return known[name]
        answer = self.server.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})
        return str(answer["experiment_id"])

    def explain(self, node: Any, order: Any = None, paged: bool = True) -> list[str]:
        """What the server evaluates of ``node`` (the order and paging it plans itself)."""
        from ..filters.evaluate import now_ms
        from .pushdown import split

        pushed, rest = split(node, now_ms())
        lines = [f"sent to the MLflow server: {pushed or '(nothing: every trace is read)'}"]
        if rest:
            lines.append("evaluated by tracetag: " + " AND ".join(str(n) for n in rest))
        return lines

    # -- upkeep ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        view = MlflowView(self)
        exps = view.experiments()
        return {
            "store": self.path,
            "backend": "mlflow",
            "experiments": len(exps),
            "traces": sum(1 for _ in view.iter_docs()),
        }

    def check(self) -> Any:
        from ..store.maintenance import CheckReport

        report = CheckReport()
        started = time.perf_counter()
        report.facts["experiments"] = len(MlflowView(self).experiments())
        report.facts["store"] = self.path
        report.facts["answered_in_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return report

    def repair(self) -> dict[str, Any]:
        raise StoreError(f"{self.path}: an MLflow server is repaired with MLflow's own tools")

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        raise StoreError(f"{self.path}: an MLflow server keeps its own storage")

    def migrate(self) -> list[str]:
        return []
