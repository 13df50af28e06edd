"""``stats`` through the columns beside a big base (tracetag/store/columns.py): the same rows
as grouping the documents, in every journal state, and documents read whenever the columns
cannot answer exactly."""

from __future__ import annotations

import pytest
from conftest import TRACES_JSONL

from tracetag import analytics, runtime
from tracetag.api import TracetagClient
from tracetag.model import Trace, TraceInfo
from tracetag.store import Snapshot, Store, columns
from tracetag.store.columns import columns_path

GROUPINGS = [
    [],
    ["tags.mlflow.traceName"],
    ["status"],
    ["experiment_id"],
    ["tags.environment", "status"],
    ["tags.no_such_key"],
    ["tags.environment", "tags.model_version"],
]


def _store(path, indexed: bool) -> Store:
    store = Store(path)
    store.id_index_min_bytes = 0 if indexed else 1 << 62
    return store


def _stats(path, indexed: bool, group_by, **kw):
    result = TracetagClient(_store(path, indexed)).stats(group_by, **kw)
    return sorted(result.rows, key=lambda r: r["group"])


@pytest.fixture
def indexed(store_path):
    """The conformance traces, compacted, with their indexes and columns built."""
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    with _store(store_path, True).snapshot() as snap:
        snap.get("tr-any")  # the first lookup builds the indexes
    assert columns_path(store_path).exists()
    return store_path


def _journal_changes(path) -> None:
    """Every kind of journal record over the indexed base: tags set and deleted (changing
    groups), traces deleted, added and replaced."""
    client = TracetagClient(path)
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    client.update_tags(ids[:40], set={"environment": "staging", "model_version": "v9"})
    client.update_tags(ids[40:60], delete=["environment"])
    client.delete_traces(trace_ids=ids[60:70])
    replaced = client.get_trace(ids[70]).info
    new = [
        TraceInfo(
            trace_id=f"tr-new{i:04d}",
            timestamp_ms=(1_700_000_000_000 if i < 6 else 1_900_000_000_000) + i,  # (older, newer)
            execution_time_ms=None if i == 3 else i * 7,
            status="ERROR" if i % 2 else "OK",
            tags={"environment": "production"} if i < 5 else {},
        )
        for i in range(8)
    ]
    again = TraceInfo(**{**replaced.to_dict(), "status": "ERROR", "tags": {"environment": "x"}})
    client.log_traces([Trace(t) for t in [*new, again]])


@pytest.mark.parametrize("changed", [False, True], ids=["compacted", "journal"])
def test_stats_through_the_columns_equal_grouping_the_documents(indexed, monkeypatch, changed):
    if changed:
        _journal_changes(indexed)
    expected = {tuple(g): _stats(indexed, False, g) for g in GROUPINGS}
    expected_exp = _stats(indexed, False, ["tags.environment"], experiment_ids=["0"])
    filtered = {f: _stats(indexed, False, ["status"], filter_string=f) for f in FILTERS[1:]}
    assert expected[()][0]["count"] > 300 and len(expected[("tags.environment", "status")]) > 3

    def refuse(*_a, **_k):
        raise AssertionError("grouped the documents")

    monkeypatch.setattr(analytics, "_group_docs", refuse)
    for g in GROUPINGS:
        assert _stats(indexed, True, g) == expected[tuple(g)], g
    assert _stats(indexed, True, ["tags.environment"], experiment_ids=["0"]) == expected_exp
    for f, rows in filtered.items():
        assert _stats(indexed, True, ["status"], filter_string=f) == rows, f


def test_the_cli_shows_the_same_stats(indexed, cli, monkeypatch):
    monkeypatch.setattr(runtime.store_for(indexed), "id_index_min_bytes", 0)  # (the CLI's)
    args = ["--store", str(indexed), "stats", "-g", "tags.environment", "-g", "status"]
    through_columns = []
    real = Snapshot.group_rows
    monkeypatch.setattr(
        Snapshot, "group_rows", lambda *a: through_columns.append(real(*a)) or through_columns[-1]
    )
    for output in ("json", "table"):
        got = cli(*args, "-o", output)
        assert got.exit_code == 0 and through_columns.pop() is not None
        monkeypatch.setattr(Snapshot, "group_rows", lambda *a: None)
        assert got.stdout == cli(*args, "-o", output).stdout
        monkeypatch.setattr(
            Snapshot,
            "group_rows",
            lambda *a: through_columns.append(real(*a)) or through_columns[-1],
        )


@pytest.mark.parametrize(
    "why",
    ["filter", "span field", "too many values", "damaged", "too many changes", "metadata"],
)
def test_what_the_columns_cannot_answer_groups_the_documents(indexed, monkeypatch, why):
    group_by, kw = ["tags.environment"], {}
    if why == "filter":
        kw["filter_string"] = "tags.environment = 'production' AND name LIKE 'c%'"
    elif why == "span field":
        group_by = ["span.type"]
    elif why == "metadata":
        group_by = ["metadata.mlflow.sourceRun"]
    elif why == "too many values":
        # A key of more values than a column holds (an id, a prompt) has no column.
        monkeypatch.setattr(columns, "MAX_VALUES", 2)
        columns_path(indexed).unlink()
        with _store(indexed, True).snapshot() as snap:
            snap.get("tr-any")
    elif why == "damaged":
        path = columns_path(indexed)
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif why == "too many changes":
        monkeypatch.setattr(columns, "_MAX_TOUCHED", 5)
        _journal_changes(indexed)
    expected = _stats(indexed, False, group_by, **kw)
    seen = []
    real = analytics._group_docs
    monkeypatch.setattr(analytics, "_group_docs", lambda *a, **k: seen.append(1) or real(*a, **k))
    assert _stats(indexed, True, group_by, **kw) == expected
    assert seen == [1]
    if why == "damaged":
        assert not columns_path(indexed).exists()  # (built again with the other indexes)


FILTERS = [
    None,
    "status = 'OK'",
    "status != 'OK'",
    "tags.environment = 'production' AND execution_time_ms > 1000",
    "tags.environment IN ('production', 'staging') OR status = 'ERROR'",
    "tags.environment IS NULL",
    "NOT tags.environment LIKE 'prod%'",
    "tags.model_version = 'v9' OR execution_time_ms <= 500",
]


def _ids(path, indexed: bool, filter_string, **kw) -> list[str]:
    client = TracetagClient(_store(path, indexed))
    page = client.search_page(filter_string=filter_string, max_results=None, ids_only=True, **kw)
    return page.trace_ids()


@pytest.mark.parametrize("changed", [False, True], ids=["compacted", "journal"])
def test_every_match_s_id_through_the_columns_equals_the_scan(indexed, monkeypatch, changed):
    if changed:
        _journal_changes(indexed)
    expected = {f: _ids(indexed, False, f) for f in FILTERS}
    expected_exp = _ids(indexed, False, "status = 'OK'", experiment_ids=["0"])
    assert len({len(v) for v in expected.values()}) > 4  # (filters that select differently)

    def refuse(*_a, **_k):
        raise AssertionError("read the documents")

    monkeypatch.setattr(Snapshot, "select_raw", refuse)
    for f in FILTERS:
        assert _ids(indexed, True, f) == expected[f], f
    assert _ids(indexed, True, "status = 'OK'", experiment_ids=["0"]) == expected_exp


@pytest.mark.parametrize(
    "filter_string",
    ["metadata.mlflow.sourceRun = 'x'", "name = 'x'", "span.type = 'LLM'", "timestamp_ms > 5"],
)
def test_a_filter_on_other_fields_reads_the_documents(indexed, monkeypatch, filter_string):
    _journal_changes(indexed)
    expected = _ids(indexed, False, filter_string)
    seen = []
    real = Snapshot.select_raw
    monkeypatch.setattr(Snapshot, "select_raw", lambda *a, **k: seen.append(1) or real(*a, **k))
    assert _ids(indexed, True, filter_string) == expected and seen == [1]


def test_search_all_ids_in_the_cli_is_the_same_either_way(indexed, cli, monkeypatch):
    _journal_changes(indexed)
    args = ["--store", str(indexed), "search", "-f", "status = 'OK'", "--all", "-o", "ids"]
    expected = cli(*args).stdout
    monkeypatch.setattr(runtime.store_for(indexed), "id_index_min_bytes", 0)  # (the CLI's)
    monkeypatch.setattr(Snapshot, "select_raw", None)  # (calling it would fail the command)
    got = cli(*args)
    assert got.exit_code == 0 and got.stdout == expected and expected.count("\n") > 250


@pytest.mark.parametrize("changed", [False, True], ids=["compacted", "journal"])
def test_tag_values_through_the_columns_equal_counting_the_documents(indexed, monkeypatch, changed):
    if changed:
        _journal_changes(indexed)
    cases = [
        ("environment", {}),
        ("environment", {"filter_string": "status = 'ERROR'"}),
        ("model_version", {"experiment_ids": ["0"]}),
        ("no_such_key", {}),
    ]

    def values(indexed_: bool, key, kw):
        return TracetagClient(_store(indexed, indexed_)).tag_values(key, **kw)

    expected = [values(False, key, kw) for key, kw in cases]
    assert len(expected[0]) >= 3
    monkeypatch.setattr(Snapshot, "select_raw", None)  # (calling it would fail)
    assert [values(True, key, kw) for key, kw in cases] == expected
