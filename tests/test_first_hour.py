"""What a new user meets in the first hour: readable output, honest errors, MLflow's shapes."""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from pathlib import Path

import pytest

import tracetag
from tracetag.errors import (
    ExperimentNotFound,
    FilterSyntaxError,
    InvalidInput,
    InvalidQuery,
    TagNotFound,
)
from tracetag.model import Trace, TraceInfo

from .conftest import ID_RE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(cli, store_path):
    assert cli("demo", "--traces", "120").exit_code == 0
    return store_path


# -- what a person sees at 80, 120 and 200 columns ----------------------------------------------


@pytest.mark.parametrize("width", [80, 120, 200])
def test_search_table_keeps_whole_ids_at_any_width(cli, demo, width):
    r = cli("search", "-n", "8", "-o", "table", env={"COLUMNS": str(width)})
    assert r.exit_code == 0
    assert len(ID_RE.findall(r.stdout)) == 8  # whole ids, one per row, never cut
    assert max(len(line) for line in r.stdout.splitlines()) <= width
    assert "tags" in r.stdout.splitlines()[1]
    assert "status" in r.stdout  # dropped only after time, name and duration
    if width >= 200:
        assert "time (UTC)" in r.stdout and "duration" in r.stdout and "name" in r.stdout
    if width == 200:  # tags use the room: several on a line
        assert re.search(r"\w+=\S+, \w+=\S+, \w+=\S+", r.stdout)


@pytest.mark.parametrize("width", [80, 120])
def test_stats_groups_are_readable(cli, demo, width):
    env = {"COLUMNS": str(width)}
    one = cli("stats", "-g", "tags.model_version", "-o", "table", env=env).stdout
    assert all(v in one for v in ("v1.0.0", "v2.0.0", "v2.1.0"))
    two = cli(
        "stats", "-g", "tags.model_version", "-g", "tags.environment", "-o", "table", env=env
    ).stdout
    assert "tags.environment" in two and "production" in two and "v2.1.0" in two
    assert max(len(line) for line in two.splitlines()) <= width


def test_show_and_tag_list_at_80_columns(cli, demo):
    tid = cli("search", "-n", "1", "-o", "ids").stdout.strip()
    env = {"COLUMNS": "80"}
    shown = cli("show", tid, env=env).stdout
    assert tid in shown and max(len(line) for line in shown.splitlines()) <= 80
    listed = cli("tag", "list", tid, "-o", "table", env=env).stdout
    assert "environment" in listed and max(len(line) for line in listed.splitlines()) <= 80


def test_show_without_metadata_draws_no_empty_box(cli, client):
    client.log_traces([Trace(TraceInfo(trace_id="tr-a", timestamp_ms=1, tags={"k": "v"}))])
    out = cli("show", "tr-a").stdout
    assert "metadata: none" in out and "┌─┐" not in out.replace("─", "")


# -- stats: one vocabulary, natural order --------------------------------------------------------


def _stats_client(client):
    client.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id=f"tr-{i}",
                    timestamp_ms=i,
                    execution_time_ms=10 * i,
                    status="ERROR" if i % 3 == 0 else "OK",
                    tags={"shard": str(i % 13)},
                )
            )
            for i in range(1, 40)
        ]
    )


def test_stats_errors_is_a_count_everywhere(cli, client):
    _stats_client(client)
    data = json.loads(cli("stats", "-g", "tags.shard", "-o", "json").stdout)["groups"]
    rows = list(csv.DictReader(io.StringIO(cli("stats", "-g", "tags.shard", "-o", "csv").stdout)))
    by_group = {r["tags.shard"]: r for r in rows}
    for g in data:
        assert int(by_group[g["group"][0]]["errors"]) == g["errors"]
        assert float(by_group[g["group"][0]]["error_rate"]) == round(g["error_rate"], 4)
    ranked = cli("stats", "-g", "tags.shard", "--sort", "errors", "-o", "json").stdout
    errors = [g["errors"] for g in json.loads(ranked)["groups"]]
    assert errors == sorted(errors, reverse=True)


def test_stats_sorts_groups_naturally_and_runs_without_groups(cli, client):
    _stats_client(client)
    out = cli("stats", "-g", "tags.shard", "--sort", "group", "-o", "tsv", "--no-header").stdout
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(i) for i in range(13)]
    overall = json.loads(cli("stats", "-o", "json").stdout)["groups"]
    assert len(overall) == 1 and overall[0]["count"] == 39 and overall[0]["errors"] == 13


def test_wording_is_singular_for_one(cli, client):
    client.log_traces([Trace(TraceInfo(trace_id="tr-a", timestamp_ms=1))])
    assert cli("tag", "set", "tr-a", "k=v").stderr == "1 trace changed, 0 unchanged\n"
    r = cli("tag", "set", "tr-a", "tr-nope", "k=w", "--strict")
    assert r.stderr.startswith("1 trace would change, 0 unchanged, 1 not found; nothing written")


# -- one set of formats, pipes that can be parsed -----------------------------------------------

LISTINGS = [
    ["search"],
    ["tag", "list", "tr-a"],
    ["tags", "keys"],
    ["tags", "values", "k"],
    ["stats", "-g", "status"],
    ["lint"],
    ["experiments", "list"],
]


@pytest.mark.parametrize("args", LISTINGS)
@pytest.mark.parametrize("fmt", ["table", "tsv", "csv", "json", "jsonl"])
def test_every_listing_takes_every_format(cli, client, args, fmt):
    client.log_traces(
        [Trace(TraceInfo(trace_id="tr-a", timestamp_ms=1, tags={"Bad Key": "1", "k": "v"}))]
    )
    r = cli(*args, "-o", fmt)
    assert r.exit_code in (0, 1), r.output  # lint exits 1 on findings
    if fmt == "json":
        json.loads(r.stdout)
    if fmt == "jsonl":
        for line in r.stdout.splitlines():
            json.loads(line)


def test_a_huge_table_is_refused_with_a_hint(cli, client, monkeypatch):
    from tracetag.cli import render

    monkeypatch.setattr(render, "MAX_TABLE_ROWS", 3)
    client.log_traces([Trace(TraceInfo(trace_id=f"tr-{i}", timestamp_ms=i)) for i in range(5)])
    r = cli("search", "--all", "-o", "table")
    assert r.exit_code == 2 and "too many for a table; use -o tsv" in r.stderr
    assert len(cli("search", "--all", "-o", "tsv").stdout.splitlines()) == 6


def test_columns_put_tags_in_columns_of_their_own(cli, client):
    client.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id="tr-a", timestamp_ms=1, tags={"review status": "done x", "k": "a=b"}
                )
            )
        ]
    )
    out = cli("search", "--columns", "trace_id,tags.review status,tags.k", "--no-header").stdout
    assert out == "tr-a\tdone x\ta=b\n"
    bad = cli("search", "--columns", "trace_id,bogus")
    assert bad.exit_code == 2 and "unknown column 'bogus'" in bad.stderr


# -- help ------------------------------------------------------------------------------------


def test_help_shows_no_python_types_and_keeps_examples_whole():
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "<str>" not in reference and "<list" not in reference and "<int>" not in reference
    examples = re.findall(r"Example: (.*)", reference)
    assert len(examples) > 20
    for line in examples:  # never wrapped mid-argument: every quote is closed on its line
        assert line.count('"') % 2 == 0 and line.count("'") % 2 == 0, line
    for group in ("tag", "tags", "experiments", "store"):
        section = reference.split(f"## tracetag {group}\n", 1)[1].split("\n## ", 1)[0]
        assert "Examples:" in section, group


def test_help_filters(cli):
    r = cli("help", "filters")
    assert r.exit_code == 0
    for word in ("tags.KEY", "RLIKE", "IS NULL", "now()", "5s", "Examples"):
        assert word in r.stdout
    assert cli("help", "nope").exit_code == 2


# -- honest errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "-f", "timestamp_ms > now() - 1d"],
        ["delete", "-f", "timestamp_ms > now() - 1d", "--dry-run"],
        ["tag", "set", "-f", "timestamp_ms > now() - 1d", "k=v"],
        ["export", "-f", "timestamp_ms > now() - 1d"],
    ],
)
def test_a_bad_tracetag_now_is_one_line(cli, conformance_store, args):
    r = cli(*args, env={"TRACETAG_NOW": "yesterday"})
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "TRACETAG_NOW='yesterday' is not a date" in r.stderr


def test_export_to_a_missing_folder_is_not_a_store_error(cli, conformance_store, tmp_path):
    r = cli("export", "-O", str(tmp_path / "missing" / "x.jsonl"))
    assert r.exit_code == 2 and "x.jsonl: cannot write" in r.stderr and "partial" not in r.stderr


def test_honest_error_classes(conformance_client):
    c = conformance_client
    with pytest.raises(InvalidQuery):
        c.search_traces(max_results=0)
    with pytest.raises(InvalidQuery):
        c.search_traces(page_token="!!")
    token = c.search_traces(order_by=["timestamp_ms"], max_results=1).token
    for crafted in ("eyJrIjpbXSwiZiI6IngifQ", token[:-4] + "AAAA"):
        with pytest.raises(InvalidQuery):
            c.search_traces(order_by=["timestamp_ms"], page_token=crafted)
    with pytest.raises(InvalidInput):
        tracetag.set_experiment()
    tid = c.search_traces(max_results=1)[0].info.trace_id
    with pytest.raises(TagNotFound) as e:
        c.delete_trace_tag(tid, "nope")
    assert (e.value.trace_id, e.value.key) == (tid, "nope")


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("tags.x DESCENDING", "unknown direction 'DESCENDING'; use ASC or DESC"),
        ("execution_time_ms DESCENDING", "unknown direction"),
        ("tags.x y DESC", "a tag key with spaces is quoted"),
        (" " * 20000 + "x", "too long"),
    ],
)
def test_order_by_typos_are_refused(conformance_client, order, message):
    with pytest.raises(FilterSyntaxError, match=message):
        conformance_client.search_traces(order_by=[order])


def test_order_by_takes_mlflows_commas(conformance_client):
    c = conformance_client
    both = c.search_traces(order_by=["timestamp DESC, execution_time_ms ASC"], max_results=5)
    apart = c.search_traces(order_by=["timestamp DESC", "execution_time_ms ASC"], max_results=5)
    assert [t.info.trace_id for t in both] == [t.info.trace_id for t in apart]
    quoted = c.search_traces(order_by=["tags.`review status` DESC"], max_results=3)
    assert len(quoted) == 3


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ("status = 'error'", "status is one of OK, ERROR, IN_PROGRESS"),
        ("status IN ('ok')", "status is one of OK, ERROR, IN_PROGRESS"),
        ("environment = 'production'", "for a tag write tags.environment"),
        ("duration > 5s", "did you mean execution_time_ms?"),
        ("latency > 5s", "did you mean execution_time_ms?"),
        ("(" * 500 + "status = 'OK'" + ")" * 500, "nests too deeply"),
        ("NOT " * 330 + "status = 'OK'", "nests too deeply"),
        ("tags.x > " + "9" * 400, "number out of range"),
        ("execution_time_ms > " + "9" * 400 + "s", "number out of range"),
        ("tags.x RLIKE '(a)\\\\1'", "invalid regular expression"),
        ("tags.x = '" + "a" * 70_000 + "'", "filter too long"),
    ],
)
def test_filter_mistakes_get_a_helpful_one_line_error(conformance_client, flt, message):
    with pytest.raises(FilterSyntaxError, match=re.escape(message)):
        conformance_client.search_traces(filter_string=flt)


def test_unknown_experiments_are_errors(cli, conformance_client):
    with pytest.raises(ExperimentNotFound):
        conformance_client.search_traces(experiment_ids=["nosuch"])
    for args in (["search"], ["stats"], ["tag", "set", "-f", "status = 'OK'", "k=v"]):
        r = cli(*args, "-x", "nosuch")
        assert r.exit_code == 1 and "experiment not found: nosuch" in r.stderr


# -- MLflow's shapes ---------------------------------------------------------------------------

# MLflow 3's signatures (mlflow.search_traces, MlflowClient.search_traces, ...): the leading
# parameters, in order, that code calls positionally.
MLFLOW_ORDER = {
    "search_traces": ["experiment_ids", "filter_string", "max_results", "order_by"],
    "set_trace_tag": ["trace_id", "key", "value"],
    "delete_trace_tag": ["trace_id", "key"],
    "delete_traces": ["experiment_id", "max_timestamp_millis", "max_traces", "trace_ids"],
    "get_trace": ["trace_id"],
    "update_current_trace": ["tags"],
    "set_experiment": ["experiment_name", "experiment_id"],
}
MLFLOW_CLIENT_ORDER = {
    "search_traces": ["experiment_ids", "filter_string", "max_results", "order_by", "page_token"],
    "set_trace_tag": ["trace_id", "key", "value"],
    "delete_trace_tag": ["trace_id", "key"],
    "get_trace": ["trace_id"],
}


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize("name", sorted(MLFLOW_ORDER))
def test_fluent_functions_take_mlflows_parameter_order(name):
    want = MLFLOW_ORDER[name]
    assert _params(getattr(tracetag, name))[: len(want)] == want


def test_the_recorded_orders_are_mlflows_own():
    """Where MLflow is installed (the bench extra), the recorded orders are checked against it;
    without it, against the orders recorded above from MLflow 3.17."""
    try:
        import mlflow
    except ImportError:
        assert MLFLOW_ORDER["search_traces"][2] == "max_results"
        return
    for name, want in MLFLOW_ORDER.items():
        # delete_traces is MlflowClient's alone in MLflow 3.17; tracetag also offers it fluently
        fn = getattr(mlflow, name, None) or getattr(mlflow.MlflowClient, name)
        assert _params(fn)[: len(want)] == want, name
    for name, want in MLFLOW_CLIENT_ORDER.items():
        assert _params(getattr(mlflow.MlflowClient, name))[: len(want)] == want, name


@pytest.mark.parametrize("name", sorted(MLFLOW_CLIENT_ORDER))
def test_client_methods_take_mlflows_parameter_order(name):
    want = MLFLOW_CLIENT_ORDER[name]
    assert _params(getattr(tracetag.MlflowClient, name))[: len(want)] == want


def test_positional_search_as_in_mlflow(conformance_client):
    tracetag.set_store(conformance_client.store.path)
    traces = tracetag.search_traces(["1"], "status = 'OK'", 10)
    assert len(traces) == 10 and all(t.info.status == "OK" for t in traces)


def test_search_uses_the_active_experiment(client):
    tracetag.set_store(client.store.path)
    client.log_traces([Trace(TraceInfo(trace_id="tr-default", timestamp_ms=1))])
    tracetag.set_experiment("chatbot")

    @tracetag.trace
    def answer():
        return 42

    answer()
    ids = [t.info.trace_id for t in tracetag.search_traces()]
    assert ids == [tracetag.get_last_active_trace_id()]
    assert len(client.search_traces()) == 2  # the client (and the CLI) search everything


def test_trace_to_json_and_set_tracking_uri(client):
    tracetag.set_tracking_uri(str(client.store.path))
    client.log_traces([Trace(TraceInfo(trace_id="tr-a", timestamp_ms=1, tags={"k": "v"}))])
    trace = tracetag.get_trace("tr-a")
    text = trace.to_json()
    assert json.loads(text)["info"]["tags"] == {"k": "v"}
    assert Trace.from_json(text) == trace
    assert client.import_traces(text.encode()).imported == 1
