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
from tracetag.store.columns import columns_path


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


def _conformance(store_path, indexed: bool = False) -> TracetagClient:
    """The conformance traces in a compacted store (its indexes built when ``indexed``)."""
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    client.store.compact()
    if indexed:
        _lookups(_indexed(store_path), ["tr-any"])  # the first lookup builds them
    return client


def _recorded_walks(monkeypatch) -> list:
    """Each walk a search makes, as (its positions, how many it found or None)."""
    from tracetag.store import ordered

    seen: list = []
    real_walk = ordered.walk

    def recorded(*args, **kwargs):
        found = real_walk(*args, **kwargs)
        seen.append((args[8], None if found is None else len(found)))
        return found

    monkeypatch.setattr("tracetag.store.snapshot.walk", recorded)
    return seen


def _state(path) -> str:
    base = BaseFile(path)
    try:
        return idindex.state(base, 0)
    finally:
        base.close()


def test_lookups_through_the_index_equal_a_search_of_the_base(store_path):
    client = _conformance(store_path)
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
    client = _conformance(store_path)
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
    client = _conformance(store_path)
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    _lookups(_indexed(store_path), ids[:1])
    path = idindex.index_path(store_path)
    data = bytearray(path.read_bytes())
    expected = _lookups(_unindexed(store_path), ids)
    # Entries zeroed in the middle (a bit rot): their traces would vanish if believed.
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(200)
    path.write_bytes(bytes(data))
    assert _state(store_path) == "damaged"
    assert TracetagClient(_indexed(store_path)).check().facts["id_index"] == "damaged"
    assert _lookups(_indexed(store_path), ids) == expected  # the base read instead
    assert _state(store_path) == "missing"  # removed when the damage was found
    assert _lookups(_indexed(store_path), ids) == expected  # and the next process builds it
    assert _state(store_path) == "current"
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
    print("ready", flush=True)
    while True:
        base = BaseFile(path)
        idindex.build(base)
        base.close()
    """
)


def test_kill_9_while_the_index_is_written_leaves_it_right_or_unused(store_path):
    client = _conformance(store_path)
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
    left = [p.name for p in store_path.parent.iterdir() if ".tmp-" in p.name]
    warnings = " ".join(TracetagClient(store_path).check().warnings)
    assert all(name in warnings for name in left)
    _indexed(store_path).compact()
    assert [p for p in store_path.parent.iterdir() if ".tmp-" in p.name] == []


def test_store_check_reports_the_index(store_path, cli):
    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    result = cli("--store", str(store_path), "store", "check")
    assert result.exit_code == 0
    assert "id_index: not needed" in result.stdout  # a base of 320 traces is searched


def test_a_big_base_has_its_index_built_by_a_process_of_its_own(store_path, monkeypatch):
    """Building the index of a big base takes seconds: the lookup that finds it missing
    searches the bytes and leaves the build to a separate process."""
    client = _conformance(store_path)
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    expected = _lookups(_unindexed(store_path), ids[:5])
    monkeypatch.setattr(idindex, "INLINE_BUILD_BYTES", 0)  # every base counts as big
    store = _indexed(store_path)
    assert _lookups(store, ids[:5]) == expected
    line = store_path.with_name(store_path.name + "-compacting")
    deadline = time.monotonic() + 60
    while "id_index_built" not in (line.read_text() if line.exists() else ""):
        assert time.monotonic() < deadline, "no process built the index"
        time.sleep(0.1)
    assert _state(store_path) == "current"
    assert _lookups(_indexed(store_path), ids) == _lookups(_unindexed(store_path), ids)


def _pages(store: Store, filter_string, size, order_by=None) -> list[list[str]]:
    """Every page of a search (newest first unless ``order_by``), following the tokens."""
    client = TracetagClient(store)
    pages, token = [], None
    while True:
        page = client.search_page(
            filter_string=filter_string,
            max_results=size,
            order_by=order_by,
            page_token=token,
            now=1_900_000_000_000,
        )
        pages.append([d["trace_id"] for d in page])
        token = page.token
        if token is None:
            return pages


FILTERS = [
    None,
    "status = 'ERROR'",
    "tags.environment = 'production' AND execution_time_ms > 5000",
    "tags.reviewed = 'yes'",
    "name LIKE '%rag%' OR tags.missing IS NULL",
    "tags.user_id = 'no such user'",
    # Through the tag index (a tag on at most a quarter of the traces):
    "tags.user_id = 'user_017'",
    "tags.priority = 'high' AND tags.user_id = 'user_026'",
    "tags.user_id = 'user_013' AND status = 'OK'",
    "tags.user_id = 'user_017' AND tags.reviewed = 'yes'",
    # Through the span file (text of the spans), and the byte search of the scan:
    "trace.text LIKE '%question 29%'",
    "span.name = 'summarize' AND status = 'ERROR'",
    "span.type = 'LLM' AND tags.environment = 'production'",
    "tags.environment = 'production'",
]


def test_pages_walked_in_the_order_index_equal_the_scan_in_every_journal_state(
    store_path, monkeypatch
):
    """The walk newest first (a first page without a scan) gives the scan's pages exactly:
    after tag changes, deletes, new traces only the journal has, and a trace replaced with
    another time, and with page tokens through to the end. So do the span file's plan and the
    scan's byte search (against a scan that parses every line)."""
    from tracetag.store.journal import Overlay

    client = _conformance(store_path)
    traces = client.search_traces(max_results=None)
    ids = [t.info.trace_id for t in traces]
    _lookups(_indexed(store_path), ids[:1])  # both indexes built
    assert idindex.order_for(BaseFile(store_path)) is not None

    def same_everywhere():
        for flt in FILTERS:
            for size, order in ((1, None), (7, None), (100, None), (None, None), (5, ["name"])):
                walked = _pages(_indexed(store_path), flt, size, order)
                scanned = _pages(_unindexed(store_path), flt, size, order)
                with monkeypatch.context() as m:
                    m.setattr(Overlay, "holding", lambda *_args: None)
                    every_line = _pages(_unindexed(store_path), flt, size, order)
                assert walked == scanned == every_line, (flt, size, order)

    same_everywhere()
    writer = TracetagClient(_indexed(store_path))
    writer.set_trace_tag(ids[5], "reviewed", "yes")
    writer.set_trace_tag(ids[200], "reviewed", "yes")
    # Tags changed in the journal: a trace gains user_017, another loses user_026.
    writer.set_trace_tag(ids[9], "user_id", "user_017")
    staging = next(t for t in traces if t.info.tags.get("environment") == "staging")
    writer.set_trace_tag(staging.info.trace_id, "environment", "production")
    writer.set_trace_tag(ids[200], "user_id", "user_017")
    lost = next(t for t in traces if t.info.tags.get("user_id") == "user_026")
    writer.delete_trace_tag(lost.info.trace_id, "user_id")
    writer.delete_traces(trace_ids=[ids[0], ids[17]])
    # A new trace and a replaced one (later than all), only in the journal.
    newest = traces[3]
    doc = {**newest.info.to_dict(), "timestamp_ms": newest.info.timestamp_ms + 10**9}
    spans = [s.to_dict() for s in newest.data.spans]
    other = {**doc, "trace_id": "tr-" + "f" * 32, "timestamp_ms": traces[100].info.timestamp_ms}
    writer.store.put_traces([(doc, spans), (other, spans)])
    assert writer.store.info()["journal_records"] > 0
    same_everywhere()
    assert _pages(_indexed(store_path), None, 1)[0] == [ids[3]]


def test_a_search_for_few_traces_gives_up_the_walk_and_scans(store_path, monkeypatch):
    from tracetag.store import ordered

    _conformance(store_path, indexed=True)
    seen = _recorded_walks(monkeypatch)
    monkeypatch.setattr(ordered, "BUDGET", 10)
    flt = "tags.environment = 'staging'"
    assert _pages(_indexed(store_path), flt, 100) == _pages(_unindexed(store_path), flt, 100)
    assert [found for _positions, found in seen] == [None]  # the walk gave up; the scan answered


def test_explain_says_whether_a_page_is_walked_or_scanned(store_path, cli, monkeypatch):
    from tracetag import runtime

    _conformance(store_path)

    def plan(*args):
        runtime.reset()  # a fresh process each time
        out = cli("--store", str(store_path), "search", "--explain", *args).stdout
        return [ln for ln in out.splitlines() if ln.startswith(("plan:", "      ("))]

    assert plan("-n", "10") == ["plan: a scan of the base (small enough to need no index)"]
    assert plan("--all") == ["plan: a scan of the base (small enough to need no index)"]
    monkeypatch.setattr(idindex, "INDEX_MIN_BYTES", 0)  # what a base over 16 MB gets
    assert plan("-n", "10") == ["plan: a scan of the base (the indexes are being built)"]
    _lookups(_indexed(store_path), ["tr-any"])  # the first lookup builds both indexes
    assert plan("-n", "10", "-f", "status = 'OK'") == [
        "plan: newest first through the order index, stopping at the page's end",
        "      (the scan instead if 20,000 documents do not fill the page)",
    ]
    assert plan("-n", "10", "--order-by", "name") == [
        "plan: a scan of the base (the order index serves the default order, newest first)"
    ]
    by_ids = "      (-o ids: the ids of every match from the columns, no document read)"
    assert plan("--all", "-f", "tags.user_id = 'user_017' AND status = 'OK'") == [
        "plan: through the tag index: the 9 of 320 traces with tags.user_id = 'user_017', "
        "and those the journal changed; the filter judges each",
        by_ids,  # (9 of 320 is not rare enough to prefer the tag index to the columns)
    ]
    assert plan("--all") == ["plan: a scan of the base (every match is wanted)", by_ids]
    assert plan("--all", "-f", "tags.priority = 'normal'") == [
        "plan: a scan of the base (every match is wanted)",  # 244 of 320: too common
        by_ids,
    ]
    assert plan("--all", "-f", "name = 'x'") == [
        "plan: a scan of the base (every match is wanted)"  # (the name has no column)
    ]


def test_a_rare_tag_is_read_through_the_tag_index(store_path, monkeypatch):
    """``tags.user_id = 'user_017'`` reads the 9 documents the tag index points to, for every
    match (no page limit) and in any order, instead of scanning 320."""
    _conformance(store_path, indexed=True)
    seen = _recorded_walks(monkeypatch)
    flt = "tags.user_id = 'user_017'"
    for size, order in ((None, None), (3, None), (None, ["execution_time_ms DESC"])):
        assert _pages(_indexed(store_path), flt, size, order) == _pages(
            _unindexed(store_path), flt, size, order
        )
    assert [len(positions) for positions, _n in seen] == [9, 9, 9, 9, 9]  # 3 pages of 3
    assert [n for _p, n in seen] == [9, 4, 4, 3, 9]  # (a page reads one more: is there more?)
    # A tag on most traces is not worth the index: the filter scans.
    seen.clear()
    _pages(_indexed(store_path), "tags.priority = 'normal'", None)
    assert seen == []


def test_a_damaged_order_or_tag_index_is_not_believed_by_a_search(store_path):
    _conformance(store_path, indexed=True)
    flt = "tags.user_id = 'user_017'"
    expected = {size: _pages(_unindexed(store_path), flt, size) for size in (None, 3)}
    for path in (idindex.order_path(store_path), idindex.tags_path(store_path)):
        data = bytearray(path.read_bytes())
        data[-300:-100] = bytes(200)  # entries zeroed: positions that point nowhere or wrong
        path.write_bytes(bytes(data))
        for size in (None, 3):
            assert _pages(_indexed(store_path), flt, size) == expected[size]
        assert _pages(_indexed(store_path), None, 7) == _pages(_unindexed(store_path), None, 7)
        _lookups(_indexed(store_path), ["tr-any"])
        # Built again once a search read the damaged block; a block none read stays (harmless
        # until read) until then or the next compaction, and `store check` names it.
        assert _state(store_path) in ("current", "damaged")


def test_the_compaction_beside_the_writers_installs_the_new_indexes_with_the_base(store_path):
    """No lookup or search meets the new base without its indexes: they are built from the
    rebuilt base before it is installed and renamed in right after it."""
    from tracetag.store.compactor import compact_beside_writers

    client = TracetagClient(store_path)
    client.import_traces(TRACES_JSONL.read_bytes())
    ids = [t.info.trace_id for t in client.search_traces(max_results=None)]
    client.set_trace_tag(ids[0], "user_id", "user_017")  # in the journal, folded by the rebuild
    store = _indexed(store_path)
    _lookups(store, ["tr-any"])
    states = []
    assert compact_beside_writers(store, after_install=lambda: states.append(_state(store_path)))
    assert states == ["current"]
    leftovers = [p.name for p in store_path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    flt = "tags.user_id = 'user_017'"
    assert _pages(_indexed(store_path), flt, None) == _pages(_unindexed(store_path), flt, None)
    assert ids[0] in _pages(_indexed(store_path), flt, None)[0]


def test_store_info_says_what_the_indexes_take(store_path, cli):
    import json

    _conformance(store_path)
    info = json.loads(cli("--store", str(store_path), "store", "info", "-o", "json").stdout)
    assert info["indexes"] == "not needed" and info["index_bytes"] == 0
    _lookups(_indexed(store_path), ["tr-any"])
    info = TracetagClient(_indexed(store_path)).info()
    files = [idindex.index_path(store_path), idindex.order_path(store_path)]
    files += [idindex.tags_path(store_path), columns_path(store_path)]
    assert info["indexes"] == "current"
    assert info["index_bytes"] == sum(p.stat().st_size for p in files) > 0
    TracetagClient(store_path).store.compact()  # a new base: the old indexes name another
    assert TracetagClient(_indexed(store_path)).info()["indexes"] == "stale"


def test_a_filter_on_the_spans_text_reads_only_the_traces_that_hold_it(
    store_path, monkeypatch, cli
):
    """``trace.text LIKE '%question 29%'`` searches the span file's bytes for ``question 29``
    and looks up just the traces whose records hold it; a common word (``LLM``) scans."""
    from tracetag import runtime
    from tracetag.store.snapshot import Snapshot

    _conformance(store_path, indexed=True)
    looked_up: list[str] = []
    real_get = Snapshot.get
    monkeypatch.setattr(
        Snapshot, "get", lambda self, tid: looked_up.append(tid) or real_get(self, tid)
    )
    flt = "trace.text LIKE '%question 29%'"
    found = _pages(_indexed(store_path), flt, None)
    assert found == _pages(_unindexed(store_path), flt, None) and found[0]
    assert len(found[0]) <= len(set(looked_up)) < 40  # of 320
    runtime.reset()
    monkeypatch.setattr(idindex, "INDEX_MIN_BYTES", 0)
    out = cli("--store", str(store_path), "search", "--explain", "--all", "-f", flt).stdout
    lines = out.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("plan:"))
    assert lines[i:] == [
        f"plan: through the span file: the {len(set(looked_up))} traces whose span records hold",
        "      'question 29' (a byte search of the span file); the filter judges each",
    ]
    looked_up.clear()
    _pages(_indexed(store_path), "span.type = 'LLM'", None)
    assert looked_up == []  # in nearly every record: the scan
