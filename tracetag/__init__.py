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
    "set_store": ".fluent",
    "flush": ".recorder",
    "set_durability": ".recorder",
    "set_tracking_uri": ".fluent",
    "get_client": ".fluent",
    "search_traces": ".fluent",
    "get_trace": ".fluent",
    "set_trace_tag": ".fluent",
    "set_trace_tags": ".fluent",
    "delete_trace_tag": ".fluent",
    "delete_traces": ".fluent",
    "create_experiment": ".fluent",
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
    "set_experiment": ".fluent",
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
    "flush",
    "get_client",
    "get_current_active_span",
    "get_last_active_trace_id",
    "get_trace",
    "search_traces",
    "set_durability",
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
    from .api import PagedList, TracetagClient
    from .api import TracetagClient as MlflowClient
    from .fluent import (
        create_experiment,
        delete_trace_tag,
        delete_traces,
        get_client,
        get_trace,
        search_traces,
        set_experiment,
        set_store,
        set_trace_tag,
        set_trace_tags,
        set_tracking_uri,
    )
    from .model import Span, SpanEvent, Trace, TraceData, TraceInfo
    from .recorder import flush, set_durability
    from .store import Store
    from .tracing import (
        get_current_active_span,
        get_last_active_trace_id,
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
