"""The file store at 1,000,000 traces in one run: each command against the same on a
1,000-trace store, or against SQLite and DuckDB answering the same question from the same
trace infos, as whole processes (medians, the commands of a row interleaved round by round).

    python benchmarks/scale.py                     # the 1,000,000-trace store of ui.py
    python benchmarks/scale.py --traces 100000
    python benchmarks/scale.py --churn 1500000     # then again after that many tag writes
    python benchmarks/scale.py --record 15000      # then again after recording that many

DuckDB comes with ``pip install -e '.[bench]'``; without it its row says so. ``--churn N``
writes N single-tag writes one by one (each its own journal record, as N ``tag set ID``
commands would; written through the library, without an fsync each, to take minutes rather
than hours) with no manual compaction, and measures every command again. ``--record N`` then
records N new traces one by one (each a journal record holding the whole trace, as a traced
app writes them) and measures again.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from lookups import rss_of  # noqa: E402
from ui import build  # noqa: E402

from tracetag.api import TracetagClient  # noqa: E402
from tracetag.store import Store, idindex  # noqa: E402
from tracetag.store.compactor import only_one  # noqa: E402

USER = "tags.user_id = 'user_00017'"  # one of the 5,000 users of run.py's traces
PRODUCTION = "tags.environment = 'production' AND execution_time_ms > 5000"
SQLITE = (
    "import sqlite3, sys\n"
    "rows = sqlite3.connect(sys.argv[1]).execute(\n"
    "    \"SELECT request_id FROM trace_info WHERE status = 'OK'\")\n"
    "out = sys.stdout\n"
    "for (tid,) in rows:\n"
    "    out.write(tid + '\\n')\n"
)
DUCKDB = (
    "import duckdb, sys\n"
    "q = '''SELECT tags.model_version AS g, count(*), count_if(status = 'ERROR'),\n"
    "  avg(execution_time_ms), quantile_disc(execution_time_ms, [0.5, 0.95, 0.99]),\n"
    "  max(execution_time_ms) FROM read_json(?, format = 'newline_delimited')\n"
    "  GROUP BY g ORDER BY count(*) DESC'''\n"
    "for row in duckdb.execute(q, [sys.argv[1]]).fetchall():\n"
    "    print(*row, sep='\\t')\n"
)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def interleaved(cmds: list[list[str]], repeat: int) -> list[float]:
    """The median time of each command, run in turn ``repeat`` times (after one warm-up)."""
    for cmd in cmds:
        timed(cmd)
    runs: list[list[float]] = [[] for _ in cmds]
    for _ in range(repeat):
        for i, cmd in enumerate(cmds):
            runs[i].append(timed(cmd))
    return [statistics.median(r) for r in runs]


def ready(path: Path, trace_id: str) -> None:
    """The big store's indexes current (a lookup has them built by a process of their own)."""
    tt = [sys.executable, "-m", "tracetag", "--store", str(path)]
    timed([*tt, "show", trace_id])
    while True:
        with Store(path).snapshot() as snap:
            if idindex.state(snap.base, whole=False) == "current":
                return
        time.sleep(0.5)


def peers(path: Path, folder: Path) -> tuple[Path, Path]:
    """The store's trace infos as a SQLite table (MLflow's columns) and as JSON lines."""
    db, lines = folder / "traces.db", folder / "infos.jsonl"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE trace_info (request_id TEXT PRIMARY KEY, status TEXT, "
        "timestamp_ms INTEGER, execution_time_ms INTEGER)"
    )
    with Store(path).snapshot() as snap, open(lines, "wb") as out:
        batch = []
        for doc in snap.iter_docs():
            info = {k: v for k, v in doc.items() if k not in ("spans_at", "span_kinds")}
            out.write(orjson.dumps(info) + b"\n")
            batch.append(
                (doc["trace_id"], doc["status"], doc["timestamp_ms"], doc["execution_time_ms"])
            )
            if len(batch) >= 50_000:
                con.executemany("INSERT INTO trace_info VALUES (?, ?, ?, ?)", batch)
                batch = []
        con.executemany("INSERT INTO trace_info VALUES (?, ?, ?, ?)", batch)
    con.execute("CREATE INDEX status ON trace_info (status)")
    con.commit()
    con.close()
    return db, lines


def rows(big: Path, small: Path, db: Path, lines: Path, repeat: int) -> list[tuple]:
    def tt(store: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "tracetag", "--store", str(store), *args]

    def one(store: Path) -> str:
        return TracetagClient(Store(store)).search_traces(max_results=1)[0].info.trace_id

    big_id, small_id = one(big), one(small)
    out = []
    pairs = [
        ("`show ID`", ["show", big_id], ["show", small_id]),
        (
            "`tag set ID k=v`",
            ["tag", "set", big_id, "bench=x"],
            ["tag", "set", small_id, "bench=x"],
        ),
        (f'`search -f "{USER}"`', ["search", "-f", USER, "-o", "ids"], None),
    ]
    for label, big_args, small_args in pairs:
        small_args = small_args or big_args
        b, s = interleaved([tt(big, *big_args), tt(small, *small_args)], repeat)
        out.append((label, b, s, "1,000 traces", rss_of(tt(big, *big_args)) / 1024))
    page = tt(big, "search", "-f", PRODUCTION, "-n", "100")
    (p,) = interleaved([page], repeat)
    out.append((f'`search -f "{PRODUCTION}" -n 100`', p, None, "", rss_of(page) / 1024))
    ids = tt(big, "search", "-f", "status = 'OK'", "--all", "-o", "ids")
    sqlite = [sys.executable, "-c", SQLITE, str(db)]
    b, s = interleaved([ids, sqlite], repeat)
    out.append(("`search -f \"status = 'OK'\" --all -o ids`", b, s, "SQLite", rss_of(ids) / 1024))
    stats = tt(big, "stats", "--group-by", "tags.model_version")
    try:
        import duckdb  # noqa: F401
    except ImportError:
        (b,) = interleaved([stats], repeat)
        out.append(("`stats --group-by tags.model_version`", b, None, "(no duckdb)", 0))
    else:
        b, s = interleaved([stats, [sys.executable, "-c", DUCKDB, str(lines)]], repeat)
        label = "`stats --group-by tags.model_version`"
        out.append((label, b, s, "DuckDB read_json", rss_of(stats) / 1024))
    return out


def churn(path: Path, writes: int) -> float:
    """``writes`` single-tag writes, each a journal record of its own; their rate."""
    os.environ["TRACETAG_DURABILITY"] = "process"
    client = TracetagClient(Store(path))
    ids = [t.info.trace_id for t in client.search_traces(max_results=10_000)]
    start = time.perf_counter()
    for i in range(writes):
        client.set_trace_tag(ids[i % len(ids)], "churn", str(i))
        if i % 50_000 == 0:
            print(f"\r  {i:,} tag writes", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rate = writes / (time.perf_counter() - start)
    # A compaction the writes started may still run beside: measured once it ends (it is
    # not manual, and it would share the two cores with what is measured).
    while True:
        with only_one(client.store) as free:
            if free:
                return rate
        time.sleep(0.5)


def record(path: Path, traces: int) -> float:
    """``traces`` new traces recorded one by one, each a journal record of its own; their rate."""
    from postgres import chunks

    os.environ["TRACETAG_DURABILITY"] = "process"
    store = Store(path)
    start, done = time.perf_counter(), 0
    for batch in chunks(traces):
        for doc, spans in batch:
            doc["trace_id"] = f"tr-recorded{done:021x}"
            doc["timestamp_ms"] = int(time.time() * 1000)
            store.put_traces([(doc, spans)], count_replaced=False)
            done += 1
    return traces / (time.perf_counter() - start)


def table(title: str, measured: list[tuple]) -> None:
    print(f"\n{title}\n")
    print("| operation | big store | peer | ratio | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, b, s, peer, rss in measured:
        ratio = f"{b / s:.2f}x {peer}" if s else peer
        shown = f"{s:.3f} s" if s else ""
        print(f"| {label} | {b:.3f} s | {shown} | {ratio} | {rss:.0f} MiB |")


def again(path: Path, fresh: list[tuple], after: list[tuple], what: str) -> None:
    """The table measured after ``what``, and each command against the compacted store."""
    journal = path.with_name(path.name + "-journal").stat().st_size
    table(f"after {what}; journal now {journal / 2**20:.1f} MiB", after)
    print("\n| operation | after / compacted |\n| --- | ---: |")
    for (label, b0, *_r), (_l, b1, *_s) in zip(fresh, after, strict=True):
        print(f"| {label} | {b1 / b0:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--store", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--churn", type=int, default=0, help="then this many single-tag writes")
    ap.add_argument("--record", type=int, default=0, help="then this many recorded traces")
    args = ap.parse_args()
    path = Path(args.store or f"/tmp/tracetag-ui-bench-{args.traces}.json")
    if not path.exists():
        build(path, args.traces)
    folder = Path(tempfile.mkdtemp(prefix="tracetag-scale-"))
    small = folder / "small.json"
    build(small, 1_000)
    Store(path).compact()  # (what the first table is measured on: a freshly compacted store)
    ready(path, TracetagClient(Store(path)).search_traces(max_results=1)[0].info.trace_id)
    db, lines = peers(path, folder)
    fresh = rows(path, small, db, lines, args.repeat)
    table(f"{args.traces:,} traces, compacted (whole processes, medians of {args.repeat})", fresh)
    if args.churn:
        rate = churn(path, args.churn)
        what = f"{args.churn:,} single-tag writes ({rate:,.0f}/s), no manual compaction"
        again(path, fresh, rows(path, small, db, lines, args.repeat), what)
    if args.record:
        rate = record(path, args.record)
        what = f"{args.record:,} traces recorded one by one ({rate:,.0f}/s) since compacted"
        again(path, fresh, rows(path, small, db, lines, args.repeat), what)
    print(f"\ncores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
