"""OTLP in and out through files: `tracetag import` (JSON and protobuf, spread over requests and
files), `tracetag export --format otlp`, and the mapping of attributes to tags and metadata."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from typer.testing import CliRunner

from tracetag.api import TracetagClient
from tracetag.cli import app

runner = CliRunner()

TID = "5b8efff798038103d269b633813fc60c"
ROOT = "eee19b7ec3c1b173"
CHILD = "eee19b7ec3c1b174"


def kv(key, value):
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [{"stringValue": x} for x in value]}}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def span(span_id, name, parent=None, tid=TID, start=1_700_000_000_000_000_000, ms=1000, **attrs):
    s = {
        "traceId": tid,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + ms * 1_000_000),
        "attributes": [kv(k.replace("__", "."), v) for k, v in attrs.items()],
        "status": {"code": attrs.pop("_code", 1)},
    }
    if parent:
        s["parentSpanId"] = parent
    return s


def request(*spans, service="chat-api"):
    resource = {"attributes": [kv("service.name", service)]} if service else {}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}


def cli(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def write(path, obj):
    path.write_bytes(orjson.dumps(obj))
    return str(path)


def test_spans_spread_over_two_files_become_one_trace_in_one_import(tmp_path, client):
    child = write(tmp_path / "a.json", request(span(CHILD, "llm", ROOT)))
    root = write(
        tmp_path / "b.json",
        request(span(ROOT, "chat turn", None, mlflow__traceTag__environment="production")),
    )
    r = cli("import", child, root)
    assert r.exit_code == 0, r.output
    t = client.get_trace(f"tr-{TID}")
    assert t.info.status == "OK" and t.info.name == "chat turn"
    assert t.info.tags == {"environment": "production", "service.name": "chat-api"}
    assert t.info.execution_time_ms == 1000
    assert {s.span_id for s in t.spans} == {ROOT, CHILD}


def test_a_trace_is_in_progress_until_its_root_arrives_and_keeps_tags_set_meanwhile(
    tmp_path, client
):
    assert (
        cli("import", write(tmp_path / "a.json", request(span(CHILD, "llm", ROOT)))).exit_code == 0
    )
    t = client.get_trace(f"tr-{TID}")
    assert t.info.status == "IN_PROGRESS" and t.info.execution_time_ms is None
    # Someone tags the unfinished trace; the root arrives later with tags of its own.
    assert cli("tag", "set", f"tr-{TID}", "needs_review=true").exit_code == 0
    root = request(span(ROOT, "chat turn", None, mlflow__traceTag__team="search", _code=2))
    r = cli("import", write(tmp_path / "b.json", root))
    assert r.exit_code == 0 and "0 new, 1 updated" in r.output
    t = client.get_trace(f"tr-{TID}")
    assert t.info.status == "ERROR"
    assert t.info.tags == {"needs_review": "true", "team": "search", "service.name": "chat-api"}
    assert len(t.spans) == 2


def test_ids_in_hex_of_either_case_or_base64_and_snake_case_keys_are_read(tmp_path, client):
    b64 = base64.b64encode(bytes.fromhex(TID)).decode()
    proto_json = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": b64,
                                "span_id": base64.b64encode(bytes.fromhex(ROOT)).decode(),
                                "name": "root",
                                "start_time_unix_nano": 1_700_000_000_000_000_000,
                                "end_time_unix_nano": 1_700_000_000_500_000_000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    upper = request(span(CHILD.upper(), "child", ROOT.upper(), tid=TID.upper()))
    assert cli("import", write(tmp_path / "a.json", proto_json)).exit_code == 0
    assert cli("import", write(tmp_path / "b.json", upper)).exit_code == 0
    t = client.get_trace(f"tr-{TID}")
    assert {s.span_id: s.parent_id for s in t.spans} == {ROOT: None, CHILD: ROOT}
    assert t.info.status == "ERROR" and t.info.execution_time_ms == 500
    assert next(s for s in t.spans if s.span_id == ROOT).status_message == "boom"


@pytest.mark.parametrize("shape", ["document", "array", "lines", "gzip-less-lines-crlf"])
def test_requests_as_a_document_an_array_or_one_per_line(tmp_path, client, shape):
    reqs = [request(span(ROOT, "root")), request(span(CHILD, "child", ROOT))]
    if shape == "document":
        data = orjson.dumps(request(span(ROOT, "root"), span(CHILD, "child", ROOT)))
    elif shape == "array":
        data = orjson.dumps(reqs)
    elif shape == "lines":
        data = b"\n".join(orjson.dumps(r) for r in reqs) + b"\n"
    else:
        data = b"\r\n".join(orjson.dumps(r) for r in reqs)
    (tmp_path / "f").write_bytes(data)
    r = cli("import", str(tmp_path / "f"))  # the format is told from the data
    assert r.exit_code == 0, r.output
    assert len(client.get_trace(f"tr-{TID}").spans) == 2


def _pb_request(*spans_):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for sid, parent, name, attrs in spans_:
        s = ss.spans.add()
        s.trace_id = bytes.fromhex(TID)
        s.span_id = bytes.fromhex(sid)
        if parent:
            s.parent_span_id = bytes.fromhex(parent)
        s.name = name
        s.start_time_unix_nano = 1_700_000_000_000_000_000
        s.end_time_unix_nano = 1_700_000_000_250_000_000
        for k, v in attrs.items():
            a = s.attributes.add()
            a.key = k
            if isinstance(v, int):
                a.value.int_value = v
            else:
                a.value.string_value = v
    return req.SerializeToString()


def test_protobuf_files_single_and_length_prefixed(tmp_path, client):
    pytest.importorskip("opentelemetry.proto", reason="needs the otlp extra")
    one = _pb_request((ROOT, None, "root", {"mlflow.traceTag.env": "prod", "user.id": "u7"}))
    two = _pb_request((CHILD, ROOT, "child", {"llm.tokens": 12}))
    (tmp_path / "one.pb").write_bytes(one)
    framed = b"".join(len(m).to_bytes(4, "big") + m for m in (one, two))
    (tmp_path / "framed.pb").write_bytes(framed)
    assert cli("import", str(tmp_path / "one.pb")).exit_code == 0
    t = client.get_trace(f"tr-{TID}")
    assert t.info.tags == {"env": "prod"} and t.info.metadata == {"mlflow.trace.user": "u7"}
    r = cli("import", "--format", "otlp", str(tmp_path / "framed.pb"))
    assert r.exit_code == 0, r.output
    t = client.get_trace(f"tr-{TID}")
    child = next(s for s in t.spans if s.span_id == CHILD)
    assert child.attributes == {"llm.tokens": 12}


def test_a_malformed_record_is_named_and_nothing_is_written(tmp_path, client, store_path):
    good = orjson.dumps(request(span(ROOT, "root")))
    bad = request(span(CHILD, "child", ROOT))
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "xyz"
    (tmp_path / "f.jsonl").write_bytes(good + b"\n" + orjson.dumps(bad) + b"\n")
    r = cli("import", str(tmp_path / "f.jsonl"))
    assert r.exit_code == 2
    assert "line 2: resourceSpans[0].scopeSpans[0].spans[0]: spanId 'xyz'" in r.output
    assert not store_path.exists() or client.search_traces(max_results=10) == []
    r = cli("import", "--skip-invalid", str(tmp_path / "f.jsonl"))
    assert r.exit_code == 1 and "skipped record 2" in r.output
    assert [s.span_id for s in client.get_trace(f"tr-{TID}").spans] == [ROOT]


def test_a_trace_the_store_refuses_is_named(tmp_path, client):
    bad = request(span(ROOT, "root", None, **{"mlflow.traceTag.bad#key": "x"}))
    r = cli("import", write(tmp_path / "f.json", bad))
    assert r.exit_code == 2
    assert f"error: trace tr-{TID}: tag key 'bad#key': use 1 to 250" in r.output


def test_mapping_of_openinference_langfuse_and_genai_attributes(tmp_path, client):
    root = span(
        ROOT,
        "agent run",
        None,
        **{
            "session.id": "sess-1",
            "langfuse.user.id": "u-9",
            "langfuse.trace.metadata.tenant": "acme",
            "langfuse.trace.tags": ["needs review", "vip"],
            "openinference.span.kind": "AGENT",
            "input.value": '{"question": "hi"}',
            "input.mime_type": "application/json",
            "output.value": "hello",
        },
    )
    llm = span(
        CHILD, "chat", ROOT, **{"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}
    )
    assert cli("import", write(tmp_path / "f.json", request(root, llm))).exit_code == 0
    t = client.get_trace(f"tr-{TID}")
    assert t.info.metadata == {
        "mlflow.trace.session": "sess-1",
        "mlflow.trace.user": "u-9",
        "tenant": "acme",
    }
    assert t.info.tags == {"needs review": "true", "vip": "true", "service.name": "chat-api"}
    spans = {s.name: s for s in t.spans}
    assert spans["agent run"].span_type == "AGENT"
    assert spans["agent run"].inputs == {"question": "hi"} and spans["agent run"].outputs == "hello"
    assert t.info.request_preview == '{"question":"hi"}'
    assert spans["chat"].span_type == "CHAT_MODEL"
    assert spans["chat"].attributes["gen_ai.request.model"] == "m"
    # Searchable like any trace: by session, by label, by span type.
    found = client.search_traces(
        filter_string="metadata.`mlflow.trace.session` = 'sess-1' AND tags.vip = 'true' "
        "AND span.type = 'CHAT_MODEL'"
    )
    assert [x.info.trace_id for x in found] == [f"tr-{TID}"]


@pytest.mark.parametrize(
    ("mode", "tags"),
    [
        ("tag", {"a": "true", "b c": "true"}),
        ("joined", {"labels": "a,b c"}),
        ("ignore", {}),
    ],
)
def test_label_modes(tmp_path, client, mode, tags):
    root = span(ROOT, "r", None, **{"tag.tags": ["a", "b c"]})
    r = cli("import", "--labels", mode, write(tmp_path / "f.json", request(root, service=None)))
    assert r.exit_code == 0, r.output
    assert client.get_trace(f"tr-{TID}").info.tags == tags


def test_experiment_option_names_or_makes_the_experiment(tmp_path, client):
    f = write(tmp_path / "f.json", request(span(ROOT, "r")))
    assert cli("import", "-x", "chatbot", f).exit_code == 0
    exps = {e["name"]: e["experiment_id"] for e in client.list_experiments()}
    assert client.get_trace(f"tr-{TID}").info.experiment_id == exps["chatbot"] != "0"


def test_mlflow_json_and_otlp_files_in_one_import(tmp_path, client):
    from conftest import TRACES_JSONL

    three = tmp_path / "three.jsonl"
    three.write_bytes(b"\n".join(TRACES_JSONL.read_bytes().splitlines()[:3]))
    r = cli("import", str(three), write(tmp_path / "o.json", request(span(ROOT, "r"))))
    assert r.exit_code == 0 and "imported 4 traces (4 new" in r.output, r.output


def _exported(location, fmt="tracetag"):
    r = runner.invoke(app, ["--store", str(location), "export", "--format", fmt])
    assert r.exit_code == 0, r.output
    return r.stdout_bytes


def test_round_trip_through_otlp_keeps_every_trace_exactly(tmp_path, local_conformance_store):
    """tracetag -> OTLP -> tracetag: ids, tags, metadata, spans, status, times, experiments."""
    from tracetag import demo

    demo.record_demo(TracetagClient(local_conformance_store), 40)
    otlp = tmp_path / "all.otlp.jsonl"
    otlp.write_bytes(_exported(local_conformance_store, "otlp"))
    lines = otlp.read_bytes().splitlines()
    assert len(lines) == 360
    assert all(json.loads(x)["resourceSpans"] for x in lines)
    copy = tmp_path / "copy.json"
    r = runner.invoke(app, ["--store", str(copy), "import", str(otlp)])
    assert r.exit_code == 0 and "360 new" in r.output, r.output
    assert _exported(copy) == _exported(local_conformance_store)


def test_export_puts_tags_session_and_user_where_peers_read_them(tmp_path, client):
    client.import_traces(
        orjson.dumps(
            request(
                span(
                    ROOT,
                    "r",
                    None,
                    **{"session.id": "s1", "user.id": "u1", "mlflow.traceTag.env": "prod"},
                )
            )
        )
    )
    line = orjson.loads(_exported(client.store.path, "otlp").splitlines()[0])
    rs = line["resourceSpans"][0]
    assert rs["resource"]["attributes"] == [kv("service.name", "chat-api")]
    root = rs["scopeSpans"][0]["spans"][0]
    attrs = {a["key"]: a["value"] for a in root["attributes"]}
    assert root["traceId"] == TID and root["spanId"] == ROOT
    # MLflow writes attribute values as JSON text; that is how MLflow reads them back.
    assert attrs["mlflow.traceTag.env"] == {"stringValue": '"prod"'}
    assert attrs["session.id"] == {"stringValue": '"s1"'}
    assert attrs["user.id"] == {"stringValue": '"u1"'}


def test_a_byte_order_mark_does_not_confuse_the_format_detection(tmp_path, client):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(request(span(ROOT, "r"))))
    r = cli("import", str(tmp_path / "bom.json"))
    assert r.exit_code == 0, r.output
    assert client.get_trace(f"tr-{TID}").info.name == "r"


@pytest.fixture(params=["local", "postgresql", "mlflow"])
def any_empty_store(request, store_path, monkeypatch):
    """An empty store of every backend (the MLflow server's is shared: ids are made unique)."""
    if request.param == "local":
        return str(store_path)
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    url = request.getfixturevalue("mlflow_scratch").url
    monkeypatch.setenv("TRACETAG_STORE", url)
    return url


def test_spans_in_two_imports_join_one_trace_on_every_backend(tmp_path, any_empty_store):
    import secrets

    tid = secrets.token_hex(16)  # the MLflow server is shared between tests
    child = write(tmp_path / "a.json", request(span(CHILD, "llm", ROOT, tid=tid)))
    root = request(span(ROOT, "turn", None, tid=tid, mlflow__traceTag__env="prod", _code=2))
    assert cli("import", child).exit_code == 0
    client = TracetagClient(any_empty_store)
    assert client.get_trace(f"tr-{tid}").info.status == "IN_PROGRESS"
    assert cli("tag", "set", f"tr-{tid}", "reviewed=yes").exit_code == 0
    r = cli("import", write(tmp_path / "b.json", root))
    assert r.exit_code == 0, r.output
    t = TracetagClient(any_empty_store).get_trace(f"tr-{tid}")
    assert t.info.status == "ERROR" and t.info.name == "turn"
    assert {k: v for k, v in t.info.tags.items() if not k.startswith("mlflow.")} == {
        "env": "prod",
        "reviewed": "yes",
        "service.name": "chat-api",
    }
    assert sorted(s.span_id for s in t.spans) == sorted([ROOT, CHILD])


# -- hostile shapes: whatever arrives, the decoder says what is wrong (ValueError) -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)
_keys = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name",
     "attributes", "key", "value", "stringValue", "intValue", "kvlistValue", "arrayValue",
     "values", "status", "code", "events", "startTimeUnixNano", "endTimeUnixNano", "resource"]
)  # fmt: skip
_otlp_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=40)
    | st.sampled_from([TID, ROOT, TID.upper(), "AAAAAAAAAAA=", "STATUS_CODE_ERROR"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json_values, _otlp_like))
def test_any_json_is_spans_or_a_value_error(obj):
    from tracetag.otlp import decode_json_request
    from tracetag.otlp.mapping import assemble

    try:
        spans = decode_json_request({"resourceSpans": obj} if not isinstance(obj, dict) else obj)
    except ValueError:
        return
    from tracetag.errors import InvalidInput
    from tracetag.schema import check_trace

    for a in assemble(spans):  # what decodes maps to traces the store takes or names
        assert a.doc["trace_id"].startswith("tr-")
        try:
            check_trace(a.doc, a.spans)
        except InvalidInput as e:
            assert str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_value_error(data):
    pytest.importorskip("opentelemetry.proto")
    from tracetag.otlp import decode_body

    for ctype in ("application/x-protobuf", "application/json"):
        try:
            spans = decode_body(data, ctype)
        except ValueError:
            continue  # what the receiver answers 400 to
        assert all(len(s.trace_id) == 32 and len(s.span_id) == 16 for s in spans)
