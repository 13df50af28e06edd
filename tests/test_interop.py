"""Import from MLflow JSON, export to tracetag JSON lines, and the round trip between them."""

from __future__ import annotations

import json

import orjson

from tracetag.api import TracetagClient
from tracetag.model import Span, SpanEvent, Trace, TraceData, TraceInfo

from .conftest import TRACES_JSONL, normalise, run_tracetag

FIRST_ID = "tr-6663f3d7173cfa73b65948ca5fbc00b3"


def test_import_conformance_traces(cli, store_path):
    result = cli("import", str(TRACES_JSONL))
    assert result.exit_code == 0, result.output
    assert "imported 320 traces (320 new, 0 updated)" in result.stderr
    ids = cli("search", "--all", "-o", "ids").stdout.split()
    assert len(ids) == 320 == len(set(ids))
    exps = TracetagClient(store_path).list_experiments()
    assert {e["experiment_id"]: e["traces"] for e in exps} == {"0": 0, "1": 300, "2": 20}


def test_import_keeps_fields_and_converts_span_ids(conformance_client):
    raw = json.loads(TRACES_JSONL.read_text().splitlines()[0])
    t = conformance_client.get_trace(FIRST_ID)
    info = raw["info"]
    assert t.info.experiment_id == "1"
    assert t.info.name == info["tags"]["mlflow.traceName"] == "process_user_request"
    assert t.info.tags == info["tags"]  # mlflow.* tags kept too
    assert t.info.metadata == info["trace_metadata"]
    assert t.info.status == info["state"] == "OK"
    assert t.info.timestamp_ms == 1740787230207  # 2025-03-01T00:00:30.207Z
    assert t.info.execution_time_ms == info["execution_duration_ms"]
    assert t.info.request_preview == info["request_preview"]
    assert t.info.response_preview == info["response_preview"]
    root, child = t.data.spans
    assert root.span_id == "6f4fcb878f649938"  # base64 "b0/Lh49kmTg=" as hex
    assert child.parent_id == root.span_id
    assert root.span_type == "CHAIN" and child.span_type == "LLM"
    assert root.inputs == {"request": "question 0"}
    assert child.outputs == {"text": "answer 0"}
    assert child.attributes["model"] == "v2.0.0"
    assert root.start_time_ns == 1740787230207000000


def test_show_lists_tags_and_two_spans(cli, conformance_store):
    result = cli("show", FIRST_ID)
    assert result.exit_code == 0
    out = result.stdout
    for key, value in (
        ("session_id", "session_049"),
        ("review status", "done"),
        ("city", "Zürich"),
    ):
        assert key in out and value in out
    assert "spans (2)" in out and "process_user_request [CHAIN]" in out and "llm_call [LLM]" in out
    data = json.loads(cli("show", FIRST_ID, "-o", "json").stdout)
    assert len(data["spans"]) == 2 and data["info"]["tags"]["customer"] == 'say "hi"'


def test_show_unknown_trace(cli, conformance_store):
    result = cli("show", "tr-" + "0" * 32)
    assert result.exit_code == 1
    assert (
        result.stderr == "tracetag: error: trace not found: tr-00000000000000000000000000000000\n"
    )


def test_export_then_import_is_identical(cli, tmp_path, conformance_store):
    first = tmp_path / "a.jsonl"
    assert cli("export", "-O", str(first)).exit_code == 0
    other = tmp_path / "other.json"
    assert cli("--store", str(other), "import", str(first)).exit_code == 0
    second = cli("--store", str(other), "export").stdout_bytes
    assert second == first.read_bytes()
    a = [Trace.from_dict(orjson.loads(line)) for line in first.read_bytes().splitlines()]
    assert len(a) == 320 and all(len(t.spans) == 2 for t in a)
    original = TracetagClient(conformance_store).get_trace(FIRST_ID)
    copied = TracetagClient(other).get_trace(FIRST_ID)
    assert copied == original


def test_reimport_updates_instead_of_duplicating(cli, conformance_store):
    cli("tag", "set", FIRST_ID, "local=1")
    result = cli("import", str(TRACES_JSONL))
    assert "(0 new, 320 updated)" in result.stderr
    assert len(cli("search", "--all", "-o", "ids").stdout.split()) == 320
    assert "local" not in TracetagClient(conformance_store).get_trace(FIRST_ID).info.tags


def test_malformed_line_aborts_whole_import(cli, tmp_path, store_path):
    lines = TRACES_JSONL.read_text().splitlines()[:5]
    lines.insert(3, '{"info": {"trace_id": "tr-1", "state": "OK"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    result = cli("import", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"tracetag: error: {bad}: line 4: invalid JSON")
    assert not store_path.exists()  # nothing written, not even an empty store
    result = cli("import", str(bad), "--skip-invalid")
    assert result.exit_code == 1
    assert "imported 5 traces" in result.stderr and "skipped record 4" in result.stderr
    assert len(cli("search", "-o", "ids").stdout.split()) == 5


def test_invalid_record_is_named(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"info": {"trace_id": "tr-1", "state": "SOMETHING"}, "data": {"spans": []}}\n')
    result = cli("import", str(bad))
    assert result.exit_code == 2 and "line 1: unknown state 'SOMETHING'" in result.stderr


def test_import_json_array_and_stdin(cli):
    docs = [json.loads(line) for line in TRACES_JSONL.read_text().splitlines()[:7]]
    result = cli("import", "-", input=json.dumps(docs, indent=2))
    assert result.exit_code == 0 and "imported 7 traces" in result.stderr
    # a single pretty-printed document, as `mlflow traces get` prints it
    result = cli("import", "-", input=json.dumps(docs[0], indent=2))
    assert "(0 new, 1 updated)" in result.stderr


def test_import_mlflow2_shape(cli, client):
    doc = {
        "info": {
            "request_id": "tr-" + "b" * 32,
            "experiment_id": "5",
            "timestamp_ms": 1000,
            "execution_time_ms": 25,
            "status": "ERROR",
            "request_metadata": {"m": "1"},
            "tags": [{"key": "mlflow.traceName", "value": "legacy"}, {"key": "env", "value": "x"}],
        },
        "data": {"spans": []},
    }
    assert cli("import", "-", input=json.dumps(doc)).exit_code == 0
    t = client.get_trace("tr-" + "b" * 32)
    assert (t.info.status, t.info.name, t.info.metadata, t.info.execution_time_ms) == (
        "ERROR",
        "legacy",
        {"m": "1"},
        25,
    )


def test_trace_json_round_trip():
    trace = Trace(
        TraceInfo(
            trace_id="tr-" + "c" * 32,
            experiment_id="3",
            name="n",
            timestamp_ms=5,
            execution_time_ms=None,
            status="IN_PROGRESS",
            tags={"a": "ü", "b": ""},
            metadata={"m": "x"},
            client_request_id="req-1",
        ),
        TraceData(
            [
                Span(
                    "00000000000000aa",
                    "root",
                    events=[SpanEvent("e", 3, {"k": [1, 2]})],
                    inputs={"q": [1, {"x": None}]},
                    outputs="ok",
                    end_time_ns=9,
                )
            ]
        ),
    )
    again = Trace.from_dict(orjson.loads(orjson.dumps(trace.to_dict())))
    assert again == trace and again.to_dict() == trace.to_dict()


def test_import_export_in_real_subprocess_pipeline(tmp_path):
    store = tmp_path / "p.json"
    env = {"TRACETAG_STORE": str(store)}
    imp = run_tracetag("import", "-", input=TRACES_JSONL.read_bytes(), env=env)
    assert imp.returncode == 0, imp.stderr
    exp = run_tracetag("export", "-f", "tags.environment = 'production'", env=env)
    assert exp.returncode == 0
    raw = [json.loads(line) for line in TRACES_JSONL.read_text().splitlines()]
    expected = sorted(
        d["info"]["trace_id"] for d in raw if d["info"]["tags"].get("environment") == "production"
    )
    got = sorted(json.loads(line)["info"]["trace_id"] for line in exp.stdout.splitlines())
    assert got == expected and len(expected) > 140  # both experiments
    assert normalise(exp.stderr.decode()) == f"exported {len(expected)} traces\n"
