"""The module-level functions, in MLflow's shape (``mlflow.search_traces``,
``mlflow.set_trace_tag``, ``mlflow.set_experiment``...), acting on the default store and the
active experiment that :mod:`tracetag.runtime` keeps. ``tracetag.X`` is ``tracetag.fluent.X``.
"""

from __future__ import annotations

import os
from typing import Any

from . import runtime
from .api import TracetagClient
from .errors import InvalidInput

__all__ = [
    "create_experiment",
    "delete_trace_tag",
    "delete_traces",
    "get_client",
    "get_trace",
    "search_traces",
    "set_experiment",
    "set_store",
    "set_trace_tag",
    "set_trace_tags",
    "set_tracking_uri",
]


def get_client() -> TracetagClient:
    """A client of the default store (``set_store``, else ``$TRACETAG_STORE``, else the
    per-user store)."""
    return TracetagClient(runtime.default_store())


def set_store(path: str | os.PathLike[str] | None) -> None:
    """Use this store for the fluent functions and for recording; None resets."""
    runtime.set_default_store(path)


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """MLflow's name for :func:`set_store`."""
    runtime.set_default_store(uri)


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> dict:
    """Record new traces into this experiment, creating it by name if needed; the fluent
    ``search_traces`` then searches it, as MLflow's does."""
    client = get_client()
    exp: dict | None
    if experiment_id is not None:
        exp = client.get_experiment(str(experiment_id))
    elif experiment_name:
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            client.create_experiment(experiment_name)
            exp = client.get_experiment_by_name(experiment_name)
    else:
        raise InvalidInput("set_experiment needs an experiment name or id")
    assert exp is not None
    runtime.choose_experiment(exp["experiment_id"])
    return exp


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

    if experiment_ids is None and runtime.active_experiment_id() is not None:
        experiment_ids = [str(runtime.active_experiment_id())]
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
    return get_client().get_trace(trace_id)


def set_trace_tag(trace_id: str, key: str, value: Any) -> None:
    get_client().set_trace_tag(trace_id, key, value)


def set_trace_tags(trace_id: str, tags: dict[str, Any]) -> None:
    get_client().set_trace_tags(trace_id, tags)


def delete_trace_tag(trace_id: str, key: str) -> None:
    get_client().delete_trace_tag(trace_id, key)


def delete_traces(
    experiment_id: str | None = None,
    max_timestamp_millis: int | None = None,
    max_traces: int | None = None,
    trace_ids: list[str] | None = None,
) -> int:
    """Delete traces by id or by age (as MLflow's); returns how many were deleted."""
    return (
        get_client()
        .delete_traces(experiment_id, max_timestamp_millis, max_traces, trace_ids)
        .deleted
    )


def create_experiment(name: str) -> str:
    return get_client().create_experiment(name)
