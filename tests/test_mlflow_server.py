"""An MLflow tracking server as a backend, against a real ``mlflow server`` (tests/mlflowserver.py).
The conformance and span-filter cases run on it through ``readonly_store`` (test_conformance.py,
test_span_filters.py); these tests write, on a server of their own."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tracetag import runtime
from tracetag.api import TracetagClient
from tracetag.model import Span, Trace, TraceData, TraceInfo

from .conftest import TRACES_JSONL, run_tracetag

_IDS = itertools.count(1)


def _traces(n: int, experiment: str = "0", **tags: str) -> list[Trace]:
    out = []
    for _ in range(n):
        i = next(_IDS)
        tid = f"tr-{i:032x}"
        span = Span(
            f"{i:016x}", "root", span_type="LLM", start_time_ns=10**18, end_time_ns=10**18 + 10**6
        )
        span.inputs, span.outputs, span.attributes = (
            {"q": i},
            f"answer {i}",
            {"model": "v2", "n": i},
        )
        info = TraceInfo(
            trace_id=tid,
            experiment_id=experiment,
            name="root",
            timestamp_ms=1_700_000_000_000 + i,
            execution_time_ms=1,
            tags={"i": str(i), **tags},
            metadata={"m": "1"},
        )
        out.append(Trace(info, TraceData([span])))
    return out


@pytest.fixture
def server(mlflow_scratch, monkeypatch):
    monkeypatch.setenv("TRACETAG_STORE", mlflow_scratch.url)
    runtime.reset()
    return mlflow_scratch.url


def test_a_tag_set_by_tracetag_is_seen_by_mlflow_and_back(server, cli):
    from mlflow import MlflowClient

    (trace,) = _traces(1)
    TracetagClient(server).log_traces([trace])
    tid = trace.info.trace_id
    assert cli("tag", "set", tid, "reviewed=yes").exit_code == 0
    mlflow = MlflowClient(tracking_uri=server)
    assert mlflow.get_trace(tid).info.tags["reviewed"] == "yes"
    mlflow.set_trace_tag(tid, "from_mlflow", "1")
    assert TracetagClient(server).get_tags(tid)["from_mlflow"] == "1"
    got = TracetagClient(server).get_trace(tid)
    assert got.data.spans[0].inputs == {"q": trace.data.spans[0].inputs["q"]}
    assert got.data.spans[0].span_type == "LLM" and got.data.spans[0].attributes["model"] == "v2"
    assert cli("tag", "delete", tid, "reviewed").exit_code == 0
    assert "reviewed" not in mlflow.get_trace(tid).info.tags


class _Flaky(BaseHTTPRequestHandler):
    """Forwards to the real server; while ``broken`` holds a trace id, tag writes on that trace
    answer 503 (every retry included)."""

    target = ("127.0.0.1", 0)
    broken: set[str] = set()
    seen: list[str] = []

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"{self.command} {self.path}")
        if self.command == "PATCH" and any(t in self.path for t in self.broken):
            self.send_response(503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        conn = http.client.HTTPConnection(*self.target, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_a_failed_batch_names_what_failed_and_running_it_again_finishes(server, cli, monkeypatch):
    exp = TracetagClient(server).create_experiment("batch-failures")
    traces = _traces(6, exp, batch="b1")
    TracetagClient(server).log_traces(traces)
    ids = [t.info.trace_id for t in traces]
    unknown = [f"tr-{'f' * 31}{n}" for n in range(2)]
    host, port = server.removeprefix("http://").split(":")
    _Flaky.target = (host, int(port))
    _Flaky.broken = {ids[2]}
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    flaky = f"http://127.0.0.1:{proxy.server_address[1]}"
    monkeypatch.setattr("tracetag.mlflow_server.http.time.sleep", lambda s: None)
    try:
        result = cli("--store", flaky, "tag", "set", *ids, *unknown, "done=yes")
        assert result.exit_code == 1
        line = result.stderr.strip().splitlines()[-1]
        assert "3 traces not written" in line and f"{ids[2]}: HTTP 503" in line
        assert all(f"{u}: trace not found" in line for u in unknown)
        assert "run the same command again" in line
        tags = TracetagClient(server).search_traces(filter_string="tags.batch = 'b1'")
        assert sorted(t.info.trace_id for t in tags if t.info.tags.get("done") == "yes") == sorted(
            ids[:2] + ids[3:]
        )
        _Flaky.broken = set()
        again = cli("--store", flaky, "tag", "set", *ids, "done=yes")
        assert again.exit_code == 0, again.stderr
    finally:
        proxy.shutdown()
    done = TracetagClient(server).search_traces(filter_string="tags.done = 'yes'", max_results=None)
    assert {t.info.trace_id for t in done} >= set(ids)


def test_tag_set_by_filter_pushes_down_what_mlflow_can_take(server):
    exp = TracetagClient(server).create_experiment("pushdown")
    TracetagClient(server).log_traces(_traces(30, exp, env="prod") + _traces(10, exp, env="dev"))
    client = TracetagClient(server)
    report = client.update_tags(
        filter_string="tags.env = 'prod' AND (tags.i LIKE '%1%' OR tags.i LIKE '%2%')",
        experiment_ids=[exp],
        set={"picked": "yes"},
    )
    expected = {
        t.info.trace_id
        for t in client.search_traces([exp], max_results=None)
        if t.info.tags["env"] == "prod" and ("1" in t.info.tags["i"] or "2" in t.info.tags["i"])
    }
    assert {c.trace_id for c in report.changed} == expected and expected
    with client.snapshot() as view:
        list(view.select_raw(lambda d: True, node=_node("tags.env = 'prod' OR tags.x = 'y'")))
        assert view.pushed == ""
        list(view.select_raw(lambda d: True, node=_node("tags.env = 'prod' AND tags.n > 3")))
        assert view.pushed == "tags.`env` = 'prod'"


def _node(text: str):
    from tracetag.filters import parse_filter

    return parse_filter(text)


def test_store_copy_to_the_server_and_back(server, tmp_path):
    local = tmp_path / "local.json"
    TracetagClient(local).import_traces(TRACES_JSONL.read_bytes())
    subset = "tags.user_id IN ('user_017', 'user_025')"
    first = run_tracetag("store", "copy", str(local), server, "-f", subset)
    assert first.returncode == 0, first.stderr
    n = int(first.stderr.split()[1])
    assert n > 0
    again = run_tracetag("store", "copy", str(local), server, "-f", subset)
    assert again.stderr.decode().startswith(f"copied {n} traces (0 new, {n} updated)")
    back = tmp_path / "back.json"
    assert run_tracetag("store", "copy", server, str(back), "-f", subset).returncode == 0
    a = {
        t.info.trace_id: t
        for t in TracetagClient(local).search_traces(filter_string=subset, max_results=None)
    }
    b = {t.info.trace_id: t for t in TracetagClient(back).search_traces(max_results=None)}
    assert set(a) == set(b)
    for tid, t in a.items():
        u = b[tid]
        assert {k: v for k, v in u.info.tags.items() if k in t.info.tags} == t.info.tags
        assert (u.info.timestamp_ms, u.info.execution_time_ms, u.info.status) == (
            t.info.timestamp_ms,
            t.info.execution_time_ms,
            t.info.status,
        )
        assert len(u.data.spans) == len(t.data.spans)
        for mine, theirs in zip(t.data.spans, u.data.spans, strict=True):
            # The server adds attributes of its own (mlflow.experimentId, ...), all mlflow.*.
            extra = set(theirs.attributes) - set(mine.attributes)
            assert all(k.startswith("mlflow.") for k in extra), extra
            theirs.attributes = {k: v for k, v in theirs.attributes.items() if k not in extra}
            assert theirs.to_dict() == mine.to_dict()


def test_an_unreachable_server_is_one_line_and_never_shows_the_token(tmp_path):
    proc = run_tracetag(
        "--store", "http://127.0.0.1:1", "search", env={"MLFLOW_TRACKING_TOKEN": "sekrit-token"}
    )
    err = proc.stderr.decode()
    assert proc.returncode == 3 and err.count("\n") == 1
    assert "cannot reach the MLflow server" in err and "sekrit" not in err


def test_mlflow_tracking_uri_is_the_default_store(server, cli, monkeypatch):
    monkeypatch.delenv("TRACETAG_STORE")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    runtime.reset()
    result = cli("experiments", "list", "-o", "json")
    assert result.exit_code == 0 and "Default" in json.loads(result.stdout)[0]["name"]


def test_explain_shows_what_the_server_evaluates(server, cli):
    text = "tags.env = 'prod' AND execution_time_ms > 5s AND (tags.a = '1' OR tags.n > 3)"
    out = cli("search", "--explain", "-f", text).stdout.splitlines()
    assert (
        "sent to the MLflow server: tags.`env` = 'prod' AND trace.execution_time_ms > 5000" in out
    )
    assert "evaluated by tracetag: tags.a = '1' OR tags.n > 3" in out


def test_export_in_mlflows_form_reads_into_mlflow_and_back(tmp_path):
    from mlflow.entities import Trace as MlflowTrace

    local = tmp_path / "local.json"
    TracetagClient(local).import_traces(TRACES_JSONL.read_bytes())
    out = tmp_path / "mlflow.jsonl"
    proc = run_tracetag("--store", str(local), "export", "--format", "mlflow", "-O", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 320
    first = MlflowTrace.from_dict(json.loads(lines[0]))  # MLflow itself reads it
    assert first.info.trace_id.startswith("tr-") and len(first.data.spans) >= 1
    back = tmp_path / "back.json"
    assert run_tracetag("--store", str(back), "import", str(out)).returncode == 0
    a = [t.to_dict() for t in TracetagClient(local).search_traces(max_results=None)]
    b = [t.to_dict() for t in TracetagClient(back).search_traces(max_results=None)]
    assert a == b
    bad = run_tracetag("--store", str(local), "export", "--format", "zipkin")
    assert bad.returncode == 2 and b"'zipkin' is not one of tracetag, mlflow, otlp" in bad.stderr


class _Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(401)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def test_refused_credentials_are_a_store_error_without_the_token():
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        proc = run_tracetag("--store", url, "search", env={"MLFLOW_TRACKING_TOKEN": "tok-123"})
    finally:
        proxy.shutdown()
    err = proc.stderr.decode()
    assert proc.returncode == 3 and err.count("\n") == 1
    assert "refused the credentials (HTTP 401)" in err and "tok-123" not in err


def test_delete_and_stats_on_the_server(server, cli):
    exp = TracetagClient(server).create_experiment("deleting")
    traces = _traces(4, exp, kind="del")
    TracetagClient(server).log_traces(traces)
    ids = [t.info.trace_id for t in traces]
    result = cli("delete", ids[0], ids[1])
    assert result.exit_code == 0 and "deleted 2 traces" in result.stderr
    left = cli("search", "-x", exp, "-o", "ids", "--all").stdout.split()
    assert sorted(left) == sorted(ids[2:])
    stats = json.loads(cli("stats", "-x", exp, "--group-by", "tags.kind", "-o", "json").stdout)
    assert stats["groups"][0]["count"] == 2


def test_a_server_batch_reports_its_requests_as_progress(server):
    exp = TracetagClient(server).create_experiment("progress")
    TracetagClient(server).log_traces(_traces(5, exp, kind="p"))
    calls: list[tuple[int, int]] = []
    report = TracetagClient(server).update_tags(
        filter_string="tags.kind = 'p'",
        experiment_ids=[exp],
        set={"a": "1", "b": "2"},
        progress=lambda done, total: calls.append((done, total)),
    )
    assert len(report.changed) == 5
    assert calls[-1] == (10, 10)  # 5 traces x 2 keys, one request each


def test_recording_follows_a_changed_mlflow_tracking_uri(server, monkeypatch, tmp_path):
    from tracetag import runtime as rt

    monkeypatch.delenv("TRACETAG_STORE")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "not-a-server"))
    first = rt.default_store()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    assert rt.default_store() is not first and rt.default_store().path == server
