"""tracetag benchmarks: every figure next to a floor measured in the same run.

    python benchmarks/run.py                  # 20,000 traces, well under a minute
    python benchmarks/run.py --traces 100000  # the full-size run

Floors: the time for ``python -c`` to ``orjson.loads`` one JSON file holding the same trace
infos (what any JSON-document design must at least pay to scan), and a bare Typer app's no-op
command (what any Typer CLI pays to start). Each figure is a median of several runs of a whole
process, as a user would see it. With ``mlflow`` installed (``pip install -e '.[bench]'``), the
same operations also run against MLflow on a local SQLite store, at ``--mlflow-traces``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracetag.store import Store  # noqa: E402

FILTER = "tags.environment = 'production' AND execution_time_ms > 5000"


# -- data -------------------------------------------------------------------------------------


def make_traces(n: int, seed: int = 1) -> list[tuple[dict, list[dict]]]:
    """Realistic trace infos (~620 bytes of JSON each) with two spans apiece."""
    rng = random.Random(seed)
    out = []
    t0 = 1_740_000_000_000
    for i in range(n):
        tid = f"tr-{rng.getrandbits(128):032x}"
        env = rng.choices(["production", "staging", "development"], [50, 30, 20])[0]
        status = "ERROR" if rng.random() < 0.1 else "OK"
        ms = int(rng.lognormvariate(7.3, 0.8))
        ts = t0 + i * 1000 + rng.randint(0, 999)
        tags = {
            "mlflow.traceName": rng.choice(["chat_completion", "rag_query", "summarize"]),
            "environment": env,
            "model_version": rng.choice(["v1.0.0", "v2.0.0", "v2.1.0"]),
            "user_id": f"user_{rng.randint(1, 5000):05d}",
            "session_id": f"session_{rng.randint(1, 20000):06d}",
            "request_type": rng.choice(["chat", "retrieval", "embedding"]),
            "priority": rng.choice(["high", "normal", "normal", "normal"]),
            "experiment_variant": rng.choice(["control", "treatment"]),
            "sla_tier": rng.choice(["standard", "premium", "critical"]),
            "service.name": "chat_api",
            "retries": str(rng.randint(0, 3)),
        }
        doc = {
            "trace_id": tid,
            "experiment_id": "1",
            "name": tags["mlflow.traceName"],
            "timestamp_ms": ts,
            "execution_time_ms": ms,
            "status": status,
            "tags": tags,
            "metadata": {
                "app_version": "1.3.0",
                "mlflow.user": "svc",
                "mlflow.source.name": "app.py",
            },
            "request_preview": f'{{"question": "question number {i}"}}',
            "response_preview": f'{{"answer": "answer number {i}"}}',
            "client_request_id": None,
        }
        spans = [
            {
                "span_id": f"{rng.getrandbits(64):016x}",
                "parent_id": None,
                "name": doc["name"],
                "span_type": "CHAIN",
                "start_time_ns": ts * 10**6,
                "end_time_ns": (ts + ms) * 10**6,
                "status": status,
                "attributes": {},
                "events": [],
                "inputs": {"q": f"question {i}"},
                "outputs": {"a": f"answer {i}"},
            },
            {
                "span_id": f"{rng.getrandbits(64):016x}",
                "parent_id": None,
                "name": "llm_call",
                "span_type": "LLM",
                "start_time_ns": ts * 10**6 + 1,
                "end_time_ns": (ts + ms) * 10**6 - 1,
                "status": status,
                "attributes": {"model": "gpt-4o"},
                "events": [],
                "inputs": {"prompt": f"p{i}"},
                "outputs": {"text": f"t{i}"},
            },
        ]
        spans[1]["parent_id"] = spans[0]["span_id"]
        out.append((doc, spans))
    return out


def build_store(path: Path, traces: list[tuple[dict, list[dict]]]) -> Store:
    store = Store(path)
    for i in range(0, len(traces), 10_000):
        store.put_traces(traces[i : i + 10_000])
    store.compact()
    return store


# -- measuring --------------------------------------------------------------------------------


def run(cmd: list[str], env: dict | None = None, check: bool = True) -> float:
    """Wall seconds of one whole process."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - start
    if check and proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kib(cmd: list[str]) -> int:
    """Peak RSS of ``cmd``, started from a small process: Linux carries a parent's high-water
    mark across fork and exec, so a child of this (large) benchmark would report its size."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def median_time(cmd: list[str], repeat: int, env: dict | None = None, vary=None) -> float:
    times = []
    for i in range(repeat):
        c = vary(cmd, i) if vary else cmd
        times.append(run(c, env))
    return statistics.median(times)


def interleaved(cmds: list[list[str]], repeat: int) -> tuple[list[float], list[float]]:
    """Each command once per round, ``repeat`` rounds: (median time of each, median of each
    one's ratio to the first command in the same round). A floor and what is compared with it
    then share the machine's moments of load, which on a noisy machine move a ratio more
    than any change does."""
    rounds = [[run(c) for c in cmds] for _ in range(repeat)]
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(cmds))]
    ratios = [statistics.median(r[i] / r[0] for r in rounds) for i in range(len(cmds))]
    return medians, ratios


TT = [sys.executable, "-m", "tracetag"]


def tracetag_cmd(store: Path, *args: str) -> list[str]:
    return [*TT, "--store", str(store), *args]


BARE_TYPER = """
import typer
app = typer.Typer()

@app.command()
def noop():
    pass

@app.command()
def other():
    pass

app()
"""

LOOP = """
import sys, time
from tracetag.api import TracetagClient
client = TracetagClient(sys.argv[1])
ids = sys.argv[3].split(",")
n = int(sys.argv[2])
start = time.perf_counter()
for i in range(n):
    client.set_trace_tag(ids[i % len(ids)], "loop_key", str(i))
print(n / (time.perf_counter() - start))
"""

RECORD = """
import sys, time, tracetag
tracetag.set_store(sys.argv[1])

@tracetag.trace(span_type="LLM")
def llm(prompt):
    return "answer"

@tracetag.trace
def handle(i):
    tracetag.update_current_trace(tags={"environment": "production", "request": str(i)})
    return llm(f"prompt {i}")

n = int(sys.argv[2])
start = time.perf_counter()
for i in range(n):
    handle(i)
print(n / (time.perf_counter() - start))
"""


EMPTY = """
import sys, time, tracetag
tracetag.set_store(sys.argv[1])

@tracetag.trace
def empty():
    pass

empty()
n = int(sys.argv[2])
start = time.perf_counter()
for _ in range(n):
    empty()
print(n / (time.perf_counter() - start))
"""


# Recording: the cost in the caller's thread per traced call, then with everything written.
REC_COST = """
import sys, time, tracetag
tracetag.set_store(sys.argv[1])
payload = "x" * 1024

@tracetag.trace
def empty():
    pass

@tracetag.trace
def inner(p):
    return p

@tracetag.trace
def outer(p):
    return inner(p)

f = empty if sys.argv[3] == "empty" else (lambda: outer(payload))
for _ in range(500):
    f()
tracetag.flush()
n = int(sys.argv[2])
start = time.perf_counter()
for _ in range(n):
    f()
caller = (time.perf_counter() - start) / n * 1e6
tracetag.flush()
print(caller, (time.perf_counter() - start) / n * 1e6)
"""

OTEL_COST = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

class Noop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Noop()))
tracer = provider.get_tracer("bench")
payload = "x" * 1024

def empty():
    with tracer.start_as_current_span("empty") as span:
        span.set_attribute("a", 1)

def nested():
    with tracer.start_as_current_span("outer") as span:
        span.set_attribute("input", payload)
        with tracer.start_as_current_span("inner") as child:
            child.set_attribute("input", payload)
            child.set_attribute("output", payload)
        span.set_attribute("output", payload)

f = empty if sys.argv[2] == "empty" else nested
for _ in range(500):
    f()
provider.force_flush()
n = int(sys.argv[1])
start = time.perf_counter()
for _ in range(n):
    f()
caller = (time.perf_counter() - start) / n * 1e6
provider.force_flush()
print(caller, (time.perf_counter() - start) / n * 1e6)
"""

# Eight threads calling handle(i) for a total of n traces, timed until everything is flushed.
EIGHT_THREADS = """
n = int({n})
per = n // 8
start = time.perf_counter()
threads = [threading.Thread(target=lambda: [handle(i) for i in range(per)]) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
{flush}
elapsed = time.perf_counter() - start
"""

SUSTAINED = (
    """
import sys, threading, time, tracetag
tracetag.set_store(sys.argv[1])

@tracetag.trace
def inner(i):
    return i

@tracetag.trace
def handle(i):
    return inner(i)

"""
    + EIGHT_THREADS.format(n="sys.argv[2]", flush="tracetag.flush()")
    + """
stored = len(tracetag.search_traces(max_results=None, include_spans=False))
print(per * 8 / elapsed, stored, per * 8)
"""
)

# The same load on OpenTelemetry's SDK (BatchSpanProcessor, an exporter that only counts):
# the peer's own ceiling on this machine, and how much of the load it keeps.
OTEL_SUSTAINED = (
    """
import sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

exported = [0]

class Count(SpanExporter):
    def export(self, spans):
        exported[0] += len(spans)
        return SpanExportResult.SUCCESS

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Count()))
tracer = provider.get_tracer("bench")

def inner(i):
    with tracer.start_as_current_span("inner") as span:
        span.set_attribute("i", i)
        return i

def handle(i):
    with tracer.start_as_current_span("handle") as span:
        span.set_attribute("i", i)
        return inner(i)

"""
    + EIGHT_THREADS.format(n="sys.argv[1]", flush="provider.force_flush()")
    + """
print(per * 8 / elapsed, exported[0] // 2, per * 8)
"""
)


def script_output(script: str, *args: str) -> list[str]:
    """The words a Python script printed, run in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def recording_section(tmp: Path, n: int) -> list[tuple[str, str, str]]:
    """tracetag's recording next to OpenTelemetry's SDK (BatchSpanProcessor, no-op exporter)
    in the same run, when the SDK is installed (the bench extra)."""
    rows = []
    try:
        import opentelemetry.sdk  # noqa: F401

        have_otel = True
    except ImportError:
        have_otel = False
    for mode, what in (("empty", "empty function"), ("nested", "2 nested spans, 1 KB in/out")):
        store = tmp / f"rec-{mode}.json"
        out = script_output(REC_COST, str(store), str(n), mode)
        caller, total = float(out[0]), float(out[1])
        ratio = f"{total:.0f} us/call with every trace written"
        if have_otel:
            o = script_output(OTEL_COST, str(n), mode)
            ratio = (
                f"{caller / float(o[0]):.2f}x OpenTelemetry's {float(o[0]):.0f} us "
                f"(target <= 1.5x); {total:.0f} us with every trace on disk"
            )
        rows.append((f"@tracetag.trace, {what}, default level", f"{caller:.0f} us/call", ratio))
    store = tmp / "rec-sustained.json"
    out = script_output(SUSTAINED, str(store), str(n * 4))
    rate, stored, sent = float(out[0]), int(out[1]), int(out[2])
    peer = ""
    if have_otel:
        o = script_output(OTEL_SUSTAINED, str(n * 4))
        o_rate, o_kept = float(o[0]), int(o[1])
        peer = f"; {rate / o_rate:.2f}x OpenTelemetry's {o_rate:,.0f}/s, which kept {o_kept:,}"
    rows.append(
        (
            "sustained recording, 8 threads, default level",
            f"{rate:,.0f} traces/s",
            f"{stored:,} of {sent:,} stored, {sent - stored} dropped{peer}",
        )
    )
    return rows


def python_rate(script: str, *args: str, env: dict | None = None) -> float:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return float(out.stdout.strip().splitlines()[-1])


# -- MLflow, when installed --------------------------------------------------------------------

MLFLOW = """
import os, sys, time, logging, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
import mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri("sqlite:///" + sys.argv[1])
mlflow.set_experiment("bench")
n = int(sys.argv[2])

@mlflow.trace(span_type="LLM")
def llm(prompt):
    return "answer"

@mlflow.trace
def handle(i):
    mlflow.update_current_trace(tags={"environment": "production", "request": str(i)})
    return llm(f"prompt {i}")

@mlflow.trace
def empty():
    pass

handle(-1)
empty()
start = time.perf_counter()
for i in range(n):
    empty()
empty_rate = n / (time.perf_counter() - start)
start = time.perf_counter()
for i in range(n):
    handle(i)
record = n / (time.perf_counter() - start)
client = MlflowClient()
traces = mlflow.search_traces(max_results=n, return_type="list")
ids = [t.info.trace_id for t in traces]
start = time.perf_counter()
for i in range(n):
    client.set_trace_tag(ids[i % len(ids)], "loop_key", str(i))
tag = n / (time.perf_counter() - start)
start = time.perf_counter()
found = mlflow.search_traces(
    filter_string="tags.environment = 'production'", max_results=1000, return_type="list"
)
search = time.perf_counter() - start
print(record, tag, search, ids[0], empty_rate)
"""


def mlflow_section(tmp: Path, n: int) -> list[tuple[str, str, str]]:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return [("MLflow comparison", "skipped", "pip install -e '.[bench]' to include it")]
    db = tmp / "mlflow.db"
    out = subprocess.run(
        [sys.executable, "-c", MLFLOW, str(db), str(n)], capture_output=True, text=True
    )
    if out.returncode != 0:
        return [("MLflow comparison", "failed", out.stderr.strip().splitlines()[-1][:80])]
    record, tag, search, some_id, empty = out.stdout.split()
    record, tag, search, empty = float(record), float(tag), float(search), float(empty)
    store = tmp / f"tt-{n}.json"
    build_store(store, make_traces(n, seed=9))
    ids = ",".join(d["trace_id"] for d, _ in make_traces(n, seed=9)[:200])
    tt_tag = python_rate(LOOP, str(store), str(n), ids)
    tt_record = python_rate(RECORD, str(tmp / f"tt-rec-{n}.json"), str(n))
    tt_empty = python_rate(EMPTY, str(tmp / f"tt-empty-{n}.json"), str(n))
    cli_env = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    ml_cli = median_time(
        [sys.executable, "-m", "mlflow", "traces", "get", "--trace-id", some_id], 3, cli_env
    )
    tt_cli = median_time(
        tracetag_cmd(store, "show", make_traces(n, seed=9)[0][0]["trace_id"], "-o", "json"), 3
    )
    return [
        (
            f"MLflow set_trace_tag loop ({n} traces)",
            f"{tag:,.0f} calls/s",
            f"tracetag {tt_tag / tag:.1f}x faster",
        ),
        (
            "MLflow @mlflow.trace recording (sync export)",
            f"{record:,.0f} traces/s",
            f"tracetag {tt_record / record:.1f}x faster",
        ),
        (
            "MLflow @mlflow.trace on an empty function",
            f"{1e6 / empty:,.0f} us/call",
            f"tracetag {tt_empty / empty:.1f}x faster",
        ),
        ("MLflow search_traces (Python, in process)", f"{search * 1000:.0f} ms", ""),
        (
            "`mlflow traces get` vs `tracetag show` (process)",
            f"{ml_cli:.2f} s",
            f"tracetag {ml_cli / tt_cli:.1f}x faster",
        ),
    ]


# -- the run ----------------------------------------------------------------------------------


# Patterns that make a backtracking engine (Python's re) take seconds to hours on one value.
REGEX_CASES = [
    ("RLIKE", "(a+)+$", "a" * 7999 + "!"),
    ("RLIKE", "(a|aa)*c", "a" * 8000),
    ("LIKE", "%a%a%a%a%a%a%c", "a" * 8000),
    ("ILIKE", "%a%a%a%a%a%a%c", "A" * 8000),
]
PY_RE = """
import re, sys, time
pattern, value = sys.argv[1], sys.argv[2]
rx = re.compile(pattern, re.S)
t = time.perf_counter()
rx.search(value)
print(time.perf_counter() - t)
"""


def regex_section() -> list[tuple[str, str, str]]:
    """Hostile patterns on 8,000-character values: tracetag's engine next to Python's re,
    which the same filters used to run on (stopped after 2 s)."""
    from tracetag.filters import compile_filter, parse_filter
    from tracetag.filters.patterns import like_regex

    rows = []
    for op, pattern, value in REGEX_CASES:
        pred = compile_filter(parse_filter(f"tags.x {op} '{pattern}'"))
        doc = {"tags": {"x": value}}
        t = time.perf_counter()
        for _ in range(10):
            pred(doc)
        ours = (time.perf_counter() - t) / 10
        expr = pattern if op == "RLIKE" else "(?i)" * (op == "ILIKE") + like_regex(pattern) + r"\Z"
        try:
            r = subprocess.run(
                [sys.executable, "-c", PY_RE, expr, value],
                capture_output=True,
                timeout=2,
                check=True,
            )
            theirs = f"Python re {float(r.stdout) * 1000:,.0f} ms"
        except subprocess.TimeoutExpired:
            theirs = "Python re > 2,000 ms (stopped)"
        rows.append((f"{op} '{pattern}' on 8,000 chars", f"{ours * 1000:.2f} ms", theirs))
    return rows


SPAN_FILTERS = [
    "span.type = 'LLM' AND tags.environment = 'production'",
    "trace.text LIKE '%question 29%'",
]
SPAN_FLOOR = """
import sys, orjson
n = 0
for line in open(sys.argv[1], 'rb'):
    n += len(orjson.loads(line[9:])['spans'])
if len(sys.argv) > 2:  # and the trace infos, which any search scans first
    n += len(orjson.loads(open(sys.argv[2], 'rb').read()))
print(n)
"""


def with_more_spans(traces: list[tuple[dict, list[dict]]]) -> list[tuple[dict, list[dict]]]:
    """The same traces with 2 to 5 spans each (0 to 3 retrievals added under the root)."""
    out = []
    for i, (doc, spans) in enumerate(traces):
        extra = [
            {
                **spans[1],
                "span_id": f"{i:08x}{k:08x}",
                "parent_id": spans[0]["span_id"],
                "name": f"retrieve_{k}",
                "span_type": "RETRIEVER",
                "attributes": {"index": "kb"},
                "inputs": {"query": f"lookup {i}"},
                "outputs": [{"doc_id": f"d{k}"}],
            }
            for k in range(i % 4)
        ]
        out.append((doc, spans + extra))
    return out


def span_section(
    tmp: Path, traces: list[tuple[dict, list[dict]]], infos: Path, repeat: int
) -> list[tuple[str, str, str]]:
    """Span filters next to two floors: reading and parsing every span record once, and that
    plus the scan of the trace infos (which any search does first)."""
    store_path = tmp / "spans.json"
    build_store(store_path, with_more_spans(traces))
    spans_file = store_path.with_name("spans.json-spans")
    cmds = [
        [sys.executable, "-c", SPAN_FLOOR, str(spans_file)],
        [sys.executable, "-c", SPAN_FLOOR, str(spans_file), str(infos)],
    ]
    cmds += [
        tracetag_cmd(store_path, "search", "-f", flt, "--all", "-o", "ids") for flt in SPAN_FILTERS
    ]
    times, ratios = interleaved(cmds, max(repeat, 15))
    rows = [
        ("floor: read and parse every span record once", f"{times[0]:.3f} s", "1.00x"),
        ("floor: that, plus the trace infos", f"{times[1]:.3f} s", f"{ratios[1]:.2f}x"),
    ]
    for i, flt in enumerate(SPAN_FILTERS, start=2):
        both = ratios[i] / ratios[1]
        ratio = f"{ratios[i]:.2f}x span floor (target <= 1.5x); {both:.2f}x spans + infos"
        rows.append((f'search -f "{flt}"', f"{times[i]:.3f} s", ratio))
    return rows


def main() -> None:
    # Measure the package as installed: with bytecode, as pip leaves site-packages.
    import compileall

    compileall.compile_dir(str(ROOT / "tracetag"), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--traces", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=1_000, help="size of the small store")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop", type=int, default=2_000, help="calls / traces in the Python loops")
    ap.add_argument("--mlflow-traces", type=int, default=500)
    ap.add_argument("--no-mlflow", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tracetag-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        t = time.perf_counter()
        traces = make_traces(args.traces)
        big = tmp / "big.json"
        build_store(big, traces)
        small = tmp / "small.json"
        build_store(small, traces[: args.small])
        infos = tmp / "infos.json"
        infos.write_bytes(orjson.dumps([doc for doc, _ in traces]))
        setup = time.perf_counter() - t
        some_id = traces[len(traces) // 2][0]["trace_id"]
        small_id = traces[len(traces[: args.small]) // 2][0]["trace_id"]
        print(
            f"{args.traces:,} traces ({big.stat().st_size / 1e6:.1f} MB base, "
            f"{infos.stat().st_size / 1e6:.1f} MB of infos); set up in {setup:.1f} s",
            file=sys.stderr,
        )

        # Floors, measured in this run.
        scan_floor = median_time(
            [
                sys.executable,
                "-c",
                f"import orjson; orjson.loads(open({str(infos)!r}, 'rb').read())",
            ],
            args.repeat,
        )
        bare = tmp / "bare.py"
        bare.write_text(BARE_TYPER)
        typer_floor = median_time([sys.executable, str(bare), "noop"], args.repeat)
        rows.append(("floor: python -c orjson.loads(trace infos)", f"{scan_floor:.3f} s", "1.00x"))
        rows.append(("floor: bare Typer app, no-op command", f"{typer_floor:.3f} s", "1.00x"))

        vary_tag = lambda c, i: [*c[:-1], f"bench=v{i}"]  # noqa: E731 - a fresh value each run
        big_tag = median_time(
            tracetag_cmd(big, "tag", "set", some_id, "bench=v"), args.repeat, vary=vary_tag
        )
        small_tag = median_time(
            tracetag_cmd(small, "tag", "set", small_id, "bench=v"), args.repeat, vary=vary_tag
        )
        rows.append(
            (
                f"tag set ID k=v, {args.traces:,} vs {args.small:,} traces",
                f"{big_tag:.3f} s",
                f"{big_tag / small_tag:.2f}x the small store (target <= 1.3x)",
            )
        )

        search_cmd = tracetag_cmd(big, "search", "-f", FILTER, "-o", "ids")
        search = median_time(search_cmd, args.repeat)
        rows.append(
            (
                f'search -f "{FILTER}"',
                f"{search:.3f} s",
                f"{search / scan_floor:.2f}x scan floor (target <= 1.5x)",
            )
        )
        search_all = median_time(
            tracetag_cmd(big, "search", "-f", FILTER, "--all", "-o", "ids"), args.repeat
        )
        rows.append(
            (
                "  same, --all (every match)",
                f"{search_all:.3f} s",
                f"{search_all / scan_floor:.2f}x scan floor",
            )
        )
        rss = peak_rss_kib(tracetag_cmd(big, "search", "-f", FILTER, "--all", "-o", "json"))
        rows.append(
            (
                "peak memory of that search (RSS)",
                f"{rss / 1024:.0f} MiB",
                f"{rss * 1024 / big.stat().st_size:.2f}x the base on disk (target <= 4x)",
            )
        )

        broad = tracetag_cmd(big, "search", "-f", "status = 'OK'", "--all", "-o", "ids")
        broad_t = median_time(broad, max(3, args.repeat // 2))
        broad_rss = peak_rss_kib(broad)
        rows.append(
            (
                "search -f \"status = 'OK'\" --all (90% of traces)",
                f"{broad_t:.3f} s",
                f"{broad_t / scan_floor:.2f}x scan floor; "
                f"{broad_rss * 1024 / big.stat().st_size:.2f}x the base in memory",
            )
        )

        n_err = sum(1 for d, _ in traces if d["status"] == "ERROR")
        vary_batch = lambda c, i: [*c[:-1], f"needs_review=r{i}"]  # noqa: E731
        batch = median_time(
            tracetag_cmd(big, "tag", "set", "--filter", "status = 'ERROR'", "needs_review=true"),
            max(3, args.repeat // 2),
            vary=vary_batch,
        )
        rows.append(
            (
                f"tag set --filter \"status = 'ERROR'\" ({n_err:,} traces)",
                f"{batch:.3f} s",
                f"{batch / scan_floor:.2f}x scan floor (target <= 2x)",
            )
        )

        version = median_time([*TT, "--version"], args.repeat)
        rows.append(
            (
                "tracetag --version",
                f"{version:.3f} s",
                f"{version / typer_floor:.2f}x bare Typer (target <= 1.2x)",
            )
        )
        rows.append(
            (
                f"tag set on the {args.small:,}-trace store",
                f"{small_tag:.3f} s",
                f"{small_tag / typer_floor:.2f}x bare Typer (target <= 1.5x)",
            )
        )

        ids = ",".join(d["trace_id"] for d, _ in traces[:500])
        loop = python_rate(LOOP, str(big), str(args.loop), ids)
        rows.append(
            (
                f"set_trace_tag loop, durable ({args.traces:,} traces)",
                f"{loop:,.0f} calls/s",
                "target >= 1,000/s",
            )
        )
        full = {"TRACETAG_DURABILITY": "full"}
        record = python_rate(RECORD, str(big), str(args.loop), env=full)
        rows.append(
            (
                "@tracetag.trace recording, 2 spans, level full",
                f"{record:,.0f} traces/s",
                "on disk before each call returns; target >= 1,000/s",
            )
        )
        empty = python_rate(EMPTY, str(big), str(args.loop), env=full)
        rows.append(
            ("@tracetag.trace on an empty function, full", f"{1e6 / empty:,.0f} us/call", "")
        )
        relaxed = python_rate(
            RECORD, str(big), str(args.loop), env={"TRACETAG_DURABILITY": "process"}
        )
        rows.append(
            (
                "  recording, TRACETAG_DURABILITY=process (no fsync)",
                f"{relaxed:,.0f} traces/s",
                f"{relaxed / record:.1f}x; survives kill -9, not an OS crash",
            )
        )

        rows += recording_section(tmp, args.loop * 5)
        rows += regex_section()
        rows += span_section(tmp, traces, infos, max(3, args.repeat // 2))
        if not args.no_mlflow:
            rows += mlflow_section(tmp, args.mlflow_traces)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.traces < 100_000:
        print(
            f"(the targets are stated for --traces 100000; at {args.traces:,} the fixed start-up "
            "cost weighs more against the floors)",
            file=sys.stderr,
        )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'operation'.ljust(w0)}  {'result'.rjust(w1)}  ratio")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 40}")
    for name, value, ratio in rows:
        print(f"{name.ljust(w0)}  {value.rjust(w1)}  {ratio}")


if __name__ == "__main__":
    sys.exit(main())
