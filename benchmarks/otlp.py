"""The OTLP receiver (`tracetag serve`) fed by OpenTelemetry's own exporter, in the same run as a
floor: the same exporter sending to a sink that reads each request and drops it.

    python benchmarks/otlp.py                   # 20,000 traces of 3 spans, 1 and 4 senders
    python benchmarks/otlp.py --traces 5000 --postgres

Spans are made once with the SDK (kept in memory), then sent in batches of 512 (the
BatchSpanProcessor's default) by ``OTLPSpanExporter`` (http/protobuf), from 1 and from 4
threads. Each target runs in a process of its own. The sink's rate is what the exporter can
send at all (its serialisation, HTTP, one core of this machine); tracetag's rate over it says
how much of that the receiver keeps: the receiver is the bottleneck only where the ratio drops
well below 1. The target (issue: never the bottleneck at >= 5,000 spans/s) is checked in the
last column.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter  # noqa: E402

SINK = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.spans.extend(spans)
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS


def make_spans(traces: int) -> list:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("bench")
    for i in range(traces):
        with tracer.start_as_current_span("chat turn") as root:
            root.set_attribute("mlflow.traceTag.environment", "production")
            root.set_attribute("mlflow.traceTag.model_version", f"v{i % 3}")
            root.set_attribute("session.id", f"s{i % 100}")
            with tracer.start_as_current_span("retrieve") as r:
                r.set_attribute("openinference.span.kind", "RETRIEVER")
                r.set_attribute("input.value", f"question {i}" * 8)
            with tracer.start_as_current_span("llm") as llm:
                llm.set_attribute("openinference.span.kind", "LLM")
                llm.set_attribute("input.value", "x" * 400)
                llm.set_attribute("output.value", "y" * 400)
    return keep.spans


def send(url: str, spans: list, threads: int, batch: int = 512) -> float:
    batches = [spans[i : i + batch] for i in range(0, len(spans), batch)]
    exporters = [OTLPSpanExporter(endpoint=url) for _ in range(threads)]
    failures = []

    def work(k: int) -> None:
        for b in batches[k::threads]:
            if exporters[k].export(b).name != "SUCCESS":
                failures.append(b)

    start = time.perf_counter()
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    took = time.perf_counter() - start
    for e in exporters:
        e.shutdown()
    if failures:
        raise SystemExit(f"{len(failures)} batches failed to {url}")
    return took


def start_sink() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    return proc, f"http://127.0.0.1:{port}/v1/traces"


def start_serve(store: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetag", "--store", store, "serve", "-p", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("tracetag serve did not start")
        if "receiving OTLP/HTTP" in line:
            return proc, line.split(" at ")[1].split(" ")[0]


def count(store: str) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "tracetag", "--store", store, "search", "-o", "ids"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len(out.split())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=20_000)
    ap.add_argument("--postgres", action="store_true", help="also into a throwaway PostgreSQL")
    args = ap.parse_args()
    spans = make_spans(args.traces)
    n = len(spans)
    print(f"{args.traces:,} traces, {n:,} spans, batches of 512, OTLPSpanExporter http/protobuf")
    targets: list[tuple[str, str | None]] = [("sink (floor)", None), ("tracetag, file", "file")]
    cluster = None
    if args.postgres:
        import pgcluster

        cluster, why = pgcluster.start()
        if cluster is None:
            raise SystemExit(f"no PostgreSQL: {why}")
        targets.append(("tracetag, postgresql", "pg"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 4):
            floor = None
            for name, kind in targets:
                if kind is None:
                    proc, url = start_sink()
                    store = None
                elif kind == "file":
                    store = str(Path(tmp) / f"store-{threads}.json")
                    proc, url = start_serve(store)
                else:
                    assert cluster is not None
                    store = cluster.create_database(f"bench_{threads}")
                    proc, url = start_serve(store)
                took = send(url, spans, threads)
                proc.terminate()
                proc.wait(timeout=60)
                stored = count(store) if store else args.traces
                rate = n / took
                floor = floor or rate
                rows.append((name, threads, took, rate, rate / floor, stored))
    if cluster is not None:
        cluster.stop()
    print()
    print("| target | senders | seconds | spans/s | vs sink | traces stored | >= 5,000 spans/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, threads, took, rate, ratio, stored in rows:
        ok = "yes" if rate >= 5000 else "NO"
        print(
            f"| {name} | {threads} | {took:.2f} | {rate:,.0f} | {ratio:.2f}x | {stored:,} | {ok} |"
        )
    print(f"\ncores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
