"""tracetag stats and tag discovery, against numbers computed by hand."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tracetag.analytics import nearest_rank
from tracetag.api import TracetagClient
from tracetag.model import Trace, TraceInfo


@pytest.fixture
def grouped(client: TracetagClient):
    traces = []
    n = 0

    def add(tags, ms, status="OK"):
        nonlocal n
        n += 1
        traces.append(
            Trace(
                TraceInfo(
                    trace_id=f"tr-{n:032x}",
                    timestamp_ms=n,
                    execution_time_ms=ms,
                    status=status,
                    tags=tags,
                )
            )
        )

    for i, ms in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]):
        add({"model_version": "v1", "env": "prod"}, ms, "ERROR" if i < 3 else "OK")
    add({"model_version": "v2", "env": "prod"}, 5)
    for ms in (1, 2, 3):
        add({"env": "dev"}, ms)
    add({"env": "dev"}, None, "IN_PROGRESS")
    client.log_traces(traces)
    return client


def test_nearest_rank_by_hand():
    values = [15, 20, 35, 40, 50]
    assert nearest_rank(values, 30) == 20  # rank ceil(1.5) = 2
    assert nearest_rank(values, 40) == 20  # rank 2
    assert nearest_rank(values, 50) == 35  # rank ceil(2.5) = 3
    assert nearest_rank(values, 100) == 50
    assert nearest_rank([7], 99) == 7
    assert nearest_rank([], 50) is None


def test_stats_by_tag_json(grouped, cli):
    result = cli("stats", "--group-by", "tags.model_version", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["percentiles"] == "nearest-rank"
    groups = {tuple(g["group"]): g for g in data["groups"]}
    v1 = groups[("v1",)]
    assert (v1["count"], v1["errors"], v1["error_rate"]) == (10, 3, 0.3)
    assert (v1["mean_ms"], v1["p50_ms"], v1["p95_ms"], v1["p99_ms"], v1["max_ms"]) == (
        55,
        50,
        100,
        100,
        100,
    )
    none = groups[("(none)",)]  # traces lacking the key form their own group
    assert (
        none["count"] == 4 and none["mean_ms"] == 2 and none["p50_ms"] == 2 and none["p95_ms"] == 3
    )
    assert [g["group"] for g in data["groups"]] == [["v1"], ["(none)"], ["v2"]]  # by count


def test_stats_two_keys_filter_sort_and_csv(grouped, cli):
    result = cli(
        "stats",
        "-g",
        "tags.env",
        "-g",
        "status",
        "-f",
        "tags.env = 'prod'",
        "--sort",
        "mean",
        "-o",
        "csv",
    )
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "tags.env",
        "status",
        "count",
        "errors",
        "error_rate",
        "mean_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
    ]
    assert [r[:3] for r in rows[1:]] == [["prod", "OK", "8"], ["prod", "ERROR", "3"]]
    assert rows[2][3] == "3" and rows[2][5] == "20.0" and rows[2][9] == "30"


def test_stats_table_and_errors(grouped, cli):
    table = cli("stats", "-g", "tags.model_version", "-o", "table")
    assert "v1" in table.stdout and "55ms" in table.stdout and "█" in table.stdout
    assert "15 traces in 3 groups" in table.stderr
    bad = cli("stats", "-g", "colour")
    assert bad.exit_code == 2 and "cannot group by 'colour'" in bad.stderr
    assert cli("stats", "-g", "status", "--sort", "nope").exit_code == 2


def test_tag_keys_and_values(grouped, cli):
    keys = json.loads(cli("tags", "keys", "-o", "json").stdout)
    assert keys == [
        {"key": "env", "traces": 15, "values": 2},
        {"key": "model_version", "traces": 11, "values": 2},
    ]
    values = json.loads(cli("tags", "values", "env", "-o", "json").stdout)
    assert values == [{"value": "prod", "traces": 11}, {"value": "dev", "traces": 4}]
    filtered = json.loads(
        cli("tags", "values", "model_version", "-f", "status = 'ERROR'", "-o", "json").stdout
    )
    assert filtered == [{"value": "v1", "traces": 3}]
    tsv = cli("tags", "keys").stdout.splitlines()
    assert tsv[0] == "key\ttraces\tvalues" and tsv[1] == "env\t15\t2"
