"""The PostgreSQL backend on a real server (tests/pgcluster.py): what only a database has to
show. The behavioural suite (conformance cases, tag batches, dry run, strict, delete, paging,
import/export) runs on it through the ``backend`` fixture like on the local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

import tracetag
from tracetag import runtime
from tracetag.api import TracetagClient
from tracetag.backend import open_backend
from tracetag.filters import ast as A
from tracetag.filters import parse_filter
from tracetag.filters.evaluate import _as_number
from tracetag.model import Trace, TraceInfo
from tracetag.postgres.sql import compile_sql

from .conftest import TRACES_JSONL, run_tracetag
from .pgcluster import PASSWORD

HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash",
    "100%",
    "under_score",
    "$1",
    "x'; DROP TABLE tracetag_traces;--",
    "Zürich",
    "ǅemo",
    "KELVIN \u212a",
    "tab\there",
    "",
    " 12 ",
    "1e3",
    "nan",
    "inf",
    "1_000",
    "١٢",
]


def _hostile_traces() -> list[Trace]:
    return [
        Trace(
            TraceInfo(
                trace_id=f"tr-{i:032x}",
                timestamp_ms=1_700_000_000_000 + i,
                execution_time_ms=i * 7,
                status="ERROR" if i % 3 == 0 else "OK",
                tags={"v": value, "n": str(i)} if i % 4 else {"v": value},
                metadata={"m": value},
            )
        )
        for i, value in enumerate(HOSTILE)
    ]


# -- connecting --------------------------------------------------------------------------------


def test_connection_problems_are_one_line_naming_the_server_never_the_password(pg_cluster):
    cases = [
        (pg_cluster.password_url(password="wrong-" + PASSWORD), "password authentication failed"),
        (pg_cluster.url("no_such_db"), 'database "no_such_db" does not exist'),
        ("postgresql://someone@127.0.0.1:1/db", "Connection refused"),
        ("postgresql://someone@127.0.0.1:notaport/db", "invalid integer value"),
    ]
    for url, reason in cases:
        proc = run_tracetag("--store", url, "search")
        err = proc.stderr.decode()
        assert proc.returncode == 3, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert reason in err and PASSWORD not in err and "wrong-" not in err
        assert err.startswith("tracetag: error: postgresql://")


def test_a_password_url_works_and_is_shown_without_the_password(pg_cluster, cli):
    url = pg_cluster.password_url()
    pg_cluster.sql("GRANT ALL ON SCHEMA public TO tt_secret_user")
    info = json.loads(cli("--store", url, "store", "info", "-o", "json").stdout)
    assert info["traces"] == 0 and PASSWORD not in info["store"] and "***" in info["store"]


# -- schema ------------------------------------------------------------------------------------


def test_migrations_are_recorded_and_a_newer_schema_is_refused(pg_url, cli):
    assert cli("store", "migrate").stdout == "applied 0001_traces\n"
    assert cli("store", "migrate").stdout == "schema is up to date\n"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO tracetag_migrations (name) VALUES ('9999_from_the_future')")
    runtime.reset()
    result = cli("search")
    assert result.exit_code == 3
    assert "newer than this tracetag" in result.stderr and "9999_from_the_future" in result.stderr


def test_number_function_in_the_schema_reads_numbers_as_the_evaluator_does(pg_url):
    TracetagClient(pg_url).info()  # creates the schema
    samples = [*HOSTILE, "12", "-3.5", "+.5", "5.", "1e99", "1e100", "9" * 201, "0x10", "1 2"]
    with psycopg.connect(pg_url) as conn:
        for s in samples:
            got = conn.execute("SELECT tracetag_number(%s)", (s,)).fetchone()[0]
            assert got == _as_number(s), s


# -- filters as SQL ----------------------------------------------------------------------------


FILTERS = [
    "tags.v = 'it\\'s'",
    'tags.v = "say \\"hi\\""',
    "tags.v = 'back\\\\slash'",
    "tags.v LIKE '100\\%'",
    "tags.v LIKE '%\\_%'",
    "tags.v LIKE 'under_score'",
    "tags.v = '$1'",
    "tags.v = 'x\\'; DROP TABLE tracetag_traces;--'",
    "tags.v ILIKE 'zÜRICH'",
    "tags.v ILIKE 'kelvin k'",
    "tags.v ILIKE '%E%'",
    "tags.v NOT ILIKE '%e%'",
    "tags.v RLIKE '^[0-9 ]+$'",
    "tags.v NOT RLIKE 'a'",
    "tags.v > 5",
    "tags.v <= 1000",
    "NOT tags.v > 5",
    "tags.v IN (12, 1000)",
    "tags.v NOT IN (12)",
    "tags.v IN ('$1', 'Zürich')",
    "tags.v NOT IN ('$1', 'Zürich')",
    "tags.n IS NULL",
    "tags.n IS NOT NULL",
    "NOT tags.n IS NULL",
    "tags.n = '1' OR tags.n IS NULL",
    "NOT (tags.n > 3 AND status = 'ERROR')",
    "metadata.m LIKE '%a%' AND execution_time_ms >= 14",
    "execution_time_ms > 0.05s",
    "timestamp_ms > '2023-11-14T22:13:20.005Z'",
    "end_time_ms < 1700000000050",
    "trace_id LIKE 'tr-%1'",
    "status IN ('ERROR') AND NOT tags.v = ''",
    "name IS NULL",
    "tags.missing != 'x'",
    "NOT tags.missing = 'x'",
]


@pytest.fixture
def both(pg_url, tmp_path):
    """The same hostile traces in a local store and in a database."""
    traces = _hostile_traces()
    local = TracetagClient(tmp_path / "local.json")
    local.log_traces(traces)
    db = TracetagClient(pg_url)
    db.log_traces(traces)
    return local, db


@pytest.mark.parametrize("text", FILTERS)
def test_filters_give_the_local_evaluators_answers_in_order_and_pages(both, text):
    local, db = both
    node = parse_filter(text)
    assert node is not None

    def pages(client):
        seen, token = [], None
        for _ in range(30):
            page = client.search_traces(
                filter_string=text,
                max_results=2,
                order_by=["tags.v DESC", "execution_time_ms"],
                page_token=token,
            )
            seen += [t.info.trace_id for t in page]
            token = page.token
            if not token:
                return seen
        raise AssertionError("paging did not end")

    expected = [t.info.trace_id for t in local.search_traces(filter_string=text, max_results=None)]
    assert [t.info.trace_id for t in db.search_traces(filter_string=text, max_results=None)] == (
        expected
    )
    assert pages(db) == pages(local)


def test_values_are_bound_parameters_never_sql_text():
    for value in HOSTILE[:9]:
        node = A.Compare(A.Field("tag", value), "=", A.String(value))
        compiled = compile_sql(node, 0)
        if value:
            assert value not in compiled.sql
        assert compiled.params.count(f'{{"{value}": "{value}"}}') <= 1


def test_which_filters_run_wholly_in_the_database():
    exact = [
        "tags.user_id = 'user_017'",
        "tags.environment = 'production' AND execution_time_ms > 5000",
        "status = 'ERROR' OR tags.retries > 2",
        "NOT tags.x IS NULL AND tags.y IN ('a', 'b')",
        "tags.model LIKE 'v2%'",
    ]
    superset = ["span.type = 'LLM'", "tags.x RLIKE 'a'", "tags.x ILIKE 'é'", "prompt = 'p/1'"]
    for text in exact:
        assert compile_sql(parse_filter(text), 0).exact, text
    for text in superset:
        assert not compile_sql(parse_filter(text), 0).exact, text
    # A span condition narrows by the words it needs in the span JSON, where it must hold.
    llm = compile_sql(parse_filter("span.type = 'LLM'"), 0)
    assert "strpos(sp.spans, %s)" in llm.sql and llm.params == ["LLM"]
    assert compile_sql(parse_filter("NOT span.type = 'LLM'"), 0).sql == "(NOT FALSE)"


# -- writes ------------------------------------------------------------------------------------


def test_a_tag_batch_by_filter_is_one_transaction(pg_url, cli):
    db = TracetagClient(pg_url)
    db.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id=f"tr-{i:032x}", timestamp_ms=i, status="ERROR" if i % 2 else "OK"
                )
            )
            for i in range(20_000)
        ]
    )
    store = open_backend(pg_url)
    before = db.info()["writes"]
    result = cli("tag", "set", "--filter", "status = 'ERROR'", "needs_review=true")
    assert (result.exit_code == 0 and result.stderr.startswith("10,000 traces changed")) or (
        "10000 traces changed" in result.stderr
    ), result.stderr
    assert db.info()["writes"] == before + 1 and store is open_backend(pg_url)
    ids = cli("search", "-f", "tags.needs_review = 'true'", "--all", "-o", "ids").stdout.split()
    assert len(ids) == 10_000


def test_store_copy_local_to_database_and_back_exports_the_same_bytes(pg_url, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_tracetag("--store", str(a), "import", str(TRACES_JSONL)).returncode == 0
    tracetag.set_store(str(a))
    TracetagClient(a).set_trace_tags("tr-6663f3d7173cfa73b65948ca5fbc00b3", {"late": "tag"})
    first = run_tracetag("store", "copy", str(a), pg_url)
    assert first.returncode == 0 and first.stderr == b"copied 320 traces (320 new, 0 updated)\n"
    again = run_tracetag("store", "copy", str(a), pg_url)
    assert again.stderr == b"copied 320 traces (0 new, 320 updated)\n"  # never duplicated
    back = run_tracetag("store", "copy", pg_url, str(b))
    assert back.returncode == 0
    exports = [run_tracetag("--store", str(s), "export").stdout for s in (a, b)]
    assert exports[0] == exports[1] and exports[0].count(b"\n") == 320
    part = run_tracetag("store", "copy", pg_url, str(tmp_path / "c.json"), "-f", "status = 'ERROR'")
    assert part.stderr == b"copied 48 traces (48 new, 0 updated)\n"
    missing = run_tracetag("store", "copy", str(tmp_path / "nope.json"), pg_url)
    assert missing.returncode == 1 and b"no tracetag store here" in missing.stderr


WORKER = textwrap.dedent(
    """
    import sys
    import tracetag
    url, me = sys.argv[1], sys.argv[2]
    tracetag.set_store(url)

    @tracetag.trace
    def handle(i):
        tracetag.update_current_trace(tags={"proc": me, "i": str(i)})
        return i

    for i in range(60):
        handle(i)
    tracetag.flush()
    client = tracetag.TracetagClient(url)
    client.update_tags(filter_string=f"tags.proc = '{me}'", set={"tagged_by": me})
    print("done", me, flush=True)
    """
)


def test_eight_processes_recording_and_tagging_at_once_lose_nothing(pg_url):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_url, f"p{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(8)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    traces = TracetagClient(pg_url).search_traces(max_results=None)
    assert len(traces) == 8 * 60
    seen = sorted((t.info.tags["proc"], int(t.info.tags["i"])) for t in traces)
    assert seen == sorted((f"p{n}", i) for n in range(8) for i in range(60))
    assert all(t.info.tags["tagged_by"] == t.info.tags["proc"] for t in traces)
    assert all(len(t.data.spans) == 1 for t in traces[:10])


def test_recording_reads_its_own_writes(pg_url):
    tracetag.set_store(pg_url)

    @tracetag.trace(span_type="LLM")
    def answer(q: str) -> str:
        tracetag.update_current_trace(tags={"environment": "production"})
        return q.upper()

    assert answer("hi") == "HI"
    trace = tracetag.get_trace(tracetag.get_last_active_trace_id())
    assert trace.info.tags["environment"] == "production"
    assert trace.data.spans[0].span_type == "LLM" and trace.data.spans[0].outputs == "HI"
    found = tracetag.search_traces(filter_string="span.type = 'LLM'")
    assert [t.info.trace_id for t in found] == [trace.info.trace_id]


@pytest.mark.parametrize(
    "group_by, filter_string",
    [
        (["tags.model_version"], None),
        (["tags.environment", "status"], "execution_time_ms > 100"),
        (["experiment_id"], "tags.retries > 1 OR tags.city IS NULL"),
        (["span.type"], None),  # per span: read from documents
        (["tags.model_version"], "span.name = 'retrieve'"),  # not exact in SQL: documents
    ],
)
def test_stats_and_tag_listings_in_the_database_equal_the_local_stores(
    pg_url, tmp_path, group_by, filter_string
):
    local = TracetagClient(tmp_path / "local.json")
    local.import_traces(TRACES_JSONL.read_bytes())
    db = TracetagClient(pg_url)
    db.copy_from(local)
    for sort in ("count", "p95", "group"):
        a = local.stats(group_by, filter_string, sort=sort)
        b = db.stats(group_by, filter_string, sort=sort)
        assert (a.rows, a.unit, a.group_names) == (b.rows, b.unit, b.group_names)
    assert local.tag_keys(filter_string) == db.tag_keys(filter_string)
    assert local.tag_values("city", filter_string) == db.tag_values("city", filter_string)
    assert local.list_experiments() == db.list_experiments()


def test_stats_run_in_the_database_when_the_filter_allows(pg_url):
    db = TracetagClient(pg_url)
    db.import_traces(TRACES_JSONL.read_bytes())
    by_model = [A.Field("tag", "model_version")]
    with db.snapshot() as view:
        rows = view.group_rows(by_model, parse_filter("tags.retries > 1"), 0, None)
        assert rows is not None and sum(r["count"] for r in rows) > 0
        assert view.group_rows(by_model, parse_filter("span.type = 'LLM'"), 0, None) is None
        assert view.tag_key_rows(None, 0, ["1"]) is not None


def test_the_readmes_postgresql_commands_run(pg_url, tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## On PostgreSQL") :]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    local = tmp_path / "mine.json"
    assert run_tracetag("--store", str(local), "demo", "-n", "30").returncode == 0
    ran = 0
    for line in block.splitlines():
        command = line.split("  #")[0].strip()
        if not command.startswith("tracetag "):
            continue
        command = command.replace("~/.local/share/tracetag/store.json", str(local))
        proc = subprocess.run(
            ["bash", "-c", command.replace("tracetag ", f"{sys.executable} -m tracetag ", 1)],
            env={**os.environ, "TRACETAG_STORE": pg_url},
            capture_output=True,
        )
        assert proc.returncode == 0, (command, proc.stderr)
        ran += 1
    assert ran == 3
    found = TracetagClient(pg_url).search_traces(filter_string="tags.environment = 'production'")
    assert len(found) > 0


def test_explain_says_whether_postgresql_decides_alone(pg_url, cli):
    exact = cli("search", "--explain", "-f", "tags.env = 'prod' OR tags.n > 3").stdout
    assert "PostgreSQL evaluates the whole filter" in exact
    narrowed = cli("search", "--explain", "-f", "span.type = 'LLM'").stdout
    assert "tracetag decides" in narrowed


def test_an_import_whose_experiment_name_is_taken_gets_a_numbered_name(pg_url, cli):
    # Experiment names are unique in a database: "experiment-5" exists under another id.
    assert cli("experiments", "create", "experiment-5").exit_code == 0
    trace = Trace(TraceInfo(trace_id="tr-" + "5" * 32, experiment_id="5", timestamp_ms=1))
    result = cli("import", "-", input=trace.to_json())
    assert result.exit_code == 0, result.stderr
    names = {e["experiment_id"]: e["name"] for e in TracetagClient(pg_url).list_experiments()}
    assert names["5"] == "experiment-5 (2)" and "experiment-5" in names.values()
