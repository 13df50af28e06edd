"""How long `tracetag ui` takes to show its first rows, next to `tracetag search -n 100` on the
same store, in the same run (whole processes: interpreter, imports, store, first page).

    python benchmarks/ui.py                      # a 1,000,000-trace local store (built once)
    python benchmarks/ui.py --traces 100000 --store /tmp/ui-100k.json

The store is kept (``--store``) so later runs skip building it. The UI runs headless (Textual's
test driver, the same app and code path) in a process of its own, which exits as soon as the
results table holds rows. Target: at most 1.5x the search.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from run import make_traces  # noqa: E402

FIRST_ROWS = r"""
# What `tracetag ui` does (tracetag/cli/ui.py), with Textual's headless driver.
import asyncio, gc, sys, time
gc.disable()  # as tracetag's command line starts
from tracetag.cli.app import long_lived
from tracetag.api import TracetagClient
from tracetag.review import Pager, prefetch

async def main():
    long_lived()
    client = TracetagClient(sys.argv[1])
    pager = Pager(client)
    first = prefetch(pager)
    from tracetag.ui.app import TracetagApp
    from textual.widgets import DataTable
    app = TracetagApp(client, pager=pager, first_page=first)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one("#results", DataTable)
        while table.row_count == 0:
            await asyncio.sleep(0.005)
asyncio.run(main())
"""


def build(path: Path, n: int) -> None:
    from tracetag.store import Store

    store = Store(path)
    step = 20_000
    for i in range(0, n, step):
        store.put_traces(make_traces(min(step, n - i), seed=i + 1))
        print(f"\r  built {i + step:,} traces", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    store.compact()


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--store", default=None, help="where to keep the store (built if missing)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = Path(args.store or f"/tmp/tracetag-ui-bench-{args.traces}.json")
    if not path.exists():
        build(path, args.traces)
    search = [sys.executable, "-m", "tracetag", "--store", str(path), "search", "-n", "100"]
    ui = [sys.executable, "-c", FIRST_ROWS, str(path)]
    timed(search)  # warm the page cache
    s = [timed(search) for _ in range(args.repeat)]
    u = [timed(ui) for _ in range(args.repeat)]
    ms, mu = statistics.median(s), statistics.median(u)
    print(f"store: {path} ({args.traces:,} traces)")
    print("| measure | median s | runs |")
    print("| --- | ---: | --- |")
    print(f"| `tracetag search -n 100` | {ms:.2f} | {', '.join(f'{x:.2f}' for x in s)} |")
    print(f"| `tracetag ui`, first rows shown | {mu:.2f} | {', '.join(f'{x:.2f}' for x in u)} |")
    verdict = "met" if mu <= 1.5 * ms else "MISSED"
    print(f"\nui / search: {mu / ms:.2f}x (target <= 1.5x: {verdict})")


if __name__ == "__main__":
    main()
