"""The store on real files: atomicity, durability, concurrency, damage, migrations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tracetag import runtime
from tracetag.api import TracetagClient
from tracetag.backend import open_backend
from tracetag.errors import NotAStore, StoreCorrupted
from tracetag.store import SCHEMA_VERSION, Store, open_tinydb
from tracetag.store.maintenance import check, repair

from .conftest import run_tracetag


def _doc(i: int, **over) -> dict:
    doc = {
        "trace_id": f"tr-{i:032x}",
        "experiment_id": "0",
        "name": "t",
        "timestamp_ms": 1_700_000_000_000 + i,
        "execution_time_ms": i % 100,
        "status": "OK",
        "tags": {"n": str(i)},
        "metadata": {},
        "request_preview": None,
        "response_preview": None,
        "client_request_id": None,
    }
    doc.update(over)
    return doc


def _all(store: Store) -> dict[str, dict]:
    with store.snapshot() as snap:
        return {d["trace_id"]: d for d in snap.iter_docs()}


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file()}


def test_put_tag_compact_roundtrip(store_path):
    store = Store(store_path)
    store.put_traces([(_doc(i), [{"span_id": f"{i:016x}", "name": "root"}]) for i in range(5)])
    client = TracetagClient(store)
    client.set_trace_tag(_doc(1)["trace_id"], "color", "blue")
    before = _all(store)
    assert before[_doc(1)["trace_id"]]["tags"] == {"n": "1", "color": "blue"}
    result = store.compact()
    assert result["records"] == 2
    after = _all(store)
    assert after == before
    # The base is valid TinyDB JSON and one document per line.
    data = orjson.loads(store_path.read_bytes())
    assert data["_meta"]["1"]["schema_version"] == SCHEMA_VERSION
    assert len(store_path.read_bytes().splitlines()) == 3 + 5 + 1
    with store.snapshot() as snap:
        doc = snap.get(_doc(3)["trace_id"])
        assert snap.spans(doc) == [{"span_id": f"{3:016x}", "name": "root"}]


def test_tinydb_reads_the_base(store_path):
    store = Store(store_path)
    store.put_traces([(_doc(i), []) for i in range(3)])
    store.compact()
    db = open_tinydb(store_path)
    doc = db.table("traces").get(doc_id=_doc(2)["trace_id"])
    assert doc["tags"] == {"n": "2"}
    assert len(db.table("traces")) == 3


def test_reads_never_write(store_path, conformance_store, cli):
    before = _files(store_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in store_path.parent.iterdir()}
    assert cli("search", "-f", "status = 'ERROR'", "-o", "ids").exit_code == 0
    assert cli("show", "tr-6663f3d7173cfa73b65948ca5fbc00b3").exit_code == 0
    assert cli("store", "check").exit_code == 0
    assert cli("stats", "-g", "tags.environment").exit_code == 0
    assert _files(store_path) == before
    assert {p.name: p.stat().st_mtime_ns for p in store_path.parent.iterdir()} == mtimes


@pytest.mark.parametrize(
    "args",
    [
        ["search", "-o", "ids"],
        ["stats"],
        ["tag", "set", "tr-a", "k=v"],
        ["tag", "set", "-f", "status = 'OK'", "k=v"],
        ["delete", "-f", "status = 'OK'", "-y"],
        ["tags", "keys"],
        ["export"],
    ],
)
def test_a_mistyped_store_is_an_error_and_creates_nothing(tmp_path, cli, args):
    path = tmp_path / "nothing" / "store.json"
    result = cli("--store", str(path), *args)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"tracetag: error: {path}: no tracetag store here (check --store or $TRACETAG_STORE; "
        "'tracetag import FILE' or 'tracetag demo' creates one)\n"
    )
    assert not path.parent.exists()


def test_the_library_reads_a_missing_store_as_empty_and_creates_nothing(tmp_path):
    path = tmp_path / "nothing" / "store.json"
    client = TracetagClient(path)
    assert client.search_traces() == []
    assert client.update_tags(["tr-a"], set={"k": "v"}).not_found == ["tr-a"]
    assert not path.parent.exists()


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"hello, this is a README\n", "not a tracetag store"),
        (b'{"_default": {"1": {"a": 1}}}', "not a tracetag store"),
        (b"PLACEHOLDER", "damaged store"),
        (b"TRUNCATED", "damaged store"),
        (b"DAMAGED_LINE", "damaged store"),
    ],
)
def test_damaged_or_foreign_file_is_refused_and_untouched(
    store_path, local_conformance_store, cli, content, kind
):
    good = store_path.read_bytes()
    if content == b"PLACEHOLDER":
        content = good[:200] + b"\x00garbage" + good[260:]
    elif content == b"TRUNCATED":
        content = good[: len(good) // 2]
    elif content == b"DAMAGED_LINE":  # a document cut short, where a filter's bytes are
        line = next(ln for ln in good.split(b"\n") if b'"production"' in ln)
        content = good.replace(line, line[: line.index(b'"production"') + 12])
    store_path.write_bytes(content)
    journal = store_path.with_name("store.json-journal")
    journal.unlink()
    before = _files(store_path)
    for args in (
        ["search"],
        ["search", "-f", "tags.environment = 'production'"],
        ["tag", "set", "tr-6663f3d7173cfa73b65948ca5fbc00b3", "a=b"],
        ["demo", "-n", "2"],
    ):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(store_path) in lines[0] and kind in lines[0]
        assert "Traceback" not in result.output
    assert _files(store_path) == before


@pytest.mark.parametrize(
    "url",
    ["postgresql:/tracetag@127.0.0.1:5432/db", "mysql://u:secret@host/db", "sqlite:///t.db"],
)
def test_a_url_of_no_known_store_is_refused_and_creates_no_folder(tmp_path, monkeypatch, cli, url):
    # Taken as a path, each of these made a folder named "postgresql:", "mysql:" or "sqlite:"
    # in the working directory and a store inside it.
    monkeypatch.chdir(tmp_path)
    for args in (["tag", "set", "tr-a", "k=v"], ["demo", "-n", "2"], ["search"]):
        result = cli("--store", url, *args)
        assert result.exit_code == 3, result.output
        assert result.stderr.count("\n") == 1 and "not a store tracetag can open" in result.stderr
        assert "secret" not in result.stderr
    with pytest.raises(NotAStore, match="postgresql://USER@HOST/DB"):
        TracetagClient(url).search_traces()
    assert list(tmp_path.iterdir()) == []


def test_a_file_url_is_its_path(tmp_path, cli):
    path = tmp_path / "my store.json"
    assert cli("--store", path.as_uri(), "demo", "-n", "3").exit_code == 0
    assert len(TracetagClient(path).search_traces()) == 3
    result = cli("--store", "file://elsewhere/t.json", "search")
    assert result.exit_code == 3 and "file:///path" in result.stderr


def test_directory_as_store_uses_store_json_inside(tmp_path, cli):
    d = tmp_path / "mystore"
    d.mkdir()
    assert cli("--store", str(d), "experiments", "create", "x").exit_code == 0
    assert (d / "store.json").exists()


def test_migration_from_schema_1(store_path, cli):
    v1 = {
        "_meta": {"1": {"format": "tracetag", "schema_version": 1, "generation": 3}},
        "experiments": {},
        "traces": {
            "1": {
                "request_id": "tr-" + "a" * 32,
                "experiment_id": "0",
                "name": "old",
                "timestamp_ms": 1000,
                "execution_time_ms": 7,
                "status": "OK",
                "tags": [["environment", "production"], ["team", "search"]],
                "metadata": {},
            }
        },
    }
    store_path.write_bytes(orjson.dumps(v1))
    before = store_path.read_bytes()
    result = cli("search", "-f", "tags.environment = 'production'", "-o", "ids")
    assert result.stdout.split() == ["tr-" + "a" * 32]
    assert store_path.read_bytes() == before  # reads migrate in memory only
    assert cli("tag", "set", "tr-" + "a" * 32, "reviewed=yes").exit_code == 0
    data = orjson.loads(store_path.read_bytes())
    assert data["_meta"]["1"]["schema_version"] == SCHEMA_VERSION
    assert data["traces"]["tr-" + "a" * 32]["tags"] == {
        "environment": "production",
        "team": "search",
    }
    tags = TracetagClient(store_path).get_trace("tr-" + "a" * 32).info.tags
    assert tags == {"environment": "production", "team": "search", "reviewed": "yes"}


def test_newer_schema_is_refused(store_path, cli):
    store_path.write_bytes(
        orjson.dumps({"_meta": {"1": {"format": "tracetag", "schema_version": 99}}})
    )
    result = cli("search")
    assert result.exit_code == 3 and "newer tracetag" in result.stderr


def test_torn_journal_tail_is_ignored_then_cut(store_path):
    store = Store(store_path)
    store.put_traces([(_doc(i), []) for i in range(3)])
    TracetagClient(store).set_trace_tag(_doc(0)["trace_id"], "k", "v")
    journal = store.journal_path
    intact = journal.read_bytes()
    with open(journal, "ab") as f:
        f.write(b'0badc0de {"op": "tag", "ids": ["tr-')  # a writer died mid-record
    fresh = Store(store_path)
    docs = _all(fresh)
    assert len(docs) == 3 and docs[_doc(0)["trace_id"]]["tags"]["k"] == "v"
    report = check(fresh)
    assert report.ok and any("unfinished write" in w for w in report.warnings)
    TracetagClient(fresh).set_trace_tag(_doc(1)["trace_id"], "k", "w")
    assert journal.read_bytes().startswith(intact)
    assert b"0badc0de" not in journal.read_bytes()
    assert _all(Store(store_path))[_doc(1)["trace_id"]]["tags"]["k"] == "w"


def test_damaged_journal_record_is_reported_and_repaired(store_path, cli):
    store = Store(store_path)
    store.put_traces([(_doc(i), []) for i in range(3)])
    client = TracetagClient(store)
    client.set_trace_tag(_doc(0)["trace_id"], "a", "1")
    client.set_trace_tag(_doc(1)["trace_id"], "b", "2")
    journal = store.journal_path
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"a"', b'"X"')  # checksum no longer matches
    journal.write_bytes(b"\n".join(lines))
    result = cli("search")
    assert result.exit_code == 3 and "damaged journal, record 2" in result.stderr
    result = cli("store", "check")
    assert result.exit_code == 3 and "record 2 is damaged" in result.stdout
    result = cli("store", "repair")
    assert result.exit_code == 0, result.output
    backups = list(store_path.parent.glob("store.json-backup-*"))
    assert len(backups) == 1 and (backups[0] / "store.json-journal").read_bytes() == b"\n".join(
        lines
    )
    docs = _all(Store(store_path))
    assert len(docs) == 3
    assert "a" not in docs[_doc(0)["trace_id"]]["tags"]  # the damaged record is dropped...
    assert docs[_doc(1)["trace_id"]]["tags"]["b"] == "2"  # ...the rest kept
    assert cli("store", "check").exit_code == 0


def test_stale_journal_after_interrupted_compaction_is_ignored(store_path):
    store = Store(store_path)
    store.put_traces([(_doc(i), []) for i in range(3)])
    TracetagClient(store).set_trace_tag(_doc(0)["trace_id"], "k", "v1")
    old_journal = store.journal_path.read_bytes()
    store.compact()
    TracetagClient(store).set_trace_tag(_doc(0)["trace_id"], "k", "v2")
    store.compact()
    # Crash between the two renames of a compaction: an older journal beside a newer base.
    store.journal_path.write_bytes(old_journal)
    docs = _all(Store(store_path))
    assert docs[_doc(0)["trace_id"]]["tags"]["k"] == "v2"
    TracetagClient(Store(store_path)).set_trace_tag(_doc(1)["trace_id"], "k", "x")
    docs = _all(Store(store_path))
    assert (
        docs[_doc(0)["trace_id"]]["tags"]["k"] == "v2"
        and docs[_doc(1)["trace_id"]]["tags"]["k"] == "x"
    )


def test_automatic_compaction_keeps_everything(store_path):
    store = Store(store_path, compact_bytes=2000)
    client = TracetagClient(store)
    store.put_traces([(_doc(i), []) for i in range(20)])
    for i in range(60):
        client.set_trace_tag(_doc(i % 20)["trace_id"], f"k{i}", str(i))
    with store.snapshot() as snap:
        assert snap.base.generation > 3  # it compacted several times
    docs = _all(Store(store_path))
    for i in range(60):
        assert docs[_doc(i % 20)["trace_id"]]["tags"][f"k{i}"] == str(i)


WRITER = r"""
import sys, os
from tracetag.store import Store
from tracetag.api import TracetagClient
store = Store(sys.argv[1], compact_bytes=int(sys.argv[2]), durability=sys.argv[4])
client = TracetagClient(store)
start = int(sys.argv[3])
doc = lambda i: {"trace_id": "tr-%032x" % i, "experiment_id": "0", "name": "t", "timestamp_ms": i,
    "execution_time_ms": 1, "status": "OK", "tags": {}, "metadata": {}}
i = start
while True:
    store.put_traces([(doc(i), [{"span_id": "%016x" % i, "name": "s", "payload": "x" * 300}])])
    client.set_trace_tag("tr-%032x" % i, "acked", "yes")
    print(i, flush=True)
    i += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["full", "process"])
def test_sigkill_at_any_moment_keeps_every_acknowledged_write(store_path, durability):
    """A writer killed mid-write (append, fsync or compaction) leaves a loadable store with
    every write it had acknowledged, at both durability levels (kill -9 is a process crash)."""
    acked: set[int] = set()
    start = 0
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store_path), "3000", str(start), durability],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is up and has acknowledged a write
        time.sleep(0.05 + 0.07 * round_)  # then dies somewhere in the following writes
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        got = [int(x) for x in (first + out).split()]
        acked.update(got)
        start = max(got) + 10
        docs = _all(Store(store_path))
        with Store(store_path).snapshot() as snap:
            for i in got[-5:]:
                spans = snap.spans(snap.require(f"tr-{i:032x}"))
                assert spans[0]["span_id"] == f"{i:016x}"
        missing = [
            i for i in acked if docs.get(f"tr-{i:032x}", {}).get("tags", {}).get("acked") != "yes"
        ]
        assert not missing, f"round {round_}: lost acknowledged writes {missing[:5]}"
    assert check(Store(store_path)).ok


TAGGER = r"""
import sys
from tracetag.store import Store
from tracetag.api import TracetagClient
client = TracetagClient(Store(sys.argv[1], compact_bytes=int(sys.argv[3])))
worker = sys.argv[2]
for i in range(int(sys.argv[4])):
    client.set_trace_tag("tr-%032x" % (i % 10), f"w{worker}_{i}", str(i))
"""


@pytest.mark.slow
def test_four_processes_250_tag_writes_each_lose_nothing(store_path):
    Store(store_path).put_traces([(_doc(i), []) for i in range(10)])
    procs = [
        subprocess.Popen([sys.executable, "-c", TAGGER, str(store_path), str(w), "20000", "250"])
        for w in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    docs = _all(Store(store_path))
    tags = {k for d in docs.values() for k in d["tags"]}
    expected = {f"w{w}_{i}" for w in range(4) for i in range(250)}
    assert expected <= tags
    with Store(store_path).snapshot() as snap:
        assert snap.base.generation > 2  # compactions ran concurrently with writers


RECORDER = r"""
import sys, tracetag
tracetag.set_store(sys.argv[1])

@tracetag.trace
def child(x):
    return x * 2

@tracetag.trace
def handle(i):
    tracetag.update_current_trace(tags={"proc": sys.argv[2], "i": i})
    return child(i)

for i in range(int(sys.argv[3])):
    handle(i)
"""


def test_two_processes_recording_300_traces_each(store_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", RECORDER, str(store_path), name, "300"])
        for name in ("a", "b")
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    traces = TracetagClient(store_path).search_traces(max_results=None)
    assert len(traces) == 600
    assert sorted((t.info.tags["proc"], int(t.info.tags["i"])) for t in traces) == sorted(
        (p, i) for p in "ab" for i in range(300)
    )
    assert all(len(t.data.spans) == 2 for t in traces[:20])


def test_cli_subprocess_writes_while_another_reads(conformance_store):
    """A CLI batch in one process and searches in another: readers always see a whole state."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetag", "tag", "set", "--filter", "status = 'OK'", "batch=1"],
        env={**os.environ, "TRACETAG_STORE": str(conformance_store)},
    )
    counts = set()
    reads_while_running = 0
    store = open_backend(conformance_store)
    while proc.poll() is None:
        with store.snapshot() as snap:
            counts.add(sum(1 for d in snap.iter_docs() if d["tags"].get("batch") == "1"))
        reads_while_running += 1
    assert proc.wait() == 0
    with store.snapshot() as snap:
        counts.add(sum(1 for d in snap.iter_docs() if d["tags"].get("batch") == "1"))
    assert counts <= {0, 272}  # all or nothing, never a partial batch
    # The guard: reads ran while the writer ran and saw the state before the write, so the
    # test did overlap a write (a fast machine that finished first would prove nothing).
    assert reads_while_running >= 2 and 0 in counts and 272 in counts


def test_not_a_store_error_from_library(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("[1, 2, 3]")
    with pytest.raises(NotAStore):
        Store(p).snapshot()
    p.write_text('{"_meta": {"1": {"format": "tracetag", "schema_version": 2}}, "traces": {')
    with pytest.raises(StoreCorrupted):
        Store(p).snapshot()


def test_subprocess_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json at all")
    proc = run_tracetag("--store", str(bad), "search")
    assert proc.returncode == 3
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err and str(bad) in err


def test_repair_keeps_backup_of_every_file(store_path, local_conformance_store):
    before = _files(store_path)
    result = repair(Store(store_path))
    backup = Path(result["backup"])
    for name in ("store.json", "store.json-journal", "store.json-spans"):
        assert (backup / name).read_bytes() == before[name]
    assert result["traces"] == 320
    assert len(_all(Store(store_path))) == 320


BATCH = r"""
import sys
from tracetag.store import Store
from tracetag.api import TracetagClient
client = TracetagClient(Store(sys.argv[1], compact_bytes=200_000))
round_ = sys.argv[2]
client.update_tags(filter_string="status = 'OK'", set={"round": round_, "filler": "x" * 50})
print("acked", round_, flush=True)
"""


@pytest.mark.slow
def test_sigkill_in_the_middle_of_long_batches(store_path):
    """Long batches over 20,000 traces, killed at different moments: each batch is all or
    nothing, and every acknowledged one survives."""
    n = 20_000
    docs = [(_doc(i, status="OK" if i % 2 else "ERROR"), []) for i in range(n)]
    Store(store_path).put_traces(docs)
    acked = 0
    outcomes = []
    for round_ in range(1, 9):
        proc = subprocess.Popen(
            [sys.executable, "-c", BATCH, str(store_path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.05 * round_)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if "acked" in out:
            acked = round_
        outcomes.append("acked" in out)
        docs = _all(Store(store_path))
        rounds = {d["tags"].get("round") for d in docs.values() if d["status"] == "OK"}
        assert len(rounds) == 1, f"round {round_}: a partial batch is visible: {rounds}"
        (seen,) = rounds
        assert seen is None or int(seen) >= acked  # an acknowledged batch is never lost
        assert len(docs) == n
    assert check(Store(store_path)).ok
    assert not all(outcomes), "no batch was interrupted: the test proved nothing"


def test_vacuum_reclaims_replaced_spans_and_keeps_every_reader_working(store_path, cli):
    from .conftest import TRACES_JSONL

    for _ in range(3):  # the same traces, re-imported: two copies of every span are dead
        assert cli("import", str(TRACES_JSONL)).exit_code == 0
    client = TracetagClient(store_path)
    before = {t.info.trace_id: t.data.spans for t in client.search_traces(max_results=None)}
    lazy = client.search_traces(max_results=5)  # spans not loaded yet
    held = Store(store_path).snapshot()  # a reader that stays open across the vacuum
    held_doc = held.get("tr-6663f3d7173cfa73b65948ca5fbc00b3")
    old_spans = store_path.with_name("store.json-spans")
    size = old_spans.stat().st_size
    report = check(Store(store_path))
    assert report.ok and size * 0.6 < report.facts["spans_dead_bytes"] < size * 0.7

    result = cli("store", "compact", "--vacuum")
    assert result.exit_code == 0, result.output
    assert f"span file: {size} ->" in result.stdout
    assert not old_spans.exists()
    (new_spans,) = store_path.parent.glob("store.json-spans.*")
    assert size * 0.3 < new_spans.stat().st_size < size * 0.4

    after = {
        t.info.trace_id: t.data.spans
        for t in TracetagClient(store_path).search_traces(max_results=None)
    }
    assert after == before
    assert [len(t.data.spans) for t in lazy] == [2] * 5  # relocated on first use
    assert len(held.spans(held_doc)) == 2  # the open snapshot still reads the old file
    held.close()
    report = check(Store(store_path))
    assert report.ok and report.facts["spans_dead_bytes"] == 0
    # Writes after the vacuum go to the new file, and repair keeps pointing at it.
    assert cli("import", str(TRACES_JSONL)).exit_code == 0
    assert cli("store", "repair").exit_code == 0
    final = {
        t.info.trace_id: t.data.spans
        for t in TracetagClient(store_path).search_traces(max_results=None)
    }
    assert final == before
    assert check(Store(store_path)).ok


def test_durability_level_from_environment(store_path, monkeypatch, cli):
    monkeypatch.setenv("TRACETAG_DURABILITY", "process")
    assert Store(store_path).durability == "process"
    assert cli("experiments", "create", "fast").exit_code == 0
    assert cli("experiments", "list", "-o", "json").stdout.count('"fast"') == 1
    monkeypatch.setenv("TRACETAG_DURABILITY", "sometimes")
    runtime.reset()  # a process opens its stores once; this test plays two processes
    result = cli("experiments", "list")
    assert result.exit_code == 2
    assert "durability must be 'full', 'process' or 'batched', not 'sometimes'" in result.stderr


def test_unwritable_folder_is_one_line_not_a_traceback(tmp_path, cli):
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: use a path under a file
            target = tmp_path / "a-file"
            target.write_text("x")
            store = target / "store.json"
        else:
            store = folder / "sub" / "store.json"
        result = cli("--store", str(store), "experiments", "create", "x")
        assert result.exit_code == 3
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("tracetag: error: ")
        assert "Traceback" not in result.output
    finally:
        folder.chmod(0o700)
