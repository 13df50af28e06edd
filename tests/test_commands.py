"""Commands not covered elsewhere: demo, experiments, store info/compact/check."""

from __future__ import annotations

import json
from pathlib import Path

from tracetag.api import TracetagClient


def test_demo_records_through_the_tracing_api(cli, store_path):
    result = cli("demo", "--traces", "60", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "recorded 60 traces into experiment 1 (demo)" in result.stderr
    client = TracetagClient(store_path)
    traces = client.search_traces(max_results=None)
    assert len(traces) == 60
    envs = {t.info.tags.get("environment", t.info.tags.get("env")) for t in traces}
    assert {"production", "staging"} <= envs
    assert any(t.info.status == "ERROR" for t in traces)
    t = traces[0]
    assert t.info.experiment_id == "1" and len(t.data.spans) >= 2
    roots = [s for s in t.data.spans if s.parent_id is None]
    assert len(roots) == 1 and roots[0].span_type == "CHAIN"
    # The same seed gives the same data shape; a second run adds, never replaces.
    assert cli("demo", "--traces", "5").exit_code == 0
    assert len(client.search_traces(max_results=None)) == 65


def test_experiments_create_and_list(cli, store_path):
    assert cli("experiments", "create", "chatbot").stdout == "1\n"
    assert cli("experiments", "create", "chatbot").stdout == "1\n"  # same name, same id
    assert cli("experiments", "create", "batch jobs").stdout == "2\n"
    rows = json.loads(cli("experiments", "list", "-o", "json").stdout)
    assert [(r["experiment_id"], r["name"], r["traces"]) for r in rows] == [
        ("0", "Default", 0),
        ("1", "chatbot", 0),
        ("2", "batch jobs", 0),
    ]
    assert cli("experiments", "create", "  ").exit_code == 2


def test_store_info_compact_and_check(cli, conformance_store):
    info = json.loads(cli("store", "info", "-o", "json").stdout)
    assert info["traces"] == 320 and info["store"] == str(conformance_store)
    cli("tag", "set", "tr-6663f3d7173cfa73b65948ca5fbc00b3", "x=1")
    result = cli("store", "compact")
    assert result.exit_code == 0
    check = json.loads(cli("store", "check", "-o", "json").stdout)
    assert check["ok"] and check["traces"] == 320
    if isinstance(conformance_store, Path):  # the local store folds its journal
        assert result.stdout.startswith("folded 1 journal records")
        assert check["journal_records"] == 0
    else:
        assert result.stdout.startswith("analyzed")
    text = cli("store", "check").stdout
    assert text.rstrip().endswith("ok")


def test_experiment_option_takes_names(cli, store_path):
    assert cli("demo", "--traces", "20").exit_code == 0
    by_name = cli("search", "-x", "demo", "--all", "-o", "ids").stdout.split()
    by_id = cli("search", "-x", "1", "--all", "-o", "ids").stdout.split()
    assert by_name == by_id and len(by_id) == 20
    assert cli("search", "-x", "Default", "--all", "-o", "ids").stdout == ""
    assert cli("search", "-x", "no-such", "--all", "-o", "ids").stdout == ""
