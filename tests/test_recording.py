"""Recording at every durability level: nothing dropped, and each level keeps its promise
against kill -9 (tracetag/recorder.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tracetag
from tracetag import recorder
from tracetag.api import TracetagClient

RECORD_LOOP = textwrap.dedent(
    """
    import sys, time, tracetag
    tracetag.set_store(sys.argv[1])
    tracetag.set_durability(sys.argv[2])

    @tracetag.trace
    def handle(i):
        tracetag.update_current_trace(tags={"n": str(i)})
        return i

    i = 0
    while True:
        handle(i)
        # the call has returned: what the level promises applies from now on
        print(i, time.time(), flush=True)
        i += 1
        time.sleep(0.002)
    """
)


def _kill_while_recording(store, level: str, after: float) -> tuple[dict[int, float], float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD_LOOP, str(store), level],
        stdout=subprocess.PIPE,
        text=True,
    )
    returned: dict[int, float] = {}
    start = time.monotonic()
    assert proc.stdout is not None
    while time.monotonic() - start < after:
        line = proc.stdout.readline()
        if not line:
            break
        n, at = line.split()
        returned[int(n)] = float(at)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # printed before the kill, read after it
        n, at = line.split()
        returned[int(n)] = float(at)
    return returned, killed_at


def _stored(store) -> set[int]:
    return {
        int(t.info.tags["n"])
        for t in TracetagClient(store).search_traces(max_results=None, include_spans=False)
    }


@pytest.mark.slow
@pytest.mark.parametrize("level", ["full", "process"])
def test_kill_9_keeps_every_returned_call_at_synchronous_levels(tmp_path, level):
    store = tmp_path / "store.json"
    returned, _ = _kill_while_recording(store, level, after=2.0)
    assert len(returned) > 20
    assert set(returned) <= _stored(store)


@pytest.mark.slow
def test_kill_9_keeps_what_finished_well_before_at_the_batched_level(tmp_path):
    """The batched level promises a trace is durable about one write after its call returned:
    every call that returned more than 0.1 s (plus 0.4 s for a slow CI disk) before the kill
    is there."""
    store = tmp_path / "store.json"
    returned, killed_at = _kill_while_recording(store, "batched", after=2.0)
    old = {n for n, at in returned.items() if at < killed_at - 0.5}
    assert len(old) > 20
    assert old <= _stored(store)


def test_read_your_writes_in_the_same_process(client):
    tracetag.set_store(client.store.path)
    tracetag.set_durability("batched")
    try:

        @tracetag.trace
        def handle():
            return 1

        for _ in range(50):
            handle()
        last = tracetag.get_last_active_trace_id()
        assert tracetag.get_trace(last).info.trace_id == last
        assert len(tracetag.search_traces()) == 50
        tracetag.set_trace_tag(last, "seen", "yes")
        assert client.get_trace(last).info.tags["seen"] == "yes"
    finally:
        tracetag.set_durability(None)


def test_a_full_queue_makes_callers_wait_and_drops_nothing(client, monkeypatch):
    monkeypatch.setattr(recorder, "MAX_PENDING", 5)
    tracetag.set_store(client.store.path)
    import threading

    @tracetag.trace
    def handle(i):
        return i

    threads = [threading.Thread(target=lambda: [handle(i) for i in range(300)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracetag.flush(timeout=60)
    assert len(TracetagClient(client.store.path).search_traces(max_results=None)) == 1200


EXIT_AND_TERM = textwrap.dedent(
    """
    import os, signal, sys, time, tracetag
    tracetag.set_store(sys.argv[1])

    @tracetag.trace
    def handle(i):
        return i

    for i in range(int(sys.argv[2])):
        handle(i)
    if sys.argv[3] == "term":
        print("ready", flush=True)
        time.sleep(60)
    """
)


def test_everything_queued_is_written_at_exit_and_on_sigterm(tmp_path):
    store = tmp_path / "store.json"
    r = subprocess.run([sys.executable, "-c", EXIT_AND_TERM, str(store), "2000", "exit"])
    assert r.returncode == 0
    assert len(TracetagClient(store).search_traces(max_results=None)) == 2000
    store2 = tmp_path / "store2.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", EXIT_AND_TERM, str(store2), "2000", "term"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert len(TracetagClient(store2).search_traces(max_results=None)) == 2000


BURST = textwrap.dedent(
    """
    import os, sys, threading, tracetag
    tracetag.set_store(sys.argv[1])

    @tracetag.trace
    def handle(i):
        with tracetag.start_span("inner"):
            return i

    per_thread = int(sys.argv[2])
    threads = [
        threading.Thread(target=lambda: [handle(i) for i in range(per_thread)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


@pytest.mark.slow
def test_a_burst_of_100000_traces_from_8_threads_in_4_processes(tmp_path):
    store = tmp_path / "store.json"
    procs = [subprocess.Popen([sys.executable, "-c", BURST, str(store), "3125"]) for _ in range(4)]
    try:
        assert [p.wait(timeout=600) for p in procs] == [0, 0, 0, 0]
    finally:
        for p in procs:  # (a hung writer must not outlive the test and load the machine)
            p.kill()
    with TracetagClient(store).snapshot() as snap:
        assert sum(1 for _ in snap.iter_docs()) == 100_000


FORKED = textwrap.dedent(
    """
    import multiprocessing, sys, tracetag
    tracetag.set_store(sys.argv[1])

    @tracetag.trace
    def handle(i):
        return i

    def child(k):
        for i in range(200):
            handle(i)
        tracetag.flush()

    if __name__ == "__main__":
        for i in range(100):
            handle(i)  # the parent's writer is running when the children fork
        ctx = multiprocessing.get_context("fork")
        ps = [ctx.Process(target=child, args=(k,)) for k in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        assert all(p.exitcode == 0 for p in ps)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_children_get_a_writer_of_their_own(tmp_path):
    store = tmp_path / "store.json"
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    r = subprocess.run([sys.executable, str(script), str(store)], timeout=120)
    assert r.returncode == 0
    assert len(TracetagClient(store).search_traces(max_results=None)) == 700


def test_one_refused_trace_costs_none_of_those_queued_with_it(client, caplog):
    from tracetag import runtime

    tracetag.set_store(client.store.path)
    store = runtime.default_store()

    @tracetag.trace
    def handle(i):
        return i

    handle(0)
    tracetag.flush()
    good = [client.get_trace(tracetag.get_last_active_trace_id())]
    template = good[0].info.to_dict()
    items = [
        ({**template, "trace_id": f"tr-good-{i}"}, [s.to_dict() for s in good[0].data.spans])
        for i in range(200)
    ]
    bad = ({**template, "trace_id": "tr-bad", "experiment_id": "no spaces allowed"}, [])
    with caplog.at_level("WARNING", "tracetag"):
        # In one write (the writer's batch), and through the queue, however it batches.
        recorder.put_each_valid(store, [*items[:100], bad])
        for item in [*items[100:150], bad, *items[150:]]:
            recorder.submit(store, item)
        assert tracetag.flush(timeout=30)
    stored = {t.info.trace_id for t in client.search_traces(max_results=None)}
    assert stored >= {doc["trace_id"] for doc, _spans in items}
    assert "tr-bad" not in stored
    assert "could not store trace tr-bad: invalid experiment id" in caplog.text


def test_a_trace_the_store_would_refuse_is_recorded_with_the_problem_noted(client, caplog):
    tracetag.set_store(client.store.path)
    with caplog.at_level("WARNING", "tracetag"):
        span = tracetag.start_span_no_context("x" * 1_200_000, experiment_id="bad id!")
        span.end()
        tracetag.flush()
    stored = client.get_trace(span.trace_id)
    assert stored.info.experiment_id == "0"
    assert len(stored.info.name) == 1_000_000  # the longest name a trace may have
    assert stored.data.spans[0].name == "x" * 1_200_000
    events = [e.attributes["message"] for e in stored.data.spans[0].events]
    assert events == ["experiment_id: 'bad id!' is not a valid experiment id; kept in 0"]
    assert "is not a valid experiment id" in caplog.text


class _Thing:
    @tracetag.trace
    def method(self, a, b=2):
        return a

    @classmethod
    @tracetag.trace
    def made(cls, a):
        return a


@tracetag.trace
def _positional(a, b, c=3, /, d=4):
    return a


@tracetag.trace
def _star(a, *rest, key, **more):
    return a


@tracetag.trace
def _defaults(a=1, b=2):
    return a


@pytest.mark.parametrize(
    "call, inputs",
    [
        (lambda: _positional(1, 2), {"a": 1, "b": 2}),
        (lambda: _positional(1, 2, 5, 6), {"a": 1, "b": 2, "c": 5, "d": 6}),
        (lambda: _positional(1, 2, d=7), {"a": 1, "b": 2, "d": 7}),
        (
            lambda: _star(1, 2, 3, key="k", x=9),
            {"a": 1, "rest": [2, 3], "key": "k", "more": {"x": 9}},
        ),
        (lambda: _defaults(), {}),
        (lambda: _defaults(5), {"a": 5}),
        (lambda: _defaults(b=6), {"b": 6}),
        (lambda: _Thing().method(1), {"a": 1}),
        (lambda: _Thing().method(1, 5), {"a": 1, "b": 5}),
        (lambda: _Thing.made(3), {"a": 3}),
    ],
)
def test_inputs_name_the_arguments_as_the_signature_binds_them(client, call, inputs):
    tracetag.set_store(client.store.path)
    call()
    tracetag.flush()
    root = client.get_trace(tracetag.get_last_active_trace_id()).data.spans[0]
    assert root.inputs == inputs


def test_a_call_that_does_not_fit_the_signature_still_raises_and_is_recorded(client):
    tracetag.set_store(client.store.path)
    with pytest.raises(TypeError):
        _star(1, 2)  # the keyword-only argument is missing
    with pytest.raises(TypeError):
        _positional(1)
    tracetag.flush()
    root = client.get_trace(tracetag.get_last_active_trace_id()).data.spans[0]
    assert root.inputs == {"args": [1], "kwargs": {}}
    assert root.status == "ERROR"
