"""PostgreSQL backend benchmarks: a throwaway server (tests/pgcluster.py), a small and a big
database, and every figure as a whole ``tracetag`` process next to the same command on the
small database (the ratio is the point: a selective command should not grow with the data).
The local store's figures for the same commands at the big size are printed beside them.

    python benchmarks/postgres.py                    # 100,000 traces
    python benchmarks/postgres.py --traces 1000000   # the full-size run (about 15 minutes)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pgcluster  # noqa: E402
from run import TT, make_traces, run  # noqa: E402

from tracetag.postgres import PgStore  # noqa: E402
from tracetag.store import Store  # noqa: E402
from tracetag.store.compactor import build_id_index  # noqa: E402

CHUNK = 20_000
USER = "user_017"


def chunks(n: int):
    """``n`` traces in chunks, each from its own seed (a million never sit in memory at once),
    with 1,000 users so that one user is ~0.1% of the traces."""
    done = 0
    seed = 1
    while done < n:
        size = min(CHUNK, n - done)
        batch = make_traces(size, seed=seed)
        for i, (doc, _spans) in enumerate(batch):
            doc["tags"]["user_id"] = f"user_{(done + i) * 7919 % 1000:03d}"
            doc["timestamp_ms"] += done * 1000
        yield batch
        done += size
        seed += 1


def fill_pg(store: PgStore, n: int) -> float:
    """Traces per second through ``put_traces`` (COPY into a temporary table, one upsert)."""
    spent = 0.0
    for batch in chunks(n):
        t = time.perf_counter()
        store.put_traces(batch, count_replaced=False)
        spent += time.perf_counter() - t
    t = time.perf_counter()
    store.compact()  # ANALYZE: fresh statistics, as autovacuum would give a live database
    spent += time.perf_counter() - t
    return n / spent


def fill_local(path: Path, n: int) -> None:
    store = Store(path)
    for batch in chunks(n):
        store.put_traces(batch, count_replaced=False)
    store.compact()
    # Its indexes now, as a store that has been in use has them (the first lookup would have a
    # process build them beside the commands measured, and those would scan meanwhile).
    build_id_index(store)


PRODUCTION = "tags.environment = 'production' AND execution_time_ms > 5000"
COMMANDS = [
    ("search user_id (~0.1%)", ["search", "-f", f"tags.user_id = '{USER}'", "-o", "ids"]),
    ("search production AND > 5 s, top 100", ["search", "-f", PRODUCTION, "-n", "100"]),
    ("tag set --filter user_id", ["tag", "set", "--filter", f"tags.user_id = '{USER}'", "r=N"]),
    ("stats --group-by tags.model_version", ["stats", "--group-by", "tags.model_version"]),
]


def timed(store: str, args: list[str], repeat: int) -> float:
    times = []
    for i in range(repeat):
        a = [x.replace("r=N", f"reviewed=yes-{i}") for x in args]
        times.append(run([*TT, "--store", store, *a]))
    return statistics.median(times)


def mlflow_per_tag(cluster: pgcluster.Cluster, n: int = 200) -> float | None:
    """Seconds per ``MlflowClient().set_trace_tag`` on an ``mlflow server`` whose backend store
    is a database of this cluster, over ``n`` traces copied into it (None: no MLflow)."""
    import mlflowserver

    backend = cluster.create_database("mlflow").replace("postgresql://", "postgresql+psycopg://")
    server, _why = mlflowserver.start(workers=1, backend=backend)
    if server is None:
        return None
    try:
        from mlflow import MlflowClient

        from tracetag.api import TracetagClient

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "subset.json"
            Store(local).put_traces(make_traces(n))
            run([*TT, "store", "copy", str(local), server.url])
        ids = [t.info.trace_id for t in TracetagClient(server.url).search_traces(max_results=n)]
        client = MlflowClient(tracking_uri=server.url)
        start = time.perf_counter()
        for tid in ids:
            client.set_trace_tag(tid, "reviewed", "yes")
        return (time.perf_counter() - start) / len(ids)
    finally:
        server.stop()


def errors_row(
    big: str, local: str | None, mlflow: float | None
) -> list[tuple[str, str, str, str]]:
    """``tag set --filter status = 'ERROR'``: one transaction over ~10% of the traces; the
    time per tag set, against MLflow's one HTTP request per (trace, key) on an MLflow server
    over PostgreSQL (``mlflow``: seconds per call, measured in the same run)."""
    from tracetag.api import TracetagClient

    before = TracetagClient(big).info()["writes"]
    errors = ["tag", "set", "--filter", "status = 'ERROR'", "err=1"]
    took = run([*TT, "--store", big, *errors])
    writes = TracetagClient(big).info()["writes"] - before
    tagged = len(
        TracetagClient(big).search_traces(filter_string="tags.err = '1'", max_results=None)
    )
    per_tag = took / max(tagged, 1) * 1000
    loc = ""
    if local:
        loc = f"{run([*TT, '--store', local, *errors]):.2f} s"
    return [
        (
            f"tag set --filter status = 'ERROR' ({tagged:,})",
            f"{took:.2f} s, {writes} transaction",
            "target <= 5 s",
            loc,
        ),
        (
            "  per tag vs MLflow server on PostgreSQL",
            f"{per_tag * 1000:.1f} µs per tag",
            "(no MLflow installed)"
            if mlflow is None
            else f"set_trace_tag {mlflow * 1000:.1f} ms: {mlflow * 1000 / per_tag:,.0f}x faster",
            "",
        ),
    ]


def schema_choice(cluster: pgcluster.Cluster, n: int) -> None:
    """Tags as ``jsonb`` with a GIN index (the schema) against MLflow's key/value table
    ``trace_tags(key, value, trace_id)`` with a (key, value) index, on the same ``n`` traces:
    a selective lookup, the production-and-slow top 100, and tagging ~10% of the traces."""
    import psycopg

    url = cluster.create_database("schemas")
    fill_pg(PgStore(url), n)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE kv_tags (trace_id text, key text, value text, "
            "PRIMARY KEY (trace_id, key))"
        )
        conn.execute(
            "INSERT INTO kv_tags SELECT trace_id, e.key, e.value FROM tracetag_traces, "
            "jsonb_each_text(tags) AS e"
        )
        conn.execute("CREATE INDEX kv_tags_kv ON kv_tags (key, value)")
        conn.execute("ANALYZE")
        queries = {
            "user_id lookup": (
                "SELECT trace_id FROM tracetag_traces WHERE tags @> %s::jsonb",
                "SELECT trace_id FROM kv_tags WHERE key = 'user_id' AND value = %s",
                [f'{{"user_id": "{USER}"}}'],
                [USER],
            ),
            "production AND > 5 s, top 100": (
                'SELECT trace_id FROM tracetag_traces WHERE tags @> \'{"environment": '
                '"production"}\' AND execution_time_ms > 5000 ORDER BY timestamp_ms DESC '
                'NULLS LAST, trace_id COLLATE "C" LIMIT 100',
                "SELECT t.trace_id FROM tracetag_traces t JOIN kv_tags k ON k.trace_id = "
                "t.trace_id AND k.key = 'environment' AND k.value = 'production' WHERE "
                "t.execution_time_ms > 5000 ORDER BY t.timestamp_ms DESC NULLS LAST, "
                't.trace_id COLLATE "C" LIMIT 100',
                [],
                [],
            ),
        }
        print(f"\nTags as jsonb + GIN vs a key/value table, {n:,} traces (ms, median of 5)\n")
        for label, (jsonb_sql, kv_sql, p1, p2) in queries.items():
            a = _median_ms(conn, jsonb_sql, p1)
            b = _median_ms(conn, kv_sql, p2)
            print(f"  {label:32} jsonb {a:8.2f}   key/value {b:8.2f}")
        ids = [
            r[0]
            for r in conn.execute("SELECT trace_id FROM tracetag_traces WHERE status = 'ERROR'")
        ]
        with conn.transaction():
            t = time.perf_counter()
            conn.execute(
                'UPDATE tracetag_traces SET tags = tags || \'{"reviewed": "yes"}\' '
                "WHERE trace_id = ANY(%s)",
                (ids,),
            )
            a = (time.perf_counter() - t) * 1000
        with conn.transaction():
            t = time.perf_counter()
            conn.execute(
                "INSERT INTO kv_tags SELECT unnest(%s::text[]), 'reviewed', 'yes' "
                "ON CONFLICT (trace_id, key) DO UPDATE SET value = EXCLUDED.value",
                (ids,),
            )
            b = (time.perf_counter() - t) * 1000
        print(
            f"  {'tag ' + format(len(ids), ',') + ' traces':32} jsonb {a:8.2f}   key/value {b:8.2f}"
        )


def _median_ms(conn: object, sql: str, params: list) -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        conn.execute(sql, params).fetchall()  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-local", action="store_true", help="skip the local store's figures")
    ap.add_argument("--schemas", action="store_true", help="only compare tag schemas")
    args = ap.parse_args()
    cluster, why = pgcluster.start()
    if cluster is None:
        sys.exit(f"no PostgreSQL: {why}")
    if args.schemas:
        try:
            schema_choice(cluster, args.traces)
        finally:
            cluster.stop()
        return
    tmp = Path(tempfile.mkdtemp(prefix="tracetag-pgbench-"))
    try:
        small = cluster.create_database("small")
        big = cluster.create_database("big")
        fill_pg(PgStore(small), args.small)
        rate = fill_pg(PgStore(big), args.traces)
        local = tmp / "local.json"
        if not args.no_local:
            fill_local(local, args.traces)
        n = f"{args.traces:,}"
        rows = [("import (put_traces, COPY)", f"{rate:,.0f} traces/s", "target >= 20,000/s", "")]
        for label, cmd in COMMANDS:
            s = timed(small, cmd, args.repeat)
            b = timed(big, cmd, args.repeat)
            loc = ""
            if not args.no_local:
                loc = f"{timed(str(local), cmd, max(2, args.repeat // 2)):.2f} s"
            figure = f"{b:.2f} s at {n} / {s:.2f} s at {args.small:,}"
            rows.append((label, figure, f"{b / s:.2f}x", loc))
        mlflow = mlflow_per_tag(cluster)
        rows += errors_row(big, str(local) if not args.no_local else None, mlflow)
        print(f"\nPostgreSQL, {n} traces (whole processes, medians of {args.repeat})\n")
        print(f"| {'operation':40} | {'figure':40} | {'ratio':18} | local store at {n} |")
        print(f"|{'-' * 42}|{'-' * 42}|{'-' * 20}|{'-' * 27}|")
        for label, fig, ratio, loc in rows:
            print(f"| {label:40} | {fig:40} | {ratio:18} | {loc:25} |")
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
