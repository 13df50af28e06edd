"""The examples of the reference page (trace-tags.md, copied beside this file), run as written
with ``mlflow`` renamed to ``tracetag``, and their effects checked against independent counts."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

import tracetag
from tracetag.api import TracetagClient

from ..conftest import TRACES_JSONL

PAGE = (Path(__file__).parent / "trace-tags.md").read_text()


def block(heading: str) -> str:
    """The first python code block after ``heading``, ported by renaming mlflow -> tracetag."""
    start = PAGE.index(heading)
    m = re.search(r"```python\n(.*?)```", PAGE[start:], re.S)
    assert m, heading
    return m.group(1).replace("mlflow", "tracetag")


def run(code: str, **extra) -> tuple[dict, str]:
    # Later blocks on the page continue earlier ones and use ``mlflow`` without importing it.
    namespace: dict = {"__name__": "example", "tracetag": tracetag, **extra}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<example>", "exec"), namespace)
    return namespace, out.getvalue()


def raw_traces() -> list[dict]:
    return [json.loads(line)["info"] for line in TRACES_JSONL.read_text().splitlines()]


def exp1(pred) -> list[dict]:
    return [
        i
        for i in raw_traces()
        if i["trace_location"]["mlflow_experiment"]["experiment_id"] == "1" and pred(i)
    ]


# -- Setting Tags on Active Traces --------------------------------------------------------------


def test_active_trace_basic():
    ns, _ = run(block("## Setting Tags on Active Traces"))
    assert ns["result"] == 6
    t = ns["tracetag"].get_trace(ns["tracetag"].get_last_active_trace_id())
    assert t.info.tags == {"fruit": "apple"} and t.info.name == "my_func"


def test_active_trace_production_service(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    ns, _ = run(block("### Example: Setting Service Tags in Production System"))
    tracetag = ns["tracetag"]
    ns["process_user_request"]("user_123", "session_456", "URGENT: refund please")
    t = tracetag.get_trace(tracetag.get_last_active_trace_id())
    assert t.info.tags == {
        "user_id": "user_123",
        "session_id": "session_456",
        "environment": "production",
        "model_version": "1.0.0",
        "request_type": "chat_completion",
        "priority": "high",
    }
    assert t.data.spans[0].outputs == "Processed: URGENT: refund please"
    monkeypatch.delenv("ENVIRONMENT")
    ns["process_user_request"]("u2", "s2", "hello")
    t = tracetag.get_trace(tracetag.get_last_active_trace_id())
    assert t.info.tags["environment"] == "development" and t.info.tags["priority"] == "normal"


# -- Setting Tags on Finished Traces ------------------------------------------------------------


def test_basic_usage_fluent_and_client(conformance_store):
    trace_id = "tr-6663f3d7173cfa73b65948ca5fbc00b3"
    code = block("### Basic Usage").replace("your-trace-id", trace_id)
    run(code)
    tags = TracetagClient(conformance_store).get_trace(trace_id).info.tags
    assert "tag_key" not in tags  # set, deleted, set, deleted


def test_batch_tagging(conformance_store):
    run(block("### Batch Tagging"))
    client = TracetagClient(conformance_store)
    errors = {i["trace_id"] for i in exp1(lambda i: i["state"] == "ERROR")}
    assert len(errors) == 45
    for t in client.search_traces(["1"], max_results=None):
        tagged = t.info.tags.get("review_priority") == "high"
        assert tagged == (t.info.trace_id in errors)
        if tagged:
            assert t.info.tags["needs_review"] == "true"


def test_performance_analysis_tagging(conformance_store):
    run(block("### Performance Analysis Tagging"))
    slow = exp1(lambda i: i["execution_duration_ms"] > 5000)
    slow.sort(key=lambda i: (-int(re.sub(r"\D", "", i["request_time"])), i["trace_id"]))
    client = TracetagClient(conformance_store)
    tagged = {
        t.info.trace_id: (t.info.execution_time_ms, t.info.tags["performance_category"])
        for t in client.search_traces(
            ["1"], "tags.performance_category IS NOT NULL", max_results=None
        )
    }
    assert set(tagged) == {i["trace_id"] for i in slow[:50]}  # max_results=50, newest first
    for ms, category in tagged.values():
        expected = "very_slow" if ms > 10000 else "slow" if ms > 7500 else "moderate"
        assert category == expected


# -- Searching and Filtering with Tags ----------------------------------------------------------


def test_basic_tag_filtering(conformance_store):
    ns, _ = run(block("### Basic Tag Filtering"))
    assert len(ns["production_traces"]) == len(
        exp1(lambda i: i["tags"].get("environment") == "production")
    )
    assert len(ns["user_traces"]) == len(exp1(lambda i: i["tags"].get("user_id") == "user_123"))
    assert len(ns["urgent_traces"]) == len(exp1(lambda i: i["tags"].get("priority") == "high")) > 0


def test_complex_and_monitoring_queries(conformance_store):
    ns, _ = run(block("### Complex Tag-Based Queries"))
    expected = exp1(
        lambda i: (
            i["tags"].get("environment") == "production"
            and i["state"] == "ERROR"
            and i["execution_duration_ms"] > 5000
        )
    )
    assert sorted(t.info.trace_id for t in ns["slow_production_errors"]) == sorted(
        i["trace_id"] for i in expected
    )
    review = ns["review_traces"]
    assert len(review) == 45 and [t.info.timestamp_ms for t in review] == sorted(
        (t.info.timestamp_ms for t in review), reverse=True
    )
    ns, _ = run(block("### Operational Monitoring Queries"))
    assert len(ns["control_group"]) + len(ns["treatment_group"]) == len(
        exp1(lambda i: i["tags"].get("experiment_variant") in ("control", "treatment"))
    )
    assert len(ns["escalation_traces"]) == len(
        exp1(
            lambda i: i["tags"].get("sla_tier") == "critical" and i["execution_duration_ms"] > 30000
        )
    )


def _mean(values: list[int]) -> float:
    return sum(values) / len(values)


def test_analytics_and_stats_agree(conformance_store, cli):
    _, out = run(block("### Analytics and Reporting"))
    v1 = _mean(
        [
            i["execution_duration_ms"]
            for i in exp1(lambda i: i["tags"].get("model_version") == "v1.0.0")
        ]
    )
    v2 = _mean(
        [
            i["execution_duration_ms"]
            for i in exp1(lambda i: i["tags"].get("model_version") == "v2.0.0")
        ]
    )
    assert out == f"V1 average time: {v1:.2f}ms\nV2 average time: {v2:.2f}ms\n"
    result = cli("stats", "--group-by", "tags.model_version", "-x", "1", "-o", "json")
    groups = {g["group"][0]: g for g in json.loads(result.stdout)["groups"]}
    assert f"{groups['v1.0.0']['mean_ms']:.2f}" == f"{v1:.2f}"
    assert f"{groups['v2.0.0']['mean_ms']:.2f}" == f"{v2:.2f}"


@pytest.mark.parametrize(
    "heading",
    [
        "### 1. Consistent Naming Conventions",
        "### 2. Hierarchical Organization",
        "### 3. Temporal Information",
        "### 4. Operational Monitoring",
        "### 5. Experiment Tracking",
    ],
)
def test_best_practice_tag_sets_are_valid_tags(conformance_store, heading):
    ns, _ = run(block(heading))
    trace_id = "tr-6663f3d7173cfa73b65948ca5fbc00b3"
    client = TracetagClient(conformance_store)
    client.set_trace_tags(trace_id, ns["tags"])
    stored = client.get_trace(trace_id).info.tags
    assert all(stored[k] == str(v) for k, v in ns["tags"].items())
