"""The id index beside a big base: lookups by id through it give exactly what a search of the
base gives, whatever the journal holds, and an index that is stale, cut short, damaged or
killed while being written is never used."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from conftest import TRACES_JSONL

from tracetag.api import TracetagClient
from tracetag.store import Store, idindex
from tracetag.store.base import BaseFile


def _indexed(path) -> Store:
    """The store as a process sees it when its base is big enough for an index (every base,
    here: the conformance store is small)."""
    store = Store(path)
    store.id_index_min_bytes = 0
    return store


def _unindexed(path) -> Store:
    store = Store(path)
    store.id_index_min_bytes = 1 << 62
    return store


def _lookups(store: Store, ids) -> dict:
    """Each id looked up as ``show ID`` does: a snapshot of its own."""
    out = {}
    for tid in ids:
        with store.snapshot() as snap:
            out[tid] = snap.get(tid)
    return out


def _state(path) -> str:
    base = BaseFile(path)
    try:
        return idindex.state(base, idindex.index_path(path), 0)
    finally:
        base.close()


def test_lookups_through_the_index_equal_a_search_of_the_base(store_path):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    asked = [*ids, "tr-00000000000000000000000000000000", "tr-missing"]
    assert _state(store_path) == "missing"
    through_index = _lookups(_indexed(store_path), asked)
    assert _state(store_path) == "current"  # the first lookup built it
    assert through_index == _lookups(_unindexed(store_path), asked)
    assert sum(doc is not None for doc in through_index.values()) == 320
    report = TracetagClient(_indexed(store_path)).check()
    assert report.ok and report.facts["id_index"] == "current"


def test_journal_changes_and_a_compaction_are_seen_and_the_old_index_is_not_used(store_path):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    store = _indexed(store_path)
    _lookups(store, ids[:1])
    TracetagClient(store).set_trace_tag(ids[0], "seen", "yes")
    TracetagClient(store).delete_traces(trace_ids=[ids[1]])
    got = _lookups(_indexed(store_path), ids[:3])
    assert got[ids[0]]["tags"]["seen"] == "yes"
    assert got[ids[1]] is None and got[ids[2]] is not None
    store.compact()  # a new base: the index of the old one is stale
    assert _state(store_path) == "stale"
    again = _lookups(_indexed(store_path), ids)
    assert again == _lookups(_unindexed(store_path), ids)
    assert again[ids[0]]["tags"]["seen"] == "yes" and again[ids[1]] is None
    assert _state(store_path) == "current"


def test_a_damaged_or_cut_short_index_is_rebuilt_not_believed(store_path):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    _lookups(_indexed(store_path), ids[:1])
    path = idindex.index_path(store_path)
    data = bytearray(path.read_bytes())
    expected = _lookups(_unindexed(store_path), ids)
    # Entries zeroed in the middle (a bit rot): their traces would vanish if believed.
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(200)
    path.write_bytes(bytes(data))
    assert _state(store_path) == "stale"
    assert _lookups(_indexed(store_path), ids) == expected
    # Cut short, as by a kill in the middle of a write without the rename.
    path.write_bytes(path.read_bytes()[:-7])
    assert _state(store_path) == "stale"
    assert _lookups(_indexed(store_path), ids) == expected
    assert _state(store_path) == "current"


BUILD_LOOP = textwrap.dedent(
    """
    import os, sys
    from tracetag.store import idindex
    from tracetag.store.base import BaseFile
    from pathlib import Path

    path = Path(sys.argv[1])
    index = idindex.index_path(path)
    print("ready", flush=True)
    while True:
        base = BaseFile(path)
        idindex.build(base, index)
        base.close()
    """
)


def test_kill_9_while_the_index_is_written_leaves_it_right_or_unused(store_path):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    expected = _lookups(_unindexed(store_path), ids)
    rng = random.Random(7)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", BUILD_LOOP, str(store_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _state(store_path) in ("current", "missing", "stale")
        assert _lookups(_indexed(store_path), ids) == expected
    # A temporary file a kill left is named by `store check` and removed by the next compaction.
    left = [p.name for p in store_path.parent.iterdir() if ".tmp-ids-" in p.name]
    warnings = " ".join(TracetagClient(store_path).check().warnings)
    assert all(name in warnings for name in left)
    _indexed(store_path).compact()
    assert [p for p in store_path.parent.iterdir() if ".tmp-ids-" in p.name] == []


def test_store_check_reports_the_index(store_path, cli):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    result = cli("--store", str(store_path), "store", "check")
    assert result.exit_code == 0
    assert "id_index: not needed" in result.stdout  # a base of 320 traces is searched


def test_a_big_base_has_its_index_built_by_a_process_of_its_own(store_path, monkeypatch):
    """Building the index of a big base takes seconds: the lookup that finds it missing
    searches the bytes and leaves the build to a separate process."""
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    expected = _lookups(_unindexed(store_path), ids[:5])
    monkeypatch.setattr(idindex, "INLINE_BUILD_BYTES", 0)  # every base counts as big
    store = _indexed(store_path)
    assert _lookups(store, ids[:5]) == expected
    deadline = time.monotonic() + 60
    while _state(store_path) != "current":
        assert time.monotonic() < deadline, "no process built the index"
        time.sleep(0.1)
    assert "id_index_built" in store_path.with_name(store_path.name + "-compacting").read_text()
    assert _lookups(_indexed(store_path), ids) == _lookups(_unindexed(store_path), ids)
