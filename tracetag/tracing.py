"""Recording traces from Python: ``@trace``, ``start_span`` and ``update_current_trace``.

The current span lives in a ``ContextVar``, so threads and asyncio tasks never mix traces. When
a trace's root span ends, the trace is handed to the recorder (tracetag/recorder.py), which
writes it as the durability level says: by a background writer that never drops (the
default), or before the call returns.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any, TypeVar

from . import recorder, runtime
from .errors import InvalidInput
from .jsonsafe import safe_repr, to_jsonable
from .model import (
    Span,
    SpanEvent,
    Trace,
    TraceData,
    TraceInfo,
    new_span_id,
    new_trace_id,
    preview_of,
    span_dict,
)
from .schema import MAX_PREVIEW, valid_experiment_id
from .tags import validate_key, validate_value

__all__ = [
    "LiveSpan",
    "get_current_active_span",
    "get_last_active_trace_id",
    "live_trace",
    "start_span",
    "start_span_no_context",
    "trace",
    "update_current_trace",
]

log = logging.getLogger("tracetag")
F = TypeVar("F", bound=Callable[..., Any])

_current: ContextVar[LiveSpan | None] = ContextVar("tracetag_current_span", default=None)


def _problem(span: LiveSpan | None, what: str, error: BaseException) -> None:
    """A tracing call got something it cannot store: warn once per kind of problem, and note it
    on the span (an event) so that whoever reads the trace sees what was left out."""
    message = f"{what}: {error}"
    kind = f"{what}:{type(error).__name__}"
    if runtime.warn_once(kind):
        log.warning("%s (the rest was recorded; noted on the trace)", message)
    if span is not None:
        with contextlib.suppress(Exception):
            span.events.append(
                SpanEvent("tracetag.warning", time.time_ns(), {"message": message[:2000]})
            )


def _clean_pairs(span: LiveSpan | None, what: str, values: Any) -> dict[str, str]:
    """The valid key/value pairs of ``values``; each invalid one is reported, not raised."""
    clean: dict[str, str] = {}
    try:
        items = list(values.items())
    except Exception as e:
        _problem(span, what, e)
        return clean
    for k, v in items:
        try:
            clean[validate_key(k)] = validate_value(k, v)
        except InvalidInput as e:
            _problem(span, what, e)
    return clean


class _LiveTrace:
    def __init__(self, trace_id: str, experiment_id: str, start_ns: int):
        self.trace_id = trace_id
        self.experiment_id = experiment_id
        self.start_ns = start_ns
        self.tags: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        self.spans: list[LiveSpan] = []
        self.status = "OK"
        self.request_preview: str | None = None
        self.response_preview: str | None = None
        self.client_request_id: str | None = None
        self.lock = threading.Lock()

    def update_tags(self, sets: Mapping[str, str], deletes: Any = ()) -> None:
        with self.lock:
            self.tags.update(sets)
            for k in deletes:
                self.tags.pop(k, None)

    def to_docs(self, end_ns: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """What the store keeps, as dicts: this runs in the traced call, once per trace, so it
        builds no model objects on the way."""
        root = self.spans[0] if self.spans else None
        with self.lock:
            info = {
                "trace_id": self.trace_id,
                "experiment_id": self.experiment_id,
                "name": root.name[:MAX_PREVIEW] if root else None,
                "timestamp_ms": self.start_ns // 1_000_000,
                "execution_time_ms": None
                if end_ns is None
                else round((end_ns - self.start_ns) / 1e6),
                "status": self.status if end_ns is not None else "IN_PROGRESS",
                "tags": dict(self.tags),
                "metadata": dict(self.metadata),
                "request_preview": self.request_preview
                or (preview_of(root.inputs) if root else None),
                "response_preview": self.response_preview
                or (preview_of(root.outputs) if root else None),
                "client_request_id": self.client_request_id,
            }
            spans = [s.to_dict() for s in self.spans]
        return info, spans

    def to_trace(self, end_ns: int | None = None) -> Trace:
        """The trace as it stands (``get_trace`` of a trace still being recorded)."""
        info, spans = self.to_docs(end_ns)
        return Trace(TraceInfo.from_dict(info), TraceData([Span.from_dict(d) for d in spans]))


def live_trace(trace_id: str) -> _LiveTrace | None:
    """The in-flight trace with this id, if this process is recording it."""
    found: _LiveTrace | None = runtime.live_traces().get(trace_id)
    return found


class LiveSpan:
    """A span being recorded; ``end()`` closes it (``start_span`` does that for you)."""

    def __init__(
        self,
        trace: _LiveTrace,
        name: str,
        parent: LiveSpan | None,
        span_type: str = "UNKNOWN",
        attributes: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
    ):
        self._trace = trace
        self.span_id = new_span_id()
        self.parent_id = parent.span_id if parent else None
        self.name = name if isinstance(name, str) else safe_repr(name)
        self.span_type = span_type if isinstance(span_type, str) else safe_repr(span_type)
        self.start_time_ns = start_time_ns if start_time_ns is not None else time.time_ns()
        self.end_time_ns: int | None = None
        self.status = "OK"
        self.status_message = ""
        self.attributes: dict[str, Any] = {}
        self.events: list[SpanEvent] = []
        self.inputs: Any = None
        self.outputs: Any = None
        trace.spans.append(self)  # atomic; to_docs copies the list under the trace's lock
        if attributes:
            self.set_attributes(attributes)

    @property
    def trace_id(self) -> str:
        return self._trace.trace_id

    @property
    def request_id(self) -> str:
        return self._trace.trace_id

    # Every method below may be called from the middle of a user's request handler: none
    # raises; what cannot be stored is reported (see _problem) and the rest is kept.

    def set_inputs(self, inputs: Any) -> None:
        self.inputs = to_jsonable(inputs)

    def set_outputs(self, outputs: Any) -> None:
        self.outputs = to_jsonable(outputs)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key if isinstance(key, str) else safe_repr(key)] = to_jsonable(value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        try:
            items = list(attributes.items())
        except Exception as e:
            _problem(self, "set_attributes", e)
            return
        for k, v in items:
            self.set_attribute(k, v)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        try:
            attrs = {str(k): to_jsonable(v) for k, v in (attributes or {}).items()}
        except Exception as e:
            _problem(self, "add_event", e)
            attrs = {}
        self.events.append(SpanEvent(str(name), time.time_ns(), attrs))

    def set_status(self, status: str, message: str = "") -> None:
        text = str(status).upper()
        if text not in ("OK", "ERROR", "UNSET"):
            _problem(
                self, "set_status", InvalidInput(f"unknown status {text!r}, kept {self.status}")
            )
            return
        self.status = text
        self.status_message = str(message)
        if self.status == "ERROR":
            self._trace.status = "ERROR"

    def record_exception(self, exc: BaseException) -> None:
        self.add_event(
            "exception",
            {"exception.type": type(exc).__name__, "exception.message": str(exc)},
        )
        self.set_status("ERROR", f"{type(exc).__name__}: {exc}")

    def end(self, end_time_ns: int | None = None) -> None:
        if self.end_time_ns is not None:
            return
        self.end_time_ns = end_time_ns if end_time_ns is not None else time.time_ns()
        if self.parent_id is None:
            _finish(self._trace, self.end_time_ns)

    def to_dict(self) -> dict[str, Any]:
        """The span's JSON form, as the store keeps it."""
        return span_dict(self)


def _flush_unfinished() -> None:
    """At interpreter exit, store traces whose root span never ended (an abandoned generator,
    a killed task) as IN_PROGRESS rather than losing what they recorded."""
    with runtime.live_lock():
        live = list(runtime.live_traces().values())
        runtime.live_traces().clear()
    for trace_ in live:
        try:
            recorder.write_now(runtime.default_store(), trace_.to_docs())
        except Exception as e:
            log.warning("could not store unfinished trace %s: %s", trace_.trace_id, e)


_exit_hook = threading.Event()


def _register_exit_hook() -> None:
    """Registered with the first trace, not at import: importing tracetag changes nothing."""
    if not _exit_hook.is_set():
        _exit_hook.set()
        atexit.register(_flush_unfinished)


def _finish(live: _LiveTrace, end_ns: int) -> None:
    # One dict operation is atomic, so the hot path takes no lock (with eight threads
    # recording, a shared lock here cost more than the rest of the call); the exit hook,
    # which iterates, does.
    runtime.live_traces().pop(live.trace_id, None)
    runtime.set_last_trace_id(live.trace_id)
    try:
        item = live.to_docs(end_ns)
        if recorder.durability() == "batched":
            recorder.submit(runtime.default_store(), item)
        else:
            recorder.write_now(runtime.default_store(), item)
    except Exception as e:  # never break the traced application
        log.warning("could not store trace %s: %s", live.trace_id, e)


def start_span_no_context(
    name: str,
    span_type: str = "UNKNOWN",
    parent_span: LiveSpan | None = None,
    inputs: Any = None,
    attributes: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    experiment_id: str | None = None,
    start_time_ns: int | None = None,
) -> LiveSpan:
    """A span that is not made current; call ``span.end()`` yourself (MLflow's shape).

    Explicit ``start_time_ns`` / ``end(end_time_ns=...)`` record spans with given times, for
    importers, replays and simulations.
    """
    refused: str | None = None
    if parent_span is None:
        start = start_time_ns if start_time_ns is not None else time.time_ns()
        experiment = str(experiment_id or runtime.experiment_for_new_traces())
        if experiment_id is not None and not valid_experiment_id(experiment):
            # Recorded where traces go by default, with the problem noted on the span below:
            # a trace the store would refuse is a trace lost.
            refused = experiment
            experiment = str(runtime.experiment_for_new_traces())
        live = _LiveTrace(new_trace_id(), experiment, start)
        _register_exit_hook()
        runtime.live_traces()[live.trace_id] = live
        start_time_ns = start
    else:
        live = parent_span._trace
    span = LiveSpan(live, name, parent_span, span_type, attributes, start_time_ns)
    if refused is not None:  # (a new trace's experiment)
        _problem(
            span,
            "experiment_id",
            InvalidInput(f"{refused[:80]!r} is not a valid experiment id; kept in {experiment}"),
        )
    if inputs is not None:
        span.set_inputs(inputs)
    if tags:
        live.update_tags(_clean_pairs(span, "tags", tags))
    if metadata:
        clean = _clean_pairs(span, "metadata", metadata)
        with live.lock:
            live.metadata.update(clean)
    return span


@contextlib.contextmanager
def start_span(
    name: str = "span",
    span_type: str = "UNKNOWN",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[LiveSpan]:
    """``with tracetag.start_span("retrieve") as span:`` a span under the current one."""
    span, token = _enter_span(name, span_type, attributes)
    try:
        yield span
    except BaseException as e:
        _leave_span(span, token, e)
        raise
    _leave_span(span, token, None)


def _enter_span(
    name: str, span_type: str, attributes: Mapping[str, Any] | None
) -> tuple[LiveSpan, Token[LiveSpan | None]]:
    """A span under the current one, made current (what ``start_span`` and every traced call
    do first; a traced call does it without a generator, which halves what tracing adds)."""
    span = start_span_no_context(name, span_type, _current.get(), attributes=attributes)
    return span, _current.set(span)


def _leave_span(span: LiveSpan, token: Token[LiveSpan | None], error: BaseException | None) -> None:
    if error is not None and not isinstance(error, GeneratorExit):
        span.record_exception(error)
    _current.reset(token)
    span.end()


def _bound_inputs(sig: inspect.Signature | None, args: tuple, kwargs: dict) -> Any:
    if not args and not kwargs:
        return {}  # nothing to bind (and binding costs more than the rest of a span)
    if sig is None:
        return {"args": list(args), "kwargs": kwargs} if args or kwargs else {}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    params = dict(bound.arguments)
    for skip in ("self", "cls"):
        params.pop(skip, None)
    return params


def _binder(sig: inspect.Signature | None) -> Callable[[tuple, dict], Any]:
    """The inputs of a call, as ``Signature.bind`` names them. The common call (positional
    arguments only, every required one given) is zipped with the parameter names, which costs
    a tenth of ``bind``; every other call goes through ``bind``."""
    names: list[str] = []
    required = 0
    fast = sig is not None
    for p in sig.parameters.values() if sig is not None else ():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            if p.default is p.empty:
                required = len(names)
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            fast = False  # a call without it fails; bind says how
    skips = tuple(n for n in ("self", "cls") if n in names)
    most = len(names)

    def bind(args: tuple, kwargs: dict) -> Any:
        if fast and not kwargs and required <= len(args) <= most:
            params = dict(zip(names, args, strict=False))  # (fewer args than names: defaults)
            for skip in skips:
                del params[skip]
            return params
        return _bound_inputs(sig, args, kwargs)

    return bind


class _TracedCall:
    """One call of a traced function: a span under the current one, with the bound arguments
    as its inputs, made current until the call ends."""

    __slots__ = ("attributes", "binder", "name", "span_type")

    def __init__(
        self,
        name: str,
        span_type: str,
        attributes: Mapping[str, Any] | None,
        sig: inspect.Signature | None,
    ) -> None:
        self.name = name
        self.span_type = span_type
        self.attributes = attributes
        self.binder = _binder(sig)

    def enter(self, args: tuple, kwargs: dict) -> tuple[LiveSpan, Token[LiveSpan | None]]:
        span, token = _enter_span(self.name, self.span_type, self.attributes)
        span.set_inputs(self.binder(args, kwargs))
        return span, token

    leave = staticmethod(_leave_span)

    @contextlib.contextmanager
    def around(self, args: tuple, kwargs: dict) -> Iterator[LiveSpan]:
        """The same, as a context manager, for generators and coroutines (whose bodies yield
        or await inside it)."""
        with start_span(self.name, self.span_type, self.attributes) as span:
            span.set_inputs(self.binder(args, kwargs))
            yield span


def _wrap_async_generator(fn: Any, call: _TracedCall) -> Any:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with call.around(args, kwargs) as span:
            items: list[Any] = []
            try:
                async for item in fn(*args, **kwargs):
                    items.append(item)
                    yield item
            finally:
                span.set_outputs(items)

    return wrapper


def _wrap_coroutine(fn: Any, call: _TracedCall) -> Any:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with call.around(args, kwargs) as span:
            result = await fn(*args, **kwargs)
            span.set_outputs(result)
            return result

    return wrapper


def _wrap_generator(fn: Any, call: _TracedCall) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with call.around(args, kwargs) as span:
            items: list[Any] = []
            try:
                for item in fn(*args, **kwargs):
                    items.append(item)
                    yield item
            finally:
                span.set_outputs(items)

    return wrapper


def _wrap_function(fn: Any, call: _TracedCall) -> Any:
    enter, leave = call.enter, call.leave

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span, token = enter(args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            leave(span, token, e)
            raise
        span.set_outputs(result)
        leave(span, token, None)
        return result

    return wrapper


def trace(
    func: F | None = None,
    *,
    name: str | None = None,
    span_type: str = "UNKNOWN",
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Record a span per call of the decorated function (sync, async, generator or async
    generator), with its bound arguments as inputs and its return value (or the items it
    yielded) as outputs. Usable bare (``@trace``) or with arguments."""

    def decorate(fn: F) -> F:
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        call = _TracedCall(name or fn.__name__, span_type, attributes, sig)
        if inspect.isasyncgenfunction(fn):
            wrap = _wrap_async_generator
        elif inspect.iscoroutinefunction(fn):
            wrap = _wrap_coroutine
        elif inspect.isgeneratorfunction(fn):
            wrap = _wrap_generator
        else:
            wrap = _wrap_function
        wrapped: F = wrap(fn, call)
        return wrapped

    if func is not None:
        return decorate(func)
    return decorate


def get_current_active_span() -> LiveSpan | None:
    return _current.get()


def update_current_trace(
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    client_request_id: str | None = None,
    request_preview: str | None = None,
    response_preview: str | None = None,
) -> None:
    """Add or update tags (and metadata) of the trace being recorded; a later key wins.

    Outside any trace it logs one warning and does nothing, as MLflow does.
    """
    span = _current.get()
    if span is None:
        log.warning("update_current_trace() called outside a trace; nothing was updated")
        return
    live = span._trace
    if tags:
        live.update_tags(_clean_pairs(span, "update_current_trace(tags=...)", tags))
    if metadata:
        clean = _clean_pairs(span, "update_current_trace(metadata=...)", metadata)
        with live.lock:
            live.metadata.update(clean)
    if client_request_id is not None:
        live.client_request_id = (
            safe_repr(client_request_id)[:1000]
            if not isinstance(client_request_id, str)
            else client_request_id[:1000]
        )
    if request_preview is not None:
        live.request_preview = _text(request_preview)
    if response_preview is not None:
        live.response_preview = _text(response_preview)


def _text(value: Any) -> str:
    return (value if isinstance(value, str) else safe_repr(value))[:MAX_PREVIEW]


def get_last_active_trace_id() -> str | None:
    """The id of the last trace this process finished recording."""
    return runtime.last_trace_id()
