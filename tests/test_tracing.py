"""Recording traces from Python: decorator forms, spans, errors, isolation, bursts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading

import pytest

import tracetag
from tracetag.api import TracetagClient


def stored(trace_id: str):
    return tracetag.get_trace(trace_id)


def last():
    return stored(tracetag.get_last_active_trace_id())


def test_bare_and_parameterised_decorator_with_inputs_and_outputs():
    @tracetag.trace
    def add(x, y=2):
        return x + y

    @tracetag.trace(name="custom", span_type="TOOL", attributes={"k": 1})
    def outer(a):
        return add(a) * 10

    assert outer(1) == 30
    t = last()
    root, child = sorted(t.data.spans, key=lambda s: s.start_time_ns)
    assert (root.name, root.span_type, root.attributes, root.inputs, root.outputs) == (
        "custom",
        "TOOL",
        {"k": 1},
        {"a": 1},
        30,
    )
    assert (child.name, child.parent_id, child.inputs, child.outputs) == (
        "add",
        root.span_id,
        {"x": 1},
        3,
    )
    assert t.info.name == "custom" and t.info.status == "OK"
    assert t.info.request_preview == '{"a":1}' and t.info.response_preview == "30"
    assert t.info.execution_time_ms is not None and t.info.execution_time_ms >= 0


def test_methods_generators_and_json_safety():
    @dataclasses.dataclass
    class Point:
        x: int

    class Service:
        @tracetag.trace
        def handle(self, p: Point, tags: set):
            return {"p": p, "n": len(tags), "obj": object.__new__(Service)}

        @tracetag.trace
        def stream(self, n):
            yield from range(n)

    svc = Service()
    svc.handle(Point(3), {"a"})
    span = last().data.spans[0]
    assert span.inputs == {"p": {"x": 3}, "tags": ["a"]}  # no 'self'
    assert span.outputs["p"] == {"x": 3} and span.outputs["obj"].startswith("<")
    assert list(svc.stream(3)) == [0, 1, 2]
    assert last().data.spans[0].outputs == [0, 1, 2]


def test_async_functions_and_async_generators():
    @tracetag.trace
    async def fetch(i):
        await asyncio.sleep(0)
        return i * 2

    @tracetag.trace
    async def agen(n):
        for i in range(n):
            yield await fetch(i)

    async def main():
        return [x async for x in agen(3)]

    assert asyncio.run(main()) == [0, 2, 4]
    t = last()
    root = next(s for s in t.data.spans if s.parent_id is None)
    assert root.name == "agen" and root.outputs == [0, 2, 4]
    assert sorted(s.name for s in t.data.spans) == ["agen", "fetch", "fetch", "fetch"]


def test_start_span_nesting_and_span_methods():
    with tracetag.start_span("root", span_type="CHAIN", attributes={"a": 1}) as root:
        root.set_inputs({"q": "hi"})
        with tracetag.start_span("retrieve", span_type="RETRIEVER") as child:
            child.set_attribute("k", 5)
            child.set_attributes({"m": "x"})
            child.add_event("cache_miss", {"key": "q"})
            child.set_outputs(["doc"])
        root.set_outputs("answer")
    t = stored(root.trace_id)
    spans = {s.name: s for s in t.data.spans}
    assert spans["retrieve"].parent_id == spans["root"].span_id
    assert spans["retrieve"].attributes == {"k": 5, "m": "x"}
    assert spans["retrieve"].events[0].name == "cache_miss"
    assert spans["root"].outputs == "answer" and spans["root"].inputs == {"q": "hi"}


def test_exception_marks_span_and_trace_error_and_propagates():
    class Boom(Exception):
        pass

    @tracetag.trace
    def inner():
        raise Boom("bad input")

    @tracetag.trace
    def outer():
        inner()

    with pytest.raises(Boom, match="bad input"):
        outer()
    t = last()
    assert t.info.status == "ERROR"
    inner_span = next(s for s in t.data.spans if s.name == "inner")
    assert inner_span.status == "ERROR"
    event = inner_span.events[0]
    assert event.name == "exception"
    assert event.attributes == {"exception.type": "Boom", "exception.message": "bad input"}


def test_update_current_trace_later_key_wins_values_become_strings():
    @tracetag.trace
    def work():
        tracetag.update_current_trace(tags={"a": 1, "b": "x"}, metadata={"m": "1"})
        tracetag.update_current_trace(tags={"a": 2})
        return 0

    work()
    t = last()
    assert t.info.tags == {"a": "2", "b": "x"} and t.info.metadata == {"m": "1"}


def test_update_current_trace_outside_a_trace_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="tracetag"):
        tracetag.update_current_trace(tags={"a": "b"})
    assert len(caplog.records) == 1
    assert "outside a trace" in caplog.records[0].getMessage()
    assert len(TracetagClient().search_traces()) == 0


def test_set_trace_tag_on_a_running_trace():
    @tracetag.trace
    def work():
        span = tracetag.get_current_active_span()
        tracetag.set_trace_tag(span.trace_id, "set_while_running", "yes")
        tracetag.set_trace_tag(span.trace_id, "gone", "x")
        tracetag.delete_trace_tag(span.trace_id, "gone")
        # get_trace sees the live trace too
        assert tracetag.get_trace(span.trace_id).info.status == "IN_PROGRESS"

    work()
    assert last().info.tags == {"set_while_running": "yes"}


def test_set_experiment_creates_and_records_into_it():
    exp = tracetag.set_experiment("chatbot")
    assert tracetag.set_experiment("chatbot")["experiment_id"] == exp["experiment_id"]

    @tracetag.trace
    def f():
        return 1

    f()
    assert last().info.experiment_id == exp["experiment_id"] != "0"


def test_async_tasks_and_threads_never_mix_traces():
    @tracetag.trace
    async def step(owner, depth):
        tracetag.update_current_trace(tags={f"seen_{owner}": "1"})
        await asyncio.sleep(0)
        if depth:
            await step(owner, depth - 1)
        return owner

    @tracetag.trace
    async def task_root(owner):
        tracetag.update_current_trace(tags={"owner": owner})
        await asyncio.gather(step(owner, 2), step(owner, 1))
        return owner

    async def many():
        await asyncio.gather(*(task_root(f"task{i}") for i in range(20)))

    @tracetag.trace
    def thread_step(owner, depth):
        if depth:
            thread_step(owner, depth - 1)

    @tracetag.trace
    def thread_root(owner):
        tracetag.update_current_trace(tags={"owner": owner, f"seen_{owner}": "1"})
        for _ in range(3):
            thread_step(owner, 2)

    threads = [threading.Thread(target=thread_root, args=(f"thread{i}",)) for i in range(8)]
    for th in threads:
        th.start()
    asyncio.run(many())
    for th in threads:
        th.join()
    traces = TracetagClient().search_traces(max_results=None)
    assert len(traces) == 28
    for t in traces:
        owner = t.info.tags["owner"]
        assert t.info.tags == {"owner": owner, f"seen_{owner}": "1"}
        spans = t.data.spans
        ids = {s.span_id for s in spans}
        roots = [s for s in spans if s.parent_id is None]
        assert len(roots) == 1 and all(s.parent_id in ids for s in spans if s.parent_id)
        assert all(s.inputs["owner"] == owner for s in spans)
        expected = 1 + 3 + 2 if owner.startswith("task") else 1 + 3 * 3
        assert len(spans) == expected, (owner, [s.name for s in spans])


@pytest.mark.slow
def test_burst_of_10000_traces_from_8_threads_loses_none():
    @tracetag.trace
    def request(worker, i):
        tracetag.update_current_trace(tags={"worker": str(worker)})
        return i

    def run(worker):
        for i in range(1250):
            request(worker, i)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client = TracetagClient()
    assert len(client.search_traces(max_results=None)) == 10_000
    for w in range(8):
        assert (
            len(client.search_traces(filter_string=f"tags.worker = '{w}'", max_results=None))
            == 1250
        )


def test_unfinished_trace_is_stored_at_exit(store_path):
    import subprocess
    import sys

    code = (
        "import tracetag\n"
        "@tracetag.trace\n"
        "def stream():\n"
        "    tracetag.update_current_trace(tags={'kept': 'yes'})\n"
        "    yield 1\n"
        "    yield 2\n"
        "g = stream()\n"
        "next(g)\n"
        "import gc; gc.disable()\n"  # keep the generator alive until exit
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    traces = TracetagClient(store_path).search_traces()
    assert len(traces) == 1
    assert traces[0].info.status == "IN_PROGRESS" and traces[0].info.tags == {"kept": "yes"}
