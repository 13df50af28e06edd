"""Property: any trace stored reads back equal, from the journal and after compaction."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracetag.api import TracetagClient
from tracetag.model import Span, SpanEvent, Trace, TraceData, TraceInfo
from tracetag.store import Store

KEYS = st.from_regex(r"[A-Za-z0-9_.:/ \-]{1,20}", fullmatch=True)
TEXT = st.text(max_size=30)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
SPANS = st.lists(
    st.builds(
        Span,
        span_id=st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
        name=TEXT,
        parent_id=st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
        span_type=st.sampled_from(["CHAIN", "LLM", "TOOL", "UNKNOWN"]),
        start_time_ns=st.integers(0, 2**62),
        end_time_ns=st.none() | st.integers(0, 2**62),
        status=st.sampled_from(["OK", "ERROR", "UNSET"]),
        attributes=st.dictionaries(TEXT, JSON, max_size=3),
        events=st.lists(
            st.builds(
                SpanEvent, TEXT, st.integers(0, 2**62), st.dictionaries(TEXT, JSON, max_size=2)
            ),
            max_size=2,
        ),
        inputs=JSON,
        outputs=JSON,
    ),
    max_size=3,
)
TRACES = st.builds(
    lambda tid, info, spans: Trace(TraceInfo(trace_id=tid, **info), TraceData(spans)),
    st.from_regex(r"tr-[0-9a-f]{32}", fullmatch=True),
    st.fixed_dictionaries(
        {
            "experiment_id": st.sampled_from(["0", "1", "42"]),
            "name": st.none() | TEXT,
            "timestamp_ms": st.integers(0, 2**45),
            "execution_time_ms": st.none() | st.integers(0, 10**8),
            "status": st.sampled_from(["OK", "ERROR", "IN_PROGRESS"]),
            "tags": st.dictionaries(KEYS, TEXT, max_size=5),
            "metadata": st.dictionaries(KEYS, TEXT, max_size=3),
            "request_preview": st.none() | TEXT,
            "response_preview": st.none() | TEXT,
            "client_request_id": st.none() | TEXT,
        }
    ),
    SPANS,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TRACES, min_size=1, max_size=4, unique_by=lambda t: t.info.trace_id))
def test_stored_traces_read_back_equal(traces):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store.json"
        client = TracetagClient(Store(path))
        client.log_traces(traces)
        for t in traces:
            assert client.get_trace(t.info.trace_id) == t
        Store(path).compact()
        fresh = TracetagClient(Store(path))
        for t in traces:
            assert fresh.get_trace(t.info.trace_id) == t
        found = {t.info.trace_id: t for t in fresh.search_traces(max_results=None)}
        assert {tid: t.info for tid, t in found.items()} == {
            t.info.trace_id: t.info for t in traces
        }
