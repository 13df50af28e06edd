"""`tracetag serve`: the OTLP/HTTP receiver, fed by the real OpenTelemetry SDK and exporter, and
by hostile clients."""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import orjson
import pytest
from typer.testing import CliRunner

from tracetag import runtime
from tracetag.api import TracetagClient
from tracetag.cli import app
from tracetag.otlp.receiver import Receiver

pytest.importorskip("opentelemetry.proto", reason="the receiver's tests need the otlp extra")
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

runner = CliRunner()
TID = "0af7651916cd43dd8448eb211c80319c"


def _request(tid=TID, sid="b7ad6b7169203331", parent=None, name="root", **tags):
    attrs = [{"key": f"mlflow.traceTag.{k}", "value": {"stringValue": v}} for k, v in tags.items()]
    s = {
        "traceId": tid,
        "spanId": sid,
        "name": name,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
        "attributes": attrs,
    }
    if parent:
        s["parentSpanId"] = parent
    return {"resourceSpans": [{"scopeSpans": [{"spans": [s]}]}]}


class Serve:
    """``tracetag serve`` in a process of its own, on a free port."""

    def __init__(self, store, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracetag", "--store", str(store), "serve", "-p", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines = []
        while True:
            line = self.proc.stderr.readline()
            assert line, f"serve ended: {''.join(self.lines)}"
            self.lines.append(line)
            if "receiving OTLP/HTTP" in line:
                self.url = line.split(" at ")[1].split(" ")[0]
                break
        self.port = int(self.url.split(":")[2].split("/")[0])

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.lines.append(self.proc.stderr.read())  # (communicate would skip what is buffered)
        return self.proc.returncode

    def output(self):
        return "".join(self.lines)


def _post(port, body, ctype="application/json", headers=None, method="POST", path="/v1/traces"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": ctype, **(headers or {})})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), data


def _sdk(endpoint, traces, threads=4, headers=None, tag="run"):
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    tracer = provider.get_tracer("tests")

    def work(k):
        for i in range(traces // threads):
            with tracer.start_as_current_span("chat turn") as root:
                root.set_attribute("mlflow.traceTag.run", tag)
                root.set_attribute("mlflow.traceTag.worker", str(k))
                root.set_attribute("mlflow.traceTag.n", str(i))
                root.set_attribute("session.id", f"session-{k}")
                with tracer.start_as_current_span("retrieve") as r:
                    r.set_attribute("openinference.span.kind", "RETRIEVER")
                with tracer.start_as_current_span("llm") as llm:
                    llm.set_attribute("openinference.span.kind", "LLM")
                    llm.set_attribute("input.value", f"question {k}-{i}")
                    llm.set_attribute("output.value", "an answer")

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert provider.force_flush(60_000)
    provider.shutdown()


def test_the_official_sdk_sends_1000_traces_from_4_threads_and_search_finds_them(store_path):
    serve = Serve(store_path, "-x", "chatbot")
    try:
        _sdk(serve.url, 1000)
    finally:
        assert serve.stop() == 0
    out = serve.output()
    assert "only this machine can connect" in out and "stored 3000 spans" in out, out
    r = runner.invoke(app, ["search", "-f", "tags.run = 'run'", "-o", "ids"])
    ids = r.stdout.split()
    assert r.exit_code == 0 and len(ids) == 1000 == len(set(ids))
    client = TracetagClient(store_path)
    by_worker = runner.invoke(app, ["stats", "-g", "tags.worker", "-o", "json"])
    groups = orjson.loads(by_worker.stdout)["groups"]
    assert sorted((g["group"], g["count"]) for g in groups) == [([str(k)], 250) for k in range(4)]
    exps = {e["name"]: e["experiment_id"] for e in client.list_experiments()}
    for tid in ids[::97]:
        t = client.get_trace(tid)
        assert t.info.status == "OK" and t.info.experiment_id == exps["chatbot"]
        assert sorted(s.span_type for s in t.spans) == ["LLM", "RETRIEVER", "UNKNOWN"]
        assert t.info.tags["service.name"] == "sdk-test"
        assert t.info.metadata["mlflow.trace.session"].startswith("session-")
    found = client.search_traces(
        filter_string="span.type = 'LLM' AND trace.text LIKE '%question 2-117%'"
    )
    assert len(found) == 1


@pytest.fixture
def receiver(store_path):
    r = Receiver(TracetagClient(store_path), port=0, max_body=1024 * 1024, timeout=5).start()
    yield r
    r.stop()


def _count(store_path):
    runtime.reset()
    if not store_path.exists():
        return 0
    return TracetagClient(store_path).info()["traces"]


def test_hostile_requests_get_the_right_status_and_the_receiver_keeps_serving(receiver, store_path):
    port = receiver.port

    def deep(levels):  # an attribute value nested ``levels`` AnyValues deep
        value = (
            '{"kvlistValue":{"values":[{"key":"k","value":' * levels
            + '{"stringValue":"deep"}'
            + "}]}}" * levels
        )
        return b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s",' \
            b'"name":"x","attributes":[{"key":"a","value":%s}]}]}]}]}' % (
                TID.encode(), b"b7ad6b7169203331", value.encode())  # fmt: skip

    from tests.test_otlp import _pb_request  # a real protobuf request, then cut short

    truncated = _pb_request(("b7ad6b7169203331", None, "root", {"k": "v" * 100}))[:-7]
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KB
    cases = [
        (b"\x00\xff garbage \x13\x37" * 100, "application/x-protobuf", {}, 400),
        (truncated, "application/x-protobuf", {}, 400),
        (b"{not json", "application/json", {}, 400),
        (b'{"resourceSpans": 7}', "application/json", {}, 400),
        (deep(100), "application/json", {}, 400),  # past tracetag's limit
        (deep(400), "application/json", {}, 400),  # past the JSON parser's
        (bomb, "application/json", {"Content-Encoding": "gzip"}, 413),
        (b"not gzip at all", "application/json", {"Content-Encoding": "gzip"}, 400),
        (orjson.dumps(_request()), "text/plain", {}, 415),
        (orjson.dumps(_request()), "application/json", {"Content-Encoding": "br"}, 415),
    ]
    for body, ctype, headers, status in cases:
        got, answer_type, data = _post(port, body, ctype, headers)
        assert got == status, (body[:40], data)
        if ctype in ("application/json", "application/x-protobuf"):
            assert answer_type == ctype  # the answer speaks the request's language
    assert _post(port, b"", method="GET", path="/nowhere")[0] == 404
    assert _count(store_path) == 0  # nothing partial
    # ... and it still serves.
    status, ctype, data = _post(port, orjson.dumps(_request(env="ok")))
    assert (status, ctype, data) == (200, "application/json", b"{}")
    assert _count(store_path) == 1


def test_a_100_mb_body_is_refused_before_it_is_read(receiver, store_path):
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=30)
    size = 100 * 1024 * 1024
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    sent = 0
    chunk = b"\0" * (1 << 20)
    try:
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the receiver stopped reading: it answered already
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert _count(store_path) == 0
    assert _post(receiver.port, orjson.dumps(_request()))[0] == 200


def test_gzip_json_and_protobuf_both_land(receiver, store_path):
    from tests.test_otlp import _pb_request

    body = gzip.compress(orjson.dumps(_request(env="gz")))
    assert _post(receiver.port, body, headers={"Content-Encoding": "gzip"})[0] == 200
    pb = _pb_request(("1111111111111111", None, "pb-root", {}))
    status, ctype, data = _post(receiver.port, gzip.compress(pb), "application/x-protobuf",
                                {"Content-Encoding": "gzip"})  # fmt: skip
    assert (status, ctype, data) == (200, "application/x-protobuf", b"")
    names = {s.name for s in TracetagClient(store_path).get_trace(f"tr-{TID}").spans}
    # The protobuf helper's trace id is another one.
    assert names == {"root"}
    assert _count(store_path) == 2


def test_a_refused_trace_is_a_partial_success_and_the_rest_is_written(receiver, store_path):
    good = _request(env="prod")["resourceSpans"][0]
    bad = _request(tid="f" * 32, **{"bad#key": "x"})["resourceSpans"][0]
    body = orjson.dumps({"resourceSpans": [good, bad]})
    status, _ctype, data = _post(receiver.port, body)
    assert status == 200
    partial = orjson.loads(data)["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "bad#key" in partial["errorMessage"]
    assert _count(store_path) == 1


def test_a_bearer_token_is_required_when_set(store_path):
    r = Receiver(TracetagClient(store_path), port=0, token="s3cret").start()
    try:
        body = orjson.dumps(_request())
        assert _post(r.port, body)[0] == 401
        assert _post(r.port, body, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert _post(r.port, body, headers={"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        r.stop()
    assert _count(store_path) == 1


def test_sigterm_answers_the_requests_in_hand_and_loses_none_it_accepted(store_path):
    serve = Serve(store_path)
    accepted: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def send(k):
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
        i = 0
        while not stop.is_set():
            tid = f"{k:08x}{i:024x}"
            i += 1
            try:
                conn.request("POST", "/v1/traces", body=orjson.dumps(_request(tid=tid)),
                             headers={"Content-Type": "application/json"})  # fmt: skip
                answer = conn.getresponse()
                answer.read()
                if answer.status == 200:
                    with lock:
                        accepted.append(f"tr-{tid}")
            except (OSError, http.client.HTTPException):
                return

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert serve.stop() == 0
    stop.set()
    for t in threads:
        t.join()
    assert "stopping" in serve.output()
    assert len(accepted) > 20
    runtime.reset()
    stored = TracetagClient(store_path).snapshot()
    with stored as view:
        missing = [tid for tid in accepted if view.get(tid) is None]
    assert missing == []


def test_a_busy_port_is_one_line_and_exit_2(store_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "tracetag", "serve", "-p", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2
    assert r.stderr.startswith(f"tracetag: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in r.stderr


def test_serve_into_postgresql(pg_url):
    serve = Serve(pg_url)
    try:
        _sdk(serve.url, 200, tag="pg")
    finally:
        assert serve.stop() == 0
    runtime.reset()
    found = TracetagClient(pg_url).search_traces(filter_string="tags.run = 'pg'", max_results=500)
    assert len(found) == 200
    assert all(len(t.spans) == 3 and t.info.status == "OK" for t in found)


def test_export_posts_unchanged_to_the_receiver(receiver, tmp_path, store_path):
    """`tracetag export --format otlp` lines are OTLP requests a collector takes as they are."""
    from tests.test_otlp import ROOT, request, span

    source = TracetagClient(tmp_path / "src.json")
    source.import_traces(orjson.dumps(request(span(ROOT, "root", None, mlflow__traceTag__k="v"))))
    out = runner.invoke(app, ["--store", str(tmp_path / "src.json"), "export", "--format", "otlp"])
    for line in out.stdout_bytes.splitlines():
        assert _post(receiver.port, line)[0] == 200
    runtime.reset()
    got = TracetagClient(store_path).search_traces()
    assert [(t.info.trace_id, t.info.tags) for t in got] == [
        (t.info.trace_id, t.info.tags) for t in source.search_traces()
    ]


def test_a_store_that_cannot_write_answers_503_with_retry_after(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    lines: list[str] = []
    r = Receiver(TracetagClient(blocker / "store.json"), port=0, log=lines.append).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
        conn.request("POST", "/v1/traces", body=orjson.dumps(_request()),
                     headers={"Content-Type": "application/json"})  # fmt: skip
        answer = conn.getresponse()
        body = orjson.loads(answer.read())
    finally:
        r.stop()
    assert answer.status == 503 and answer.getheader("Retry-After") == "5"
    assert body["code"] == 14 and "the store cannot take the write" in body["message"]
    assert len(lines) == 1 and ": 503 " in lines[0]


def test_receiving_into_an_mlflow_server(mlflow_scratch):
    """Spans of one trace in two requests, into an MLflow tracking server as the store."""
    import secrets

    tid = secrets.token_hex(16)  # the server is shared by the session's tests
    runtime.reset()
    r = Receiver(TracetagClient(mlflow_scratch.url), port=0).start()
    try:
        child = _request(tid=tid, sid="1111111111111111", parent="b7ad6b7169203331", name="llm")
        assert _post(r.port, orjson.dumps(child))[0] == 200
        assert _post(r.port, orjson.dumps(_request(tid=tid, env="mlflow")))[0] == 200
    finally:
        r.stop()
    t = TracetagClient(mlflow_scratch.url).get_trace(f"tr-{tid}")
    assert t.info.tags["env"] == "mlflow" and t.info.status == "OK" and t.info.name == "root"
    assert sorted(s.name for s in t.spans) == ["llm", "root"]


def test_other_methods_get_501_and_stopping_does_not_wait_for_their_connections(store_path):
    r = Receiver(TracetagClient(store_path), port=0, timeout=30).start()
    conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
    conn.request("PUT", "/v1/traces", body=b"{}")
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 501
    assert _post(r.port, b"", method="GET", path="/health")[0] == 200
    start = time.monotonic()
    r.stop()  # the keep-alive connection above is idle: closed, not waited for
    assert time.monotonic() - start < 5
    conn.close()


@pytest.mark.slow
def test_every_sigterm_stops_the_server(store_path):
    """A signal lands at any moment of the main thread's wait: each one stops the server
    (a handler that took a lock the interrupted wait held hung it, now and then, for good)."""
    for i in range(12):
        serve = Serve(store_path)
        time.sleep(0.05 + 0.1 * (i % 4))
        serve.proc.send_signal(signal.SIGTERM)
        try:
            assert serve.proc.wait(timeout=10) == 0
        finally:
            serve.proc.kill()
            serve.proc.stderr.close()
