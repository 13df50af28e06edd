"""Lookups by id and first pages on a big file store against a small one, as whole processes:
``show ID``, ``tag set ID k=v``, ``search -n 100`` with and without a filter (medians), their
peak memory, and what the first lookup without indexes costs (ratios in the same run).

    python benchmarks/lookups.py                   # the 1,000,000-trace store of ui.py
    python benchmarks/lookups.py --traces 100000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ui import build  # noqa: E402

from tracetag.api import TracetagClient  # noqa: E402
from tracetag.store import Store, idindex  # noqa: E402


def whole_process(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rss_of(cmd: list[str]) -> int:
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return int(out.stderr.strip().splitlines()[-1])


USER = "tags.user_id = 'user_00017'"  # one of the 5,000 users of run.py's traces


def measure(path: Path, repeat: int) -> dict[str, tuple[float, int]]:
    trace_id = TracetagClient(Store(path)).search_traces(max_results=1)[0].info.trace_id
    tt = [sys.executable, "-m", "tracetag", "--store", str(path)]
    out = {}
    production = "tags.environment = 'production' AND execution_time_ms > 5000"
    commands = (
        ("show ID", ["show", trace_id]),
        ("tag set ID", ["tag", "set", trace_id]),
        ("search -n 100", ["search", "-n", "100"]),
        ("production, > 5 s, -n 100", ["search", "-f", production, "-n", "100"]),
        ("one user (0.02%), all", ["search", "-f", USER, "-o", "ids"]),
    )
    for label, args in commands:
        times = []
        for i in range(repeat):
            extra = [f"bench=v{i}-{time.time_ns()}"] if label == "tag set ID" else []
            times.append(whole_process([*tt, *args, *extra]))
        extra = [f"bench=rss-{time.time_ns()}"] if label == "tag set ID" else []
        out[label] = (statistics.median(times), rss_of([*tt, *args, *extra]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--store", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = Path(args.store or f"/tmp/tracetag-ui-bench-{args.traces}.json")
    if not path.exists():
        build(path, args.traces)
    small = Path(tempfile.mkdtemp(prefix="tracetag-lookups-")) / "small.json"
    build(small, 1_000)
    index = idindex.index_path(path)
    trace_id = TracetagClient(Store(path)).search_traces(max_results=1)[0].info.trace_id
    index.unlink(missing_ok=True)
    idindex.order_path(path).unlink(missing_ok=True)
    idindex.tags_path(path).unlink(missing_ok=True)
    show = [sys.executable, "-m", "tracetag", "--store", str(path), "show", trace_id]
    began = time.perf_counter()
    first = whole_process(show)  # no index: searches, and starts a process that builds it
    while True:
        with Store(path).snapshot() as snap:
            if idindex.state(snap.base) == "current":
                break
        time.sleep(0.2)
    built = time.perf_counter() - began
    big = measure(path, args.repeat)
    little = measure(small, args.repeat)
    print(f"\nLookups by id, {args.traces:,} traces vs 1,000 (whole processes, medians)\n")
    print(f"| {'operation':26} | {'big store':24} | {'1,000 traces':24} | {'ratio':6} |")
    print(f"|{'-' * 28}|{'-' * 26}|{'-' * 26}|{'-' * 8}|")
    for label in big:
        (bt, br), (st, sr) = big[label], little[label]
        print(
            f"| {label:26} | {bt:.3f} s, {br / 1024:5.0f} MiB peak | "
            f"{st:.3f} s, {sr / 1024:5.0f} MiB peak | {bt / st:5.2f}x |"
        )
    print(
        f"\nfirst lookup without indexes: {first:.2f} s; they were built beside it, ready "
        f"{built:.1f} s after it started"
    )


if __name__ == "__main__":
    main()
