"""A big JSON file into the file store: read a trace at a time, staged beside the store, folded
into the base in one atomic write. The answers equal the import that reads a file whole; a bad
record still writes nothing; memory is measured in benchmarks/import_big.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
from conftest import TRACES_JSONL

from tracetag import importing
from tracetag.api import TracetagClient
from tracetag.store import files
from tracetag.store.paths import orphan_files

LINES = TRACES_JSONL.read_bytes().splitlines()


@pytest.fixture
def big(monkeypatch):
    """Every file counts as big (the conformance file is 1 MB, not 64)."""
    monkeypatch.setattr(importing, "BIG_FILE", 0)


def _store_files(path) -> dict:
    return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*")}


def _export(path) -> bytes:
    out = path.parent / "export.jsonl"
    with open(out, "wb") as fh:
        TracetagClient(path).export_traces(fh)
    return out.read_bytes()


def _whole_and_staged(tmp_path, monkeypatch, data: bytes, name: str):
    src = tmp_path / name
    src.write_bytes(data)
    whole, staged = tmp_path / "whole" / "s.json", tmp_path / "staged" / "s.json"
    a = TracetagClient(whole).import_files([str(src)])
    monkeypatch.setattr(importing, "BIG_FILE", 0)
    b = TracetagClient(staged).import_files([str(src)])
    monkeypatch.setattr(importing, "BIG_FILE", 64 << 20)
    return (whole, a), (staged, b)


@pytest.mark.parametrize("form", ["lines", "array", "pretty array", "bom"])
def test_a_big_file_imports_as_a_file_read_whole_does(tmp_path, monkeypatch, form):
    values = [orjson.loads(line) for line in LINES]
    data = {
        "lines": b"\n".join(LINES) + b"\n",
        "array": orjson.dumps(values),
        "pretty array": json.dumps(values, indent=2).encode(),
        "bom": b"\xef\xbb\xbf" + b"\n".join(LINES),
    }[form]
    (whole, a), (staged, b) = _whole_and_staged(tmp_path, monkeypatch, data, "t.json")
    assert (a.new, a.updated) == (b.new, b.updated) == (320, 0)
    assert _export(staged) == _export(whole)
    client = TracetagClient(staged)
    assert client.store.info()["journal_records"] == 0  # one new base, no journal record
    exps = TracetagClient(whole).list_experiments()
    assert [e["experiment_id"] for e in client.list_experiments()] == [
        e["experiment_id"] for e in exps
    ]
    assert len(exps) > 1
    assert [p.name for p in staged.parent.iterdir() if "-import." in p.name] == []


def test_a_big_import_keeps_the_journal_and_replaces_what_it_brings(tmp_path, big, cli):
    path = tmp_path / "s.json"
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"\n".join(LINES[:100]))
    client = TracetagClient(path)
    client.import_files([str(src)])
    ids = [orjson.loads(line)["info"]["trace_id"] for line in LINES]
    client.set_trace_tag(ids[5], "reviewed", "yes")  # a trace the next import brings again
    client.set_trace_tag(ids[50], "kept", "yes")  # one it does not
    # The next file: traces 0-9 again (5 replaced, its journal tag gone with it), 200 new,
    # and trace 300 twice (the last one wins).
    again = [orjson.loads(line) for line in LINES[:10] + LINES[100:300] + LINES[300:301]]
    twice = {**again[-1], "info": {**again[-1]["info"], "tags": {"which": "second"}}}
    src.write_bytes(b"\n".join(orjson.dumps(v) for v in [again[-1], *again[:-1], twice]))
    summary = client.import_files([str(src)])
    assert (summary.new, summary.updated) == (201, 10)
    assert client.get_trace(ids[5]).info.tags.get("reviewed") is None
    assert client.get_trace(ids[50]).info.tags["kept"] == "yes"
    assert client.get_trace(ids[300]).info.tags["which"] == "second"
    assert len(client.search_traces(max_results=None)) == 301
    out = cli("--store", str(path), "search", "-f", "tags.which = 'second'", "-o", "ids")
    assert out.stdout.split() == [ids[300]]


def test_a_big_import_beside_fewer_spans_takes_its_span_file_for_the_stores(
    tmp_path, monkeypatch, cli
):
    """The import's span records become the span file, the store's few appended to them and
    its documents (base, journal, tagged) pointed there: the same answers as a store that
    appended the import's records to its own, and a reader from before still reads its spans."""
    ids = [orjson.loads(line)["info"]["trace_id"] for line in LINES]
    first, then, rest = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    first.write_bytes(b"\n".join(LINES[:20]))
    then.write_bytes(b"\n".join(LINES[20:25]))
    rest.write_bytes(b"\n".join(LINES[25:]))
    for way in ("whole", "staged"):
        client = TracetagClient(tmp_path / way / "s.json")
        client.import_files([str(first)])  # (small files: read whole)
        client.store.compact()
        client.import_files([str(then)])  # (journal records)
        client.set_trace_tag(ids[3], "kept", "yes")
        with client.store.snapshot() as before:
            doc = before.get(ids[3])
            monkeypatch.setattr(importing, "BIG_FILE", 0 if way == "staged" else 64 << 20)
            assert client.import_files([str(rest)]).new == 295
            assert before.spans(doc) == client.store.read_spans(doc) != []
    whole, staged = tmp_path / "whole" / "s.json", tmp_path / "staged" / "s.json"
    assert _export(staged) == _export(whole)
    assert TracetagClient(staged).get_trace(ids[3]).info.tags["kept"] == "yes"
    assert not (tmp_path / "staged" / "s.json-spans").exists()  # (the old one, gone)
    assert [p.name for p in staged.parent.glob("s.json-spans*")] == ["s.json-spans.3"]
    assert [p.name for p in staged.parent.iterdir() if "-import." in p.name] == []
    assert cli("--store", str(staged), "store", "check").exit_code == 0


def test_an_import_whose_base_cannot_be_written_leaves_the_store_as_it_was(
    tmp_path, big, monkeypatch, cli
):
    """The staged span records were already made the store's next span file when the base
    write fails (a full disk): the old base still names the old one, so nothing changed, and
    the unnamed file goes with the next compaction."""
    from tracetag.store import local

    path, src = tmp_path / "s.json", tmp_path / "t.jsonl"
    src.write_bytes(b"\n".join(LINES[:20]))
    client = TracetagClient(path)
    client.import_files([str(src)])
    before, spans = _export(path), sorted(p.name for p in tmp_path.glob("s.json-spans*"))
    src.write_bytes(b"\n".join(LINES[20:]))

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local, "atomic_write", full)
    r = cli("--store", str(path), "import", str(src))
    assert r.exit_code != 0 and "No space left on device" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    monkeypatch.setattr(local, "atomic_write", files.atomic_write)
    assert _export(path) == before
    assert len(list(tmp_path.glob("s.json-spans*"))) == 2  # (the unnamed one, left behind)
    client.store.compact()
    assert sorted(p.name for p in tmp_path.glob("s.json-spans*")) == spans
    assert _export(path) == before
    assert cli("--store", str(path), "store", "check").exit_code == 0


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\n".join([*LINES[:3], b"{not json", *LINES[3:5]]), "line 4: invalid JSON"),
        (b"[" + b",".join([*LINES[:2], b'{"info": 1}']) + b"]", "item 3: not a trace"),
        (b"[" + b",".join(LINES[:2]) + b" x]", "item 2: expected ',' or ']'"),
        (b"[" + b",".join(LINES[:2]), "item 2: the file ends before the ']'"),
    ],
)
def test_a_bad_record_writes_nothing_and_says_where(tmp_path, big, cli, data, error):
    path = tmp_path / "s.json"
    TracetagClient(path).import_files([str(TRACES_JSONL)])
    TracetagClient(path).set_trace_tag(orjson.loads(LINES[0])["info"]["trace_id"], "k", "v")
    before = _store_files(path)
    src = tmp_path / "bad.json"
    src.write_bytes(data)
    result = cli("--store", str(path), "import", str(src))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"tracetag: error: {src}: {error}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _store_files(path) == before  # nothing written, no staging file left


def test_skip_invalid_imports_the_rest_of_a_big_file(tmp_path, big, cli):
    path = tmp_path / "s.json"
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"\n".join([LINES[0], b"{broken", LINES[1], b'{"info": {}}', LINES[2]]))
    result = cli("--store", str(path), "import", "--skip-invalid", str(src), "-o", "json")
    assert result.exit_code == 1  # (some records were skipped)
    report = json.loads(result.stdout)
    assert report["new"] == 3
    assert [r["line"] for r in report["invalid"]] == [2, 4]


def test_otlp_and_stdin_are_read_whole(tmp_path, big):
    """OTLP's spans must all be assembled before a trace exists; stdin has no size."""
    path = tmp_path / "s.json"
    client = TracetagClient(path)
    otlp = tmp_path / "o.json"
    otlp.write_text(json.dumps({"resourceSpans": []}))
    assert not importing.staged_import_applies(client, [str(otlp)], None)
    assert not importing.staged_import_applies(client, ["-"], None)
    assert importing.staged_import_applies(client, [str(TRACES_JSONL)], None)


@pytest.mark.slow
def test_kill_9_while_staging_leaves_the_store_as_it_was(tmp_path):
    """The store is untouched until the fold; the staged files of a killed import are
    garbage once its process is gone, and the next compaction removes them."""
    path = tmp_path / "s.json"
    TracetagClient(path).import_files([str(TRACES_JSONL)])
    before = _store_files(path)
    src = tmp_path / "t.jsonl"
    with open(src, "wb") as fh:
        for i in range(60):  # the same traces under other ids: slow enough to be killed
            for line in LINES:
                v = orjson.loads(line)
                v["info"]["trace_id"] = v["info"]["trace_id"][:-4] + f"{i:04d}"
                fh.write(orjson.dumps(v) + b"\n")
    script = textwrap.dedent(
        f"""
        from tracetag import importing
        from tracetag.api import TracetagClient
        importing.BIG_FILE = 0
        TracetagClient({str(path)!r}).import_files([{str(src)!r}])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    staged = path.with_name(f"s.json-import.{proc.pid}")
    while not (staged.exists() and staged.stat().st_size > 100_000):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    assert staged not in orphan_files(path, path.with_name("s.json-spans"))  # still running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _store_files(path) == before | {
        p.name: p.read_bytes() for p in tmp_path.glob("s.json-import.*")
    }
    assert staged in orphan_files(path, path.with_name("s.json-spans"))
    from typer.testing import CliRunner

    from tracetag.cli import app

    check = CliRunner().invoke(app, ["--store", str(path), "store", "check"])
    assert "left by interrupted compactions or imports" in check.stdout
    assert staged.name in check.stdout
    client = TracetagClient(path)
    client.store.compact()
    assert list(tmp_path.glob("s.json-import.*")) == []
    assert len(client.search_traces(max_results=None)) == 320


def test_a_write_while_the_import_stages_is_kept(tmp_path, big, monkeypatch):
    """Staging takes no lock: another process's tag write meanwhile lands in the journal,
    and the fold (under the lock) keeps it."""
    from tracetag.store.staging import Staged

    path = tmp_path / "s.json"
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"\n".join(LINES[:50]))
    TracetagClient(path).import_files([str(src)])
    other = orjson.loads(LINES[10])["info"]["trace_id"]
    real_put = Staged.put
    written: list[str] = []

    def put_and_meanwhile(self, *encoded):
        if not written:
            script = f"from tracetag.api import TracetagClient; TracetagClient({str(path)!r})"
            script += f".set_trace_tag({other!r}, 'meanwhile', 'yes')"
            subprocess.run([sys.executable, "-c", script], check=True)
            written.append(other)
        real_put(self, *encoded)

    monkeypatch.setattr(Staged, "put", put_and_meanwhile)
    src.write_bytes(b"\n".join(LINES[100:200]))
    summary = TracetagClient(path).import_files([str(src)])
    assert (summary.new, summary.updated) == (100, 0) and written
    client = TracetagClient(path)
    assert client.get_trace(other).info.tags["meanwhile"] == "yes"
    assert len(client.search_traces(max_results=None)) == 150


@pytest.mark.parametrize("workers", [1, 2])
def test_json_lines_encoded_by_worker_processes_number_lines_as_one_process(
    tmp_path, big, cli, monkeypatch, workers
):
    """The pieces a worker encodes are a few lines each here: the traces, their order and a
    bad line's number are those of one process reading the file."""
    monkeypatch.setattr(importing, "_PIECE", 4096)
    monkeypatch.setattr(importing, "_workers", lambda _path: workers)
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\n".join(LINES) + b"\n")
    path = tmp_path / "s.json"
    assert TracetagClient(path).import_files([str(good)]).new == 320
    monkeypatch.setattr(importing, "BIG_FILE", 64 << 20)
    whole = tmp_path / "whole" / "s.json"
    TracetagClient(whole).import_files([str(good)])
    assert _export(path) == _export(whole)
    monkeypatch.setattr(importing, "BIG_FILE", 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join([*LINES[:250], b"", b"{oops", *LINES[250:]]))
    result = cli("--store", str(tmp_path / "t.json"), "import", str(bad))
    assert result.stderr.startswith(f"tracetag: error: {bad}: line 252: invalid JSON")
    args = ("--store", str(tmp_path / "t.json"), "import", "--skip-invalid", "-o", "json")
    report = json.loads(cli(*args, str(bad)).stdout)
    assert [r["line"] for r in report["invalid"]] == [252] and report["new"] == 320


@pytest.mark.parametrize("form", ["lines", "array"])
def test_a_big_import_reports_its_progress_in_bytes(tmp_path, big, monkeypatch, form):
    monkeypatch.setattr(importing, "_PIECE", 4096)
    src = tmp_path / "t.json"
    values = [orjson.loads(line) for _ in range(4) for line in LINES]
    for i, v in enumerate(values):
        v["info"]["trace_id"] = v["info"]["trace_id"][:-4] + f"{i:04d}"
    if form == "lines":
        src.write_bytes(b"\n".join(orjson.dumps(v) for v in values))
    else:
        src.write_bytes(orjson.dumps(values))
    seen: list[tuple[int, int]] = []
    summary = TracetagClient(tmp_path / "s.json").import_files(
        [str(src)], progress=lambda done, total: seen.append((done, total))
    )
    assert summary.new == 1280
    size = src.stat().st_size
    assert len(seen) >= 2 and seen[-1] == (size, size)
    assert all(total == size for _d, total in seen)
    assert [d for d, _t in seen] == sorted(d for d, _t in seen) and seen[0][0] < size


def test_workers_end_when_the_import_stops_early_whatever_sigterm_does_here(
    tmp_path, big, monkeypatch
):
    """A worker does not inherit this process's SIGTERM handler (a recorder's flushes on
    SIGTERM): stopping at a bad record terminates the pool and returns at once."""
    import signal as signals

    monkeypatch.setattr(importing, "_PIECE", 4096)
    monkeypatch.setattr(importing, "_workers", lambda _path: 2)
    previous = signals.signal(signals.SIGTERM, lambda *_a: time.sleep(3600))
    try:
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b"\n".join([*LINES[:20], b"{oops", *LINES[20:]]))
        started = time.monotonic()
        with pytest.raises(importing.ImportFormatError, match="line 21"):
            TracetagClient(tmp_path / "s.json").import_files([str(bad)])
        assert time.monotonic() - started < 30
    finally:
        signals.signal(signals.SIGTERM, previous)
