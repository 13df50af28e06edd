"""What a write pays when the journal crosses the compaction limit, on a big file store: the
rebuild within the write (how every base was compacted before) against the rebuild beside the
writers (how a base over 48 MB is compacted now), in the same run, with writes made meanwhile.

    python benchmarks/compaction.py                   # the 1,000,000-trace store of ui.py
    python benchmarks/compaction.py --traces 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ui import build  # noqa: E402

from tracetag.api import TracetagClient  # noqa: E402
from tracetag.store import Store  # noqa: E402
from tracetag.store.base import BaseFile  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    path = Path(args.store or f"/tmp/tracetag-ui-bench-{args.traces}.json")
    if not path.exists():
        build(path, args.traces)
    ids = [t.info.trace_id for t in TracetagClient(Store(path)).search_traces(max_results=2)]
    run = str(time.time_ns())  # a value no earlier run set: every write below changes something

    start = time.perf_counter()
    big = 10**15  # every base counts as small: the old way, within the write
    TracetagClient(Store(path, compact_bytes=1, inline_compact_bytes=big)).set_trace_tag(
        ids[0], "inline", run
    )
    inline = time.perf_counter() - start

    generation = BaseFile(path).generation
    start = time.perf_counter()
    TracetagClient(Store(path, compact_bytes=1)).set_trace_tag(ids[0], "beside", run)
    crossing = time.perf_counter() - start
    began, waits = time.perf_counter(), []
    while BaseFile(path).generation == generation:
        t = time.perf_counter()
        TracetagClient(Store(path)).set_trace_tag(ids[1], "during", f"{run}-{len(waits)}")
        waits.append(time.perf_counter() - t)
        time.sleep(0.25)
    rebuild = time.perf_counter() - began
    last = TracetagClient(Store(path)).get_trace(ids[1]).info.tags["during"]
    assert last == f"{run}-{len(waits) - 1}", "a write made during the rebuild is missing"

    size = path.stat().st_size / 2**20
    print(f"store: {path} ({args.traces:,} traces, base {size:,.0f} MiB)")
    print("| measure | seconds |")
    print("| --- | ---: |")
    print(f"| the write that crosses the limit, rebuilding within it (before) | {inline:.2f} |")
    print(f"| the same write, the rebuild beside the writers (now) | {crossing:.2f} |")
    print(f"| the rebuild itself, in a process of its own | {rebuild:.1f} |")
    print(
        f"| {len(waits)} tag writes during the rebuild: median / slowest | "
        f"{statistics.median(waits):.2f} / {max(waits):.2f} |"
    )


if __name__ == "__main__":
    main()
