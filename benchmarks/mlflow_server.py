"""The MLflow-server backend against MLflow's own client, on one real ``mlflow server`` (SQLite,
tests/mlflowserver.py), in the same run:

    python benchmarks/mlflow_server.py              # 1,000 traces
    python benchmarks/mlflow_server.py --traces 300

- ``store copy`` of N traces local -> server vs logging them with ``@mlflow.trace`` and
  synchronous export (MLflow's client, measured on a sample and counted for loss);
- ``tag set --filter`` over N traces vs a ``MlflowClient().set_trace_tag`` loop;
- an OR search (MLflow cannot) vs MLflow's client fetching every trace and filtering in Python.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import mlflowserver  # noqa: E402
from run import make_traces  # noqa: E402

from tracetag.api import TracetagClient  # noqa: E402

TT = [sys.executable, "-m", "tracetag"]
OR_FILTER = "tags.environment = 'staging' OR tags.priority = 'high'"

MLFLOW_LOGGING = """
import os, sys, time
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("mlflow-client")
@mlflow.trace
def handle(i):
    mlflow.update_current_trace(tags={"i": str(i)})
    return i
n = int(sys.argv[2])
start = time.perf_counter()
for i in range(n):
    handle(i)
print(time.perf_counter() - start)
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=1000)
    ap.add_argument("--mlflow-sample", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4, help="the server's (MLflow's default: 4)")
    args = ap.parse_args()
    server, why = mlflowserver.start(workers=args.workers)
    if server is None:
        sys.exit(why)
    rows: list[tuple[str, str, str, str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "local.json"
            TracetagClient(local).log_traces([])
            items = make_traces(args.traces)
            from tracetag.store import Store

            Store(local).put_traces(items)
            url = server.url
            copy = timed([*TT, "store", "copy", str(local), url])
            stored = TracetagClient(url).info()["traces"]
            sample = args.mlflow_sample
            out = subprocess.run(
                [sys.executable, "-c", MLFLOW_LOGGING, url, str(sample)],
                check=True,
                capture_output=True,
                text=True,
            )
            per_trace = float(out.stdout.strip().splitlines()[-1]) / sample
            ours = copy / args.traces
            rows.append(
                (
                    f"store copy {args.traces:,} traces local -> server",
                    f"{copy:.1f} s ({ours * 1000:.1f} ms/trace), {stored:,} stored",
                    f"MLflow @trace sync: {per_trace * 1000:.0f} ms/trace",
                    f"{per_trace / ours:.1f}x faster",
                )
            )
            tag = timed(
                [
                    *TT,
                    "--store",
                    url,
                    "tag",
                    "set",
                    "-f",
                    "tags.service.name = 'chat_api'",
                    "-x",
                    "1",
                    "k=v",
                ]
            )
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=url)
            ids = [
                t.info.trace_id for t in TracetagClient(url).search_traces(["1"], max_results=200)
            ]
            start = time.perf_counter()
            for tid in ids:
                client.set_trace_tag(tid, "m", "v")
            loop = (time.perf_counter() - start) / len(ids)
            rows.append(
                (
                    f"tag set --filter over {args.traces:,} traces",
                    f"{tag:.1f} s ({tag / args.traces * 1000:.1f} ms/tag)",
                    f"set_trace_tag loop: {loop * 1000:.1f} ms/tag",
                    f"{loop * args.traces / tag:.1f}x faster",
                )
            )
            search = timed([*TT, "--store", url, "search", "-f", OR_FILTER, "--all", "-o", "ids"])
            start = time.perf_counter()
            everything, token = [], None
            while True:  # MLflow's client pages at 500 at most
                page = client.search_traces(experiment_ids=["1"], max_results=500, page_token=token)
                everything += page
                token = page.token
                if not token or not page:
                    break
            theirs = {
                t.info.trace_id
                for t in everything
                if t.info.tags.get("environment") == "staging"
                or t.info.tags.get("priority") == "high"
            }
            fetch = time.perf_counter() - start
            mine = {
                t.info.trace_id
                for t in TracetagClient(url).search_traces(
                    filter_string=OR_FILTER, max_results=None
                )
            }
            rows.append(
                (
                    "search with OR (MLflow refuses it)",
                    f"{search:.2f} s, {len(mine):,} traces",
                    f"MLflow client fetch all + filter: {fetch:.2f} s",
                    "same ids" if mine == theirs else "DIFFERENT ids",
                )
            )
    finally:
        server.stop()
    print(
        f"\nMLflow tracking server (SQLite, {args.workers} workers), {args.traces:,} traces; "
        "tracetag as whole processes\n"
    )
    print(f"| {'operation':40} | {'tracetag':36} | {'MLflow':40} | {'ratio':14} |")
    print(f"|{'-' * 42}|{'-' * 38}|{'-' * 42}|{'-' * 16}|")
    for r in rows:
        print(f"| {r[0]:40} | {r[1]:36} | {r[2]:40} | {r[3]:14} |")


if __name__ == "__main__":
    main()
