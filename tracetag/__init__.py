"""tracetag: manage, tag and search the traces of LLM and ML applications.

The API mirrors MLflow Tracing's so examples port by renaming ``mlflow`` to ``tracetag``::

    import tracetag

    @tracetag.trace
    def answer(question):
        tracetag.update_current_trace(tags={"environment": "production"})
        ...

    for t in tracetag.search_traces(filter_string="tags.environment = 'production'"):
        tracetag.set_trace_tag(t.info.trace_id, "reviewed", "true")

Names are imported lazily so that the command line starts fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    ExperimentNotFound,
    FilterSyntaxError,
    ImportFormatError,
    InvalidInput,
    InvalidQuery,
    InvalidTag,
    NotAStore,
    StoreCorrupted,
    StoreError,
    StoreLocked,
    TagNotFound,
    TraceNotFound,
    TracetagError,
)

_LAZY = {
    "TracetagClient": ".api",
    "MlflowClient": ".api",
    "PagedList": ".api",
    "set_store": ".api",
    "set_tracking_uri": ".api",
    "get_client": ".api",
    "Trace": ".model",
    "TraceInfo": ".model",
    "TraceData": ".model",
    "Span": ".model",
    "SpanEvent": ".model",
    "Store": ".store",
    "trace": ".tracing",
    "start_span": ".tracing",
    "start_span_no_context": ".tracing",
    "update_current_trace": ".tracing",
    "get_current_active_span": ".tracing",
    "get_last_active_trace_id": ".tracing",
    "set_experiment": ".tracing",
}

__all__ = [
    "ExperimentNotFound",
    "FilterSyntaxError",
    "ImportFormatError",
    "InvalidInput",
    "InvalidQuery",
    "InvalidTag",
    "MlflowClient",
    "NotAStore",
    "PagedList",
    "Span",
    "SpanEvent",
    "Store",
    "StoreCorrupted",
    "StoreError",
    "StoreLocked",
    "TagNotFound",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceNotFound",
    "TracetagClient",
    "TracetagError",
    "__version__",
    "create_experiment",
    "delete_trace_tag",
    "delete_traces",
    "get_client",
    "get_current_active_span",
    "get_last_active_trace_id",
    "get_trace",
    "search_traces",
    "set_experiment",
    "set_store",
    "set_trace_tag",
    "set_trace_tags",
    "set_tracking_uri",
    "start_span",
    "start_span_no_context",
    "trace",
    "update_current_trace",
]

if TYPE_CHECKING:
    from .api import PagedList, TracetagClient, get_client, set_store, set_tracking_uri
    from .api import TracetagClient as MlflowClient
    from .model import Span, SpanEvent, Trace, TraceData, TraceInfo
    from .store import Store
    from .tracing import (
        get_current_active_span,
        get_last_active_trace_id,
        set_experiment,
        start_span,
        start_span_no_context,
        trace,
        update_current_trace,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracetag' has no attribute {name!r}")
    attr = "TracetagClient" if name == "MlflowClient" else name
    value = getattr(import_module(module, __name__), attr)
    globals()[name] = value
    return value


# Fluent functions on the default store (``set_store`` or ``$TRACETAG_STORE``), as MLflow's.


def search_traces(
    experiment_ids: list[str] | None = None,
    filter_string: str | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    *,
    page_token: str | None = None,
    run_id: str | None = None,
    include_spans: bool = True,
    return_type: str = "list",
) -> Any:
    """Traces matching ``filter_string``, as MLflow's ``mlflow.search_traces`` (same order of
    the positional parameters).

    ``experiment_ids=None`` searches the experiment chosen with ``set_experiment``, as MLflow
    does, or every experiment when none was chosen. ``max_results=None`` returns every match;
    ``return_type="pandas"`` gives a DataFrame.
    """
    from .api import get_client
    from .tracing import active_experiment_id

    if experiment_ids is None and active_experiment_id() is not None:
        experiment_ids = [str(active_experiment_id())]
    return get_client().search_traces(
        experiment_ids,
        filter_string,
        max_results,
        order_by,
        page_token,
        run_id=run_id,
        include_spans=include_spans,
        return_type=return_type,
    )


def get_trace(trace_id: str) -> Any:
    from .api import get_client

    return get_client().get_trace(trace_id)


def set_trace_tag(trace_id: str, key: str, value: Any) -> None:
    from .api import get_client

    get_client().set_trace_tag(trace_id, key, value)


def set_trace_tags(trace_id: str, tags: dict[str, Any]) -> None:
    from .api import get_client

    get_client().set_trace_tags(trace_id, tags)


def delete_trace_tag(trace_id: str, key: str) -> None:
    from .api import get_client

    get_client().delete_trace_tag(trace_id, key)


def delete_traces(
    experiment_id: str | None = None,
    max_timestamp_millis: int | None = None,
    max_traces: int | None = None,
    trace_ids: list[str] | None = None,
) -> int:
    """Delete traces by id or by age (as MLflow's); returns how many were deleted."""
    from .api import get_client

    return (
        get_client()
        .delete_traces(experiment_id, max_timestamp_millis, max_traces, trace_ids)
        .deleted
    )


def create_experiment(name: str) -> str:
    from .api import get_client

    return get_client().create_experiment(name)
