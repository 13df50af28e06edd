"""Importing a big MLflow trace file into the file store: traces per second and peak memory,
staged in pieces by worker processes (files over 64 MB), against a smaller file read whole (a
million read whole would not fit in this machine's memory).

    python benchmarks/import_big.py --traces 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from postgres import chunks  # noqa: E402
from run import TT, peak_rss_kib  # noqa: E402

from tracetag.interop import to_mlflow_dict  # noqa: E402
from tracetag.model import Span, Trace, TraceData, TraceInfo  # noqa: E402


def write_mlflow_file(path: Path, n: int) -> None:
    """``n`` traces as MLflow writes them (``Trace.to_json``), one per line."""
    with open(path, "wb") as out:
        for batch in chunks(n):
            for doc, spans in batch:
                trace = Trace(
                    TraceInfo.from_dict(doc),
                    TraceData([Span.from_dict({**s, "trace_id": doc["trace_id"]}) for s in spans]),
                )
                out.write(orjson.dumps(to_mlflow_dict(trace)) + b"\n")


def measure(src: Path, store: Path, n: int) -> tuple[float, float]:
    """(traces per second, peak RSS in MiB) of ``tracetag import`` as a whole process."""
    t = time.perf_counter()
    rss = peak_rss_kib([*TT, "--store", str(store), "import", str(src)])
    return n / (time.perf_counter() - t), rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--traces", type=int, default=1_000_000)
    ap.add_argument("--whole", type=int, default=30_000, help="traces of the read-whole file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tracetag-import-"))
    big, small = tmp / "big.jsonl", tmp / "small.jsonl"
    write_mlflow_file(big, args.traces)
    write_mlflow_file(small, args.whole)
    size = big.stat().st_size
    print(f"{args.traces:,} MLflow traces, {size / 1e9:.2f} GB of JSON lines", file=sys.stderr)
    rate, rss = measure(big, tmp / "a" / "s.json", args.traces)
    whole_rate, whole_rss = measure(small, tmp / "b" / "s.json", args.whole)
    per_mb = whole_rss / (small.stat().st_size / 2**20)
    print("| import | traces/s | peak RSS | target |")
    print("| --- | --- | --- | --- |")
    print(
        f"| {args.traces:,} traces, {size / 2**20:,.0f} MiB, in pieces by worker processes | "
        f"{rate:,.0f} | "
        f"{rss:,.0f} MiB | >= 25,000/s; <= 500 MiB |"
    )
    print(
        f"| {args.whole:,} traces read whole (below 64 MB) | {whole_rate:,.0f} | "
        f"{whole_rss:,.0f} MiB ({per_mb:.1f} MiB per MiB of file) | |"
    )


if __name__ == "__main__":
    main()
