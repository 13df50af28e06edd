"""Ordering, keyset paging and output formats of search, through the API and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest

import tracetag
from tracetag.api import TracetagClient
from tracetag.errors import FilterSyntaxError, InvalidQuery
from tracetag.query import parse_order_by

from .conftest import ID_RE


def _put(client: TracetagClient, rows: list[tuple[str, int, int | None, dict]]) -> None:
    from tracetag.model import Trace, TraceInfo

    client.log_traces(
        [
            Trace(TraceInfo(trace_id=tid, timestamp_ms=ts, execution_time_ms=ex, tags=tags))
            for tid, ts, ex, tags in rows
        ]
    )


def _ids(page) -> list[str]:
    return [t.info.trace_id for t in page]


@pytest.fixture
def small(client):
    _put(
        client,
        [
            ("tr-a", 100, 50, {"v": "b"}),
            ("tr-b", 300, 10, {"v": "a"}),
            ("tr-c", 200, None, {}),
            ("tr-d", 300, 70, {"v": "c"}),
            ("tr-e", 50, 70, {"v": "a"}),
        ],
    )
    return client


def test_default_order_is_timestamp_desc_then_id(small):
    assert _ids(small.search_traces()) == ["tr-b", "tr-d", "tr-c", "tr-a", "tr-e"]


def test_absent_values_sort_last_both_ways(small):
    asc = _ids(small.search_traces(order_by=["tags.v"]))
    desc = _ids(small.search_traces(order_by=["tags.v DESC"]))
    assert asc == ["tr-b", "tr-e", "tr-a", "tr-d", "tr-c"]  # ties: timestamp DESC
    assert desc == ["tr-d", "tr-a", "tr-b", "tr-e", "tr-c"]
    assert _ids(small.search_traces(order_by=["execution_time_ms DESC"]))[-1] == "tr-c"
    assert _ids(small.search_traces(order_by=["execution_time_ms ASC"]))[-1] == "tr-c"


def test_order_by_errors(small):
    with pytest.raises(FilterSyntaxError, match="names timestamp_ms twice"):
        parse_order_by(["timestamp_ms", "timestamp DESC"])
    with pytest.raises(FilterSyntaxError, match="unknown order_by key 'color'"):
        parse_order_by(["color"])
    keys = parse_order_by(["tags.v DESC", "trace_id"])
    assert [str(k) for k in keys] == ["tags.v DESC", "trace_id ASC", "timestamp_ms DESC"]


def test_paging_with_keyset_tokens(small):
    first = small.search_traces(max_results=2)
    assert _ids(first) == ["tr-b", "tr-d"] and first.token
    second = small.search_traces(max_results=2, page_token=first.token)
    assert _ids(second) == ["tr-c", "tr-a"]
    third = small.search_traces(max_results=2, page_token=second.token)
    assert _ids(third) == ["tr-e"] and third.token is None


def test_tokens_stay_correct_when_traces_are_added_or_retagged_between_pages(small):
    first = small.search_traces(order_by=["tags.v"], max_results=2)
    assert _ids(first) == ["tr-b", "tr-e"]
    # A new trace that sorts before the page boundary, and a retag of an unseen trace:
    _put(small, [("tr-0", 999, 1, {"v": "a"})])
    small.set_trace_tag("tr-c", "other", "x")
    rest = small.search_traces(order_by=["tags.v"], max_results=10, page_token=first.token)
    assert _ids(rest) == ["tr-a", "tr-d", "tr-c"]  # nothing repeated, nothing skipped


def test_token_from_another_search_is_refused(small):
    token = small.search_traces(max_results=1).token
    with pytest.raises(InvalidQuery, match="different search"):
        small.search_traces(max_results=1, page_token=token, filter_string="tags.v = 'a'")
    with pytest.raises(InvalidQuery, match="invalid page token"):
        small.search_traces(page_token="garbage!")


def test_fluent_search_returns_all_by_default(small):
    tracetag.set_store(small.store.path)
    traces = tracetag.search_traces(filter_string="tags.v = 'a'")
    assert {t.info.trace_id for t in traces} == {"tr-b", "tr-e"}
    assert traces[0].info.execution_time_ms == 10 and traces[0].info.tags == {"v": "a"}
    assert len(tracetag.search_traces()) == 5


def test_experiment_filter(conformance_client):
    assert len(conformance_client.search_traces(["2"], max_results=None)) == 20
    assert len(conformance_client.search_traces(None, max_results=None)) == 320
    assert len(conformance_client.search_traces("1", max_results=None)) == 300


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_page_tokens_round_trip(cli, conformance_store):
    seen: list[str] = []
    token = None
    for _ in range(40):
        args = ["search", "-f", "status = 'ERROR'", "-n", "7", "-o", "ids"]
        if token:
            args += ["--page-token", token]
        result = cli(*args)
        seen += result.stdout.split()
        if "next page" not in result.stderr:
            break
        token = result.stderr.rsplit("--page-token ", 1)[1].strip()
    everything = cli("search", "-f", "status = 'ERROR'", "--all", "-o", "ids").stdout.split()
    assert seen == everything and len(everything) == 48


def test_pipes_get_every_match_and_tables_a_page(cli, conformance_store):
    result = cli("search", "-o", "ids")
    assert len(result.stdout.split()) == 320 and "next page" not in result.stderr
    assert len(cli("search").stdout.splitlines()) == 321  # TSV in a pipe: header + all
    table = cli("search", "-o", "table")
    assert len(ID_RE.findall(table.stdout)) == 100 and "next page" in table.stderr
    assert len(cli("search", "-o", "ids", "-n", "7").stdout.split()) == 7


def test_search_pipe_into_tag_set_tags_every_match(tmp_path):
    """The README's batch pipeline, in real processes, over more than a page of matches."""
    from tracetag.api import TracetagClient

    from .conftest import TRACES_JSONL, run_tracetag

    store = tmp_path / "store.json"
    client = TracetagClient(store)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.update_tags(filter_string="status = 'ERROR'", set={"environment": "other"})
    want = client.search_traces(filter_string="status = 'OK'", max_results=None)
    assert len(want) >= 250
    env = {"TRACETAG_STORE": str(store)}

    def pipe(search: str, tag: str) -> None:
        tt = f"{sys.executable} -m tracetag"
        proc = subprocess.run(
            f"{tt} {search} | {tt} {tag}",
            shell=True,
            capture_output=True,
            env={**os.environ, **env},
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr

    pipe("search -f \"status = 'OK'\" -o ids", "tag set - checked=true")
    tagged = client.search_traces(filter_string="tags.checked = 'true'", max_results=None)
    assert len(tagged) == len(want)
    # the default TSV piped in works too: its first column holds the ids
    pipe("search -f \"status = 'ERROR'\"", "tag set - checked=err")
    assert len(client.search_traces(filter_string="tags.checked = 'err'", max_results=None)) == (
        320 - len(want)
    )
    assert (
        run_tracetag(
            "tag",
            "set",
            "-",
            "ws=1",
            input=" ".join(t.info.trace_id for t in want[:3]).encode(),
            env=env,
        ).returncode
        == 0
    )
    assert len(client.search_traces(filter_string="tags.ws = '1'")) == 3


def test_cli_output_formats(cli, conformance_store):
    f = ["search", "-f", "tags.user_id = 'user_007'", "-x", "1", "--order-by", "timestamp_ms ASC"]
    ids = cli(*f, "-o", "ids").stdout.split()
    assert len(ids) == 4
    data = json.loads(cli(*f, "-o", "json").stdout)
    assert [t["trace_id"] for t in data["traces"]] == ids and data["next_page_token"] is None
    lines = cli(*f, "-o", "jsonl").stdout.splitlines()
    assert [json.loads(x)["trace_id"] for x in lines] == ids
    rows = list(csv.reader(io.StringIO(cli(*f, "-o", "csv").stdout)))
    assert rows[0] == ["trace_id", "time", "name", "status", "duration_ms", "tags"]
    assert [r[0] for r in rows[1:]] == ids and "user_id=user_007" in rows[1][5]
    tsv = cli(*f).stdout.splitlines()  # not a terminal: tab-separated by default
    assert tsv[0].split("\t")[0] == "trace_id" and [r.split("\t")[0] for r in tsv[1:]] == ids
    table = cli(*f, "-o", "table").stdout
    assert table.lstrip().startswith("trace_id") and "\x1b[" not in table
    assert "mlflow.traceName" not in table  # bookkeeping tags are hidden from listings


def test_cli_table_has_no_color_codes_with_no_color(cli, conformance_store):
    result = cli("--no-color", "search", "-n", "3", "-o", "table", env={"NO_COLOR": None})
    assert "\x1b[" not in result.stdout


def test_cli_explain_prints_tree_and_does_not_search(cli, tmp_path):
    result = cli(
        "--store",
        str(tmp_path / "none.json"),
        "search",
        "--explain",
        "-f",
        "status = 'ERROR' AND (tags.priority = 'high' OR execution_time_ms > 5s)",
        "--order-by",
        "tags.model_version",
    )
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "filter: status = 'ERROR' AND (tags.priority = 'high' OR execution_time_ms > 5000ms)",
        "  AND",
        "    Compare: status = 'ERROR'",
        "    OR",
        "      Compare: tags.priority = 'high'",
        "      Compare: execution_time_ms > 5000ms",
        "order: tags.model_version ASC, timestamp_ms DESC, trace_id ASC",
    ]
    assert not (tmp_path / "none.json").exists()


def test_mlflow_keyword_arguments(conformance_client, conformance_store):
    run_traces = conformance_client.search_traces(run_id="no-such-run", max_results=None)
    assert run_traces == []
    t = conformance_client.search_traces(["1"], "status = 'ERROR'", 3, include_spans=False)[0]
    assert t.data.spans == [] and t.info.status == "ERROR"
    tracetag.set_store(conformance_store)
    listed = tracetag.search_traces(filter_string="status = 'ERROR'", return_type="list")
    assert len(listed) == 48
    with pytest.raises(tracetag.InvalidInput, match="return_type"):
        tracetag.search_traces(return_type="arrow")


def test_run_id_argument_matches_the_run_id_attribute(client):
    from tracetag.model import Trace, TraceInfo

    client.log_traces(
        [
            Trace(TraceInfo(trace_id="tr-r1", metadata={"mlflow.sourceRun": "run-a"})),
            Trace(TraceInfo(trace_id="tr-r2", metadata={"mlflow.sourceRun": "run-b"})),
        ]
    )
    assert [t.info.trace_id for t in client.search_traces(run_id="run-a")] == ["tr-r1"]
    by_filter = client.search_traces(filter_string="run_id = 'run-b'")
    assert [t.info.trace_id for t in by_filter] == ["tr-r2"]


def test_pandas_return_type_without_pandas_is_a_clear_error(small, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(tracetag.InvalidInput, match="needs pandas installed"):
        small.search_traces(return_type="pandas")


def test_listing_times_are_utc_and_machine_readable_in_pipes(cli, conformance_store):
    from tracetag.filters.fields import parse_iso_ms

    f = ["search", "-f", "trace_id = 'tr-6663f3d7173cfa73b65948ca5fbc00b3'"]
    row = cli(*f).stdout.splitlines()[1].split("\t")
    assert row[1] == "2025-03-01T00:00:30.207Z"
    assert parse_iso_ms(row[1]) == 1740787230207  # round-trips into a filter date
    table = cli(*f, "-o", "table").stdout
    assert "time (UTC)" in table and "2025-03-01 00:00:30" in table
