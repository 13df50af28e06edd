"""Hostile data, full disks, regex DoS, odd store paths, private files.

Nothing lost, nothing executed, nothing hung.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

import tracetag
from tracetag.api import TracetagClient
from tracetag.errors import InvalidInput, InvalidTag, NotAStore, StoreError
from tracetag.model import Span, Trace, TraceData, TraceInfo
from tracetag.store import Store

from .conftest import TRACES_JSONL, run_tracetag

BAD_IDS = ['bad"id\nx', "tr-x\n", 'evil"}, "x": {"y', "a\nb", "", "x" * 129, "tr x"]


def _trace(tid: str, **info) -> Trace:
    return Trace(
        TraceInfo(trace_id=tid, timestamp_ms=1_700_000_000_000, **info),
        TraceData([Span("a1", "root", start_time_ns=1, end_time_ns=2)]),
    )


def _readable(client: TracetagClient) -> int:
    client.store.compact()
    return len(client.search_traces(max_results=None))


# -- ids and documents: every write path --------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_IDS)
def test_log_traces_refuses_ids_that_would_break_the_store(client, bad):
    client.log_traces([_trace("tr-good")])
    with pytest.raises(InvalidInput, match="invalid trace id"):
        client.log_traces([_trace("tr-other"), _trace(bad)])
    assert _readable(client) == 1  # all or nothing, and the store still reads after compaction


@pytest.mark.parametrize("bad", BAD_IDS[:3])
def test_put_traces_refuses_bad_ids(store_path, bad):
    store = Store(store_path)
    with pytest.raises(InvalidInput):
        store.put_traces([({**TraceInfo(trace_id="x").to_dict(), "trace_id": bad}, [])])
    assert not store_path.exists()  # a refused first write creates nothing


@pytest.mark.parametrize("bad", BAD_IDS[:4])
def test_import_refuses_bad_ids_naming_the_line(client, bad):
    line = orjson.dumps(_trace(bad).to_dict())
    with pytest.raises(InvalidInput, match="line 2: invalid trace id"):
        client.import_traces(orjson.dumps(_trace("tr-ok").to_dict()) + b"\n" + line)


def test_old_store_with_a_bad_id_in_its_journal_stays_readable(client):
    """A store written before ids were checked: the id is JSON-encoded in the base."""
    client.log_traces([_trace("tr-good")])
    doc = {**_trace("tr-x").info.to_dict(), "trace_id": 'bad"id\nx'}
    client.store.write(lambda snap: ({"op": "put", "doc": doc}, None))
    assert _readable(client) == 2
    client.delete_traces(trace_ids=['bad"id\nx'])
    assert _readable(client) == 1


def test_tag_keys_with_a_trailing_newline_are_refused(client, cli):
    client.log_traces([_trace("tr-a")])
    with pytest.raises(InvalidTag):
        client.set_trace_tag("tr-a", "key\n", "v")
    r = cli("tag", "set", "tr-a", "key\n=value")
    assert r.exit_code == 2 and "invalid tag key" in r.stderr


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tags", {"": "x"}, "tag key"),
        ("tags", {"a=b": "x"}, "tag key"),
        ("tags", {"k\nnl": "x"}, "tag key"),
        ("tags", {"k" * 300: "x"}, "tag key"),
        ("tags", {"k": "v" * 100_000}, "limit is 8000"),
        ("tags", {"k": 5}, "must be a string"),
        ("metadata", {"k": {"a": 1}}, "must be a string"),
        ("execution_time_ms", "slow", "execution_time_ms"),
        ("timestamp_ms", 10**15, "out of range"),
        ("timestamp_ms", 2**70, "out of range"),
        ("name", {"a": 1}, "name must be a string"),
        ("experiment_id", "9" * 5000, "experiment id"),
    ],
)
def test_import_validates_like_tag_set(client, field, value, message):
    doc = _trace("tr-a").to_dict()
    doc["info"][field] = "PLACEHOLDER"
    data = orjson.dumps(doc).replace(b'"PLACEHOLDER"', _json(value))
    with pytest.raises(InvalidInput, match=message) as e:
        client.import_traces(data, "f.jsonl")
    assert "f.jsonl: line 1" in str(e.value)
    assert not client.store.path.exists()


def _json(value) -> bytes:
    return str(value).encode() if isinstance(value, int) else orjson.dumps(value)


def test_import_refuses_spans_nested_too_deep(client):
    with pytest.raises(InvalidInput, match="line 1: spans of tr-a nest deeper"):
        client.import_traces(_deep_json(_trace("tr-a").to_dict(), 600))


def _deep_json(doc: dict, depth: int) -> bytes:
    doc["spans"][0]["inputs"] = None
    text = orjson.dumps(doc).decode()
    return text.replace('"inputs":null', '"inputs":' + "[" * depth + "1" + "]" * depth).encode()


def test_import_accepts_a_byte_order_mark(client):
    data = b"\xef\xbb\xbf" + TRACES_JSONL.read_bytes()
    assert client.import_traces(data).imported == 320


def test_a_deleted_tag_with_an_invalid_key_can_be_deleted(client):
    client.log_traces([_trace("tr-a")])
    client.store.write(lambda snap: ({"op": "tag", "ids": ["tr-a"], "set": {"a=b": "1"}}, None))
    client.delete_trace_tag("tr-a", "a=b")
    assert client.get_trace("tr-a").info.tags == {}


# -- a full disk --------------------------------------------------------------------------------


def test_a_short_write_is_cut_back_and_reported(client, monkeypatch):
    """os.write may write part of a buffer (a nearly full disk); the rest must not be lost."""
    client.log_traces([_trace("tr-a")])
    real_write = os.write
    calls = {"n": 0}

    def short_then_full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(StoreError, match="No space left on device"):
        client.set_trace_tag("tr-a", "k", "v")
    monkeypatch.setattr(os, "write", real_write)
    assert Store(client.store.path).snapshot().overlay.torn_bytes == 0
    assert client.get_trace("tr-a").info.tags == {}
    client.set_trace_tag("tr-a", "k", "w")
    assert TracetagClient(client.store.path).get_trace("tr-a").info.tags == {"k": "w"}


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return r.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    if not _tmpfs(mnt, "2m"):
        if os.environ.get("CI"):
            pytest.fail("CI must be able to mount a tmpfs for the disk-full test")
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.slow
def test_a_full_disk_loses_no_acknowledged_write(small_disk):
    store = small_disk / "store.json"
    acknowledged: dict[str, str] = {}
    failures = 0
    from tracetag.interop import trace_from_any

    lines = TRACES_JSONL.read_bytes().splitlines()
    traces = [trace_from_any(orjson.loads(line)) for line in lines]
    client = TracetagClient(store)
    for n in range(400):
        batch = [
            Trace(
                TraceInfo(**{**t.info.to_dict(), "trace_id": f"tr-{n}-{i}"}),
                TraceData(t.spans),
            )
            for i, t in enumerate(traces[:20])
        ]
        try:
            client.log_traces(batch)
        except StoreError as e:
            assert "No space left" in str(e)
            failures += 1
            if failures > 5:
                break
            continue
        for t in batch:
            acknowledged[t.info.trace_id] = ""
        try:
            client.set_trace_tag(batch[0].info.trace_id, "k", str(n))
            acknowledged[batch[0].info.trace_id] = str(n)
        except StoreError:
            failures += 1
    assert failures, "the disk never filled up"
    fresh = TracetagClient(store)
    for tid, value in acknowledged.items():
        trace = fresh.get_trace(tid)
        assert len(trace.spans) == len(traces[0].spans) or trace.spans
        if value:
            assert trace.info.tags["k"] == value
    r = run_tracetag(
        "--store", str(store), "tag", "set", "--filter", "status = 'OK'", "x=" + "y" * 7000
    )
    assert r.returncode in (0, 3)
    if r.returncode == 3:
        assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1


# -- regular expressions and the lock ---------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        "tags.x RLIKE '(a+)+$'",
        "tags.x LIKE '%a%a%a%a%a%a%c'",
        "tags.x ILIKE '%a%a%a%a%a%a%c'",
        "tags.x RLIKE '(a|aa)*c'",
    ],
)
def test_pathological_patterns_finish(tmp_path, flt):
    store = tmp_path / "s.json"
    TracetagClient(store).log_traces([_trace("tr-a", tags={"x": "a" * 7999 + "!"})])
    # Python's re takes hours here; the whole command runs in a subprocess with a deadline.
    r = subprocess.run(
        [sys.executable, "-m", "tracetag", "--store", str(store), "search", "-f", flt, "-o", "ids"],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout == b""


def test_a_batch_plans_without_holding_the_lock(conformance_client):
    """While a slow filter is planned, other writers (a traced request) go on; a trace they
    change meanwhile is planned again under the lock."""
    client = conformance_client
    victim = client.search_traces(filter_string="status = 'OK'", max_results=1)[0].info.trace_id
    planning = threading.Event()
    release = threading.Event()

    def progress(done, total):
        planning.set()
        release.wait(30)

    result = {}

    def batch():
        result["report"] = client.update_tags(
            filter_string="tags.batch_me = 'yes'", set={"seen": "1"}, progress=progress
        )

    t = threading.Thread(target=batch)
    t.start()
    assert planning.wait(30)
    TracetagClient(client.store.path).set_trace_tag(victim, "batch_me", "yes")
    release.set()
    t.join(30)
    assert [c.trace_id for c in result["report"].changed] == [victim]
    assert TracetagClient(client.store.path).get_trace(victim).info.tags["seen"] == "1"


# -- store paths ------------------------------------------------------------------------------


def test_a_character_device_is_not_a_store():
    with pytest.raises(NotAStore, match="device"):
        TracetagClient("/dev/null").search_traces()
    r = run_tracetag("--store", "/dev/null", "tag", "set", "tr-a", "k=v")
    assert r.returncode == 3 and b"device" in r.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "store.json"
    os.mkfifo(fifo)
    r = run_tracetag("--store", str(fifo), "search")
    assert r.returncode == 3 and b"FIFO" in r.stderr


def test_a_symlinked_store_keeps_its_files_beside_the_real_file(tmp_path):
    real = tmp_path / "real" / "store.json"
    real.parent.mkdir()
    TracetagClient(real).log_traces([_trace("tr-a")])
    link = tmp_path / "link.json"
    link.symlink_to(real)
    client = TracetagClient(link)
    client.set_trace_tag("tr-a", "k", "v")
    client.store.compact()
    assert link.is_symlink()
    assert not (tmp_path / "link.json-journal").exists()
    assert TracetagClient(real).get_trace("tr-a").info.tags == {"k": "v"}


def test_a_store_folder_whose_store_json_is_a_folder(tmp_path):
    (tmp_path / "d" / "store.json").mkdir(parents=True)
    r = run_tracetag("--store", str(tmp_path / "d"), "search")
    assert r.returncode == 3 and b"directory" in r.stderr


def test_an_mlflow_export_is_not_repaired_into_an_empty_store(tmp_path):
    export = tmp_path / "traces.jsonl"
    export.write_bytes(TRACES_JSONL.read_bytes())
    for args in (["search"], ["store", "repair"]):
        r = run_tracetag("--store", str(export), *args)
        assert r.returncode == 3
        assert b"use 'tracetag import FILE'" in r.stderr and b"repair" not in r.stderr
    assert export.read_bytes() == TRACES_JSONL.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["traces.jsonl"]


def test_vacuum_of_a_damaged_document_is_one_line(client):
    client.log_traces([_trace("tr-a"), _trace("tr-b")])
    client.store.compact()
    data = client.store.path.read_bytes().replace(b'"trace_id":"tr-b"', b'"trace_id":"tr-b"}}}')
    client.store.path.write_bytes(data)
    r = run_tracetag("--store", str(client.store.path), "store", "compact", "--vacuum")
    assert r.returncode == 3 and b"Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- private files ----------------------------------------------------------------------------


def test_files_are_private_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "umask", os.umask)  # leave the process umask as it is
    old = os.umask(0o022)
    try:
        folder = tmp_path / "data" / "tracetag"
        client = TracetagClient(folder / "store.json")
        client.log_traces([_trace("tr-a")])
        client.set_trace_tag("tr-a", "k", "v")
        client.store.compact()
        out = tmp_path / "export.jsonl"
        assert run_tracetag("--store", str(folder), "export", "-O", str(out)).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in [*folder.iterdir(), out]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_deliberately_shared_store_stays_shared(tmp_path):
    store = tmp_path / "store.json"
    client = TracetagClient(store)
    client.log_traces([_trace("tr-a")])
    for f in tmp_path.iterdir():
        f.chmod(0o660)
    client.set_trace_tag("tr-a", "k", "v")
    client.store.compact(vacuum=True)
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o660, f


# -- leftovers of killed compactions ----------------------------------------------------------


def test_orphans_are_reported_and_cleaned(client, cli):
    client.log_traces([_trace("tr-a")])
    client.store.compact(vacuum=True)
    folder = client.store.path.parent
    (folder / ".store.json.tmp-99999-1").write_bytes(b"x" * 1000)
    (folder / "store.json-spans.1").write_bytes(b"y" * 1000)
    r = cli("store", "check")
    assert r.exit_code == 0 and "2 files left by interrupted compactions or imports" in r.stdout
    client.store.compact()
    assert not (folder / ".store.json.tmp-99999-1").exists()
    assert not (folder / "store.json-spans.1").exists()
    assert len(client.get_trace("tr-a").spans) == 1


# -- the parser cache -------------------------------------------------------------------------


def test_the_parser_cache_is_not_used_from_a_folder_others_can_write(tmp_path, monkeypatch):
    from tracetag.filters import parser

    cache = tmp_path / "cache"
    (cache / "tracetag").mkdir(parents=True)
    (cache / "tracetag").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert parser._cache_file("grammar") is False
    (cache / "tracetag").chmod(0o700)
    assert str(parser._cache_file("grammar")).startswith(str(cache / "tracetag"))
    target = tmp_path / "victim"
    target.write_text("mine")
    name = Path(str(parser._cache_file("grammar")))
    name.symlink_to(target)
    assert parser._cache_file("grammar") is False


# -- tracing never raises -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: tracetag.update_current_trace(tags={"a": None, "ok": "1"}),
        lambda: tracetag.update_current_trace(tags={"a": "x" * 9000, "ok": "1"}),
        lambda: tracetag.update_current_trace(tags={"user id!": "x", "ok": "1"}),
        lambda: tracetag.update_current_trace(tags={"ok": "1"}, metadata={"m": None}),
        lambda: tracetag.get_current_active_span().set_attribute("x", object()),
        lambda: tracetag.get_current_active_span().set_inputs({1, 2, object()}),
        lambda: tracetag.get_current_active_span().set_status(12),
        lambda: tracetag.update_current_trace(tags={"ok": "1"}, request_preview=object()),
    ],
)
def test_tracing_calls_never_raise_inside_the_traced_function(client, call, caplog):
    tracetag.set_store(client.store.path)

    @tracetag.trace
    def handler():
        tracetag.update_current_trace(tags={"ok": "1"})
        call()
        return "done"

    with caplog.at_level(logging.WARNING, "tracetag"):
        assert handler() == "done"
    trace = client.get_trace(tracetag.get_last_active_trace_id())
    assert trace.info.status == "OK"
    assert trace.info.tags.get("ok") == "1"


def test_an_invalid_tag_is_noted_on_the_trace_and_warned_once(client, caplog):
    tracetag.set_store(client.store.path)

    @tracetag.trace
    def handler():
        tracetag.update_current_trace(tags={"a": None, "b": "x" * 9000, "ok": "1"})

    with caplog.at_level(logging.WARNING, "tracetag"):
        handler()
        handler()
    trace = client.get_trace(tracetag.get_last_active_trace_id())
    notes = [e for e in trace.spans[0].events if e.name == "tracetag.warning"]
    assert len(notes) == 2 and "'a'" in notes[0].attributes["message"]
    assert trace.info.tags == {"ok": "1"}
    assert len([r for r in caplog.records if "update_current_trace" in r.message]) == 1


def test_deeply_nested_inputs_are_kept_as_text(client):
    tracetag.set_store(client.store.path)
    deep: list = []
    for _ in range(230):
        deep = [deep]

    @tracetag.trace
    def handler(x):
        return 1

    handler(deep)
    trace = client.get_trace(tracetag.get_last_active_trace_id())
    inputs = trace.spans[0].inputs
    assert isinstance(inputs, str) and inputs.count("[") == 231


def test_a_compaction_that_fails_after_a_write_only_warns(cli, client, monkeypatch):
    """The write is durable and acknowledged; the failed compaction leaves valid files."""
    client.log_traces([_trace("tr-a")])
    from tracetag.store import local as store_module

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "atomic_write", full)
    monkeypatch.setattr(store_module, "COMPACT_MIN_BYTES", 0)
    r = cli("tag", "set", "tr-a", "k=v")
    assert r.exit_code == 0
    assert "tracetag: warning: compaction postponed" in r.stderr
    monkeypatch.undo()
    assert TracetagClient(client.store.path).get_trace("tr-a").info.tags == {"k": "v"}
