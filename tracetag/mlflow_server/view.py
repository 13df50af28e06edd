"""Reading an MLflow server: searches paged at 500 with the filter's MLflow-shaped part pushed
down, trace infos by id in batches, spans per trace. A server has no snapshots: a view reads it
as it is at each request."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import TraceNotFound
from ..filters.ast import has_span_conditions
from .convert import doc_of_info, spans_of_rest
from .http import HttpError
from .pushdown import split

if TYPE_CHECKING:
    from . import MlflowStore

__all__ = ["MlflowView", "is_unknown_trace"]

PAGE = 500  # the server's largest page


def is_unknown_trace(e: HttpError) -> bool:
    """MLflow answers a tag write on an unknown trace with 400 and its database's foreign-key
    error (SQLite's and PostgreSQL's wording), or with 404."""
    text = e.message.lower()
    return e.status == 404 or (e.status == 400 and ("foreign key" in text or "foreignkey" in text))


class MlflowView:
    def __init__(self, store: MlflowStore):
        self.store = store
        self.server = store.server
        self._experiments: list[dict[str, Any]] | None = None
        self._spans: dict[str, list[dict[str, Any]]] = {}  # fetched in batches for a filter
        self.pushed = ""  # the filter the last search sent to the server (--explain shows it)

    def close(self) -> None:
        pass

    def __enter__(self) -> MlflowView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def experiments(self) -> list[dict[str, Any]]:
        if self._experiments is None:
            found: list[dict[str, Any]] = []
            token = None
            while True:
                body: dict[str, Any] = {"max_results": 1000}
                if token:
                    body["page_token"] = token
                answer = self.server.call("POST", "/api/2.0/mlflow/experiments/search", body)
                for e in answer.get("experiments") or []:
                    created = int(e.get("creation_time") or 0)
                    found.append(
                        {
                            "experiment_id": e["experiment_id"],
                            "name": e["name"],
                            "creation_time_ms": created,
                        }
                    )
                token = answer.get("next_page_token")
                if not token:
                    break
            self._experiments = sorted(
                found, key=lambda e: (len(e["experiment_id"]), e["experiment_id"])
            )
        return self._experiments

    def _search(self, experiment_ids: Iterable[str], pushed: str) -> Iterator[dict[str, Any]]:
        for exp in experiment_ids:
            token = None
            while True:
                body: dict[str, Any] = {
                    "locations": [
                        {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": exp}}
                    ],
                    "max_results": PAGE,
                    "order_by": ["timestamp_ms DESC", "request_id ASC"],
                }
                if pushed:
                    body["filter"] = pushed
                if token:
                    body["page_token"] = token
                answer = self.server.call("POST", "/api/3.0/mlflow/traces/search", body)
                for info in answer.get("traces") or []:
                    yield doc_of_info(info)
                token = answer.get("next_page_token")
                if not token or not answer.get("traces"):
                    break

    def select_raw(
        self,
        predicate: Callable[[dict[str, Any]], bool | None],
        required: list[bytes] | None = None,
        experiment_ids: set[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        node: Any = None,
        now: int | None = None,
        **_ordering: Any,
    ) -> Iterator[tuple[dict[str, Any], bytes | None]]:
        pushed, _rest = split(node, now or 0)
        self.pushed = pushed
        exps = (
            sorted(experiment_ids)
            if experiment_ids is not None
            else [e["experiment_id"] for e in self.experiments()]
        )
        docs: Iterable[dict[str, Any]] = self._search(exps, pushed)
        if node is not None and has_span_conditions(node):
            docs = list(docs)  # span conditions: fetch the candidates' spans 50 at a time
            self._prefetch([d["trace_id"] for d in docs])
        for done, doc in enumerate(docs, 1):
            if progress is not None and done % PAGE == 0:
                progress(done, 0)
            if predicate(doc) is True:
                yield doc, None

    def _prefetch(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 50):
            query = "&".join(f"trace_ids={t}" for t in ids[i : i + 50])
            answer = self.server.call("GET", f"/api/3.0/mlflow/traces/batchGet?{query}")
            for trace in answer.get("traces") or []:
                tid = trace["trace_info"]["trace_id"]
                self._spans[tid] = spans_of_rest(trace.get("spans") or [])

    def iter_docs(self) -> Iterator[dict[str, Any]]:
        yield from self._search([e["experiment_id"] for e in self.experiments()], "")

    def get(self, trace_id: str) -> dict[str, Any] | None:
        try:
            answer = self.server.call("GET", f"/api/3.0/mlflow/traces/{trace_id}")
        except HttpError as e:
            if e.status in (400, 404):
                return None
            raise
        return doc_of_info(answer["trace"]["trace_info"])

    def get_many(self, trace_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(trace_ids))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 100):
            answer = self.server.call(
                "POST", "/api/3.0/mlflow/traces/batchGetInfos", {"trace_ids": ids[i : i + 100]}
            )
            for info in answer.get("trace_infos") or []:
                doc = doc_of_info(info)
                out[doc["trace_id"]] = doc
        return out

    def require(self, trace_id: str) -> dict[str, Any]:
        doc = self.get(trace_id)
        if doc is None:
            raise TraceNotFound(trace_id)
        return doc

    def spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        cached = self._spans.get(doc["trace_id"])
        if cached is not None:
            return cached
        try:
            answer = self.server.call(
                "GET", f"/api/3.0/mlflow/traces/get?trace_id={doc['trace_id']}&allow_partial=true"
            )
        except HttpError as e:
            if e.status in (400, 404):
                return []
            raise
        return spans_of_rest(answer["trace"].get("spans") or [])
