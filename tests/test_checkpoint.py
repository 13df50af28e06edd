"""The journal's checkpoint (journal.save_checkpoint): a process that opens the store loads
what the journal changed and replays only the records after it, and sees exactly what a
replay of the whole journal gives; a checkpoint of another journal, a damaged one or one whose
journal no longer holds what it replayed is not used."""

from __future__ import annotations

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from tracetag.api import TracetagClient
from tracetag.errors import StoreCorrupted
from tracetag.model import Trace, TraceInfo
from tracetag.store import Store, local
from tracetag.store.files import decode_record
from tracetag.store.journal import checkpoint_path


def _state(path, use_checkpoint: bool = True) -> tuple:
    """What a fresh process sees: the overlay's tables and every trace's tags."""
    saved = None
    cp = checkpoint_path(path.with_name(path.name + "-journal"))
    if not use_checkpoint and cp.exists():
        saved = cp.read_bytes()
        cp.unlink()
    try:
        store = Store(path)
        with store.snapshot() as snap:
            o = snap.overlay
            tables = (o.records, o.offset, o.puts, o.deltas, o.deleted, o.experiments)
            loaded = o.checkpointed
        traces = {t.info.trace_id: t.info.tags for t in TracetagClient(store).search_traces()}
        return tables, traces, loaded
    finally:
        if saved is not None:
            cp.write_bytes(saved)


def _trace(i: int) -> Trace:
    return Trace(TraceInfo(trace_id=f"tr-{i:032x}", timestamp_ms=1000 + i, tags={"n": str(i)}))


@pytest.fixture
def every_7(monkeypatch):
    monkeypatch.setattr(local, "CHECKPOINT_RECORDS", 7)


def _writes(client: TracetagClient, rounds: int) -> None:
    """Every kind of journal record, in turns, over traces of the base and of the journal."""
    client.log_traces([_trace(i) for i in range(30)])
    client.store.compact()
    client.log_traces([_trace(i) for i in range(30, 40)])
    for r in range(rounds):
        tid = f"tr-{r % 40:032x}"
        client.update_tags([tid], set={"round": str(r)})  # (a deleted one: not found)
        if r % 5 == 0:
            client.update_tags([tid], delete=["n"])
        if r % 11 == 0:
            client.delete_traces(trace_ids=[f"tr-{(r + 3) % 30:032x}"])
        if r % 13 == 0:
            client.log_traces([_trace(100 + r)])
        if r % 17 == 0:
            client.create_experiment(f"exp{r}")


def test_a_fresh_process_from_the_checkpoint_sees_what_a_whole_replay_gives(store_path, every_7):
    client = TracetagClient(Store(store_path))
    _writes(client, 60)
    tables, traces, loaded = _state(store_path)
    assert loaded > 0 and tables[0] - loaded < 7  # (replayed fewer than 7 records)
    assert _state(store_path, use_checkpoint=False)[:2] == (tables, traces)
    assert _state(store_path, use_checkpoint=False)[2] == 0


def test_a_checkpoint_that_does_not_fit_its_journal_is_not_used(store_path, every_7):
    client = TracetagClient(Store(store_path))
    _writes(client, 40)
    journal = store_path.with_name(store_path.name + "-journal")
    cp = checkpoint_path(journal)
    expected = _state(store_path, use_checkpoint=False)[:2]
    good = cp.read_bytes()
    # Damaged: a byte of it changed.
    cp.write_bytes(good[:50] + bytes([good[50] ^ 1]) + good[51:])
    assert _state(store_path) == (*expected, 0)
    # Its journal changed under it (same file, same size, other bytes before its offset).
    cp.write_bytes(good)
    data = bytearray(journal.read_bytes())
    at = decode_record(good.rstrip(b"\n"))["offset"] - 10  # (within what it checks)
    original = bytes(data)
    data[at] = data[at] ^ 0x20
    with open(journal, "r+b") as fh:  # (in place: the inode stays)
        fh.write(bytes(data))
    with pytest.raises(StoreCorrupted, match="damaged journal"):
        _state(store_path)  # (replayed whole, which finds the damage the checkpoint would hide)
    with open(journal, "r+b") as fh:
        fh.write(original)
    # Another journal: a compaction replaced it (and removed the checkpoint).
    assert _state(store_path) == (*expected, _state(store_path)[2])
    Store(store_path).compact()
    assert not cp.exists()
    cp.write_bytes(good)
    tables, traces, loaded = _state(store_path)
    assert loaded == 0 and traces == expected[1] and tables[0] == 0


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from tracetag.api import TracetagClient
    from tracetag.store import Store, local

    local.CHECKPOINT_RECORDS = 3
    client = TracetagClient(Store(sys.argv[1]))
    ids = sys.argv[2].split(",")
    i = int(sys.argv[3])
    while True:
        client.set_trace_tag(ids[i % len(ids)], f"k{i % 50}", str(i))
        print(i, flush=True)  # acknowledged
        i += 1
    """
)


def test_kill_9_while_checkpoints_are_written_loses_no_acknowledged_write(store_path):
    client = TracetagClient(Store(store_path))
    client.log_traces([_trace(i) for i in range(20)])
    ids = [f"tr-{i:032x}" for i in range(20)]
    rng = random.Random(3)
    acknowledged: dict[tuple[str, str], str] = {}
    start = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(store_path), ",".join(ids), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in [first, *proc.stdout.read().split()]:
            i = int(line)
            acknowledged[(ids[i % len(ids)], f"k{i % 50}")] = str(i)
            start = max(start, i + 1)
        tags = {
            t.info.trace_id: t.info.tags for t in TracetagClient(Store(store_path)).search_traces()
        }
        for (tid, key), value in acknowledged.items():
            # (A write after the last acknowledged one may have landed: never an older value.)
            assert int(tags[tid][key]) >= int(value)
        assert _state(store_path)[:2] == _state(store_path, use_checkpoint=False)[:2]
    assert checkpoint_path(store_path.with_name(store_path.name + "-journal")).exists()
    # A checkpoint a kill left half-written (a temporary file) goes with the next compaction.
    left = store_path.with_name(f".{store_path.name}-journal-checkpoint.tmp-99999")
    left.write_bytes(b"half")
    Store(store_path).compact()
    assert [p.name for p in store_path.parent.iterdir() if ".tmp-" in p.name] == []


def test_records_a_compaction_carries_over_get_a_checkpoint_of_the_new_journal(store_path, every_7):
    from tracetag.store.compactor import compact_beside_writers

    client = TracetagClient(Store(store_path))
    client.log_traces([_trace(i) for i in range(20)])
    writer = TracetagClient(Store(store_path))

    def meanwhile():  # (written while the new base was built: carried into the new journal)
        for i in range(12):
            writer.update_tags([f"tr-{i:032x}"], set={"during": str(i)})

    assert compact_beside_writers(Store(store_path), after_build=meanwhile) is not None
    tables, traces, loaded = _state(store_path)
    assert loaded == tables[0] == 12  # (all twelve, from the checkpoint: nothing replayed)
    assert _state(store_path, use_checkpoint=False)[:2] == (tables, traces)
    assert traces[f"tr-{11:032x}"]["during"] == "11"


# -- a journal of recorded traces: whole documents, named by the checkpoint, read when asked ---


def _recorded(i: int) -> Trace:
    """A trace about 2 KB long, as recorded traces are whole documents in the journal."""
    return Trace(
        TraceInfo(
            trace_id=f"tr-{i:032x}",
            timestamp_ms=1000 + i,
            tags={"n": str(i)},
            metadata={"prompt": f"{i} " + "prompt " * 300},
        )
    )


@pytest.fixture
def recorded(store_path, monkeypatch):
    """100 traces recorded one record each since the base (far fewer records than a
    checkpoint waits for, but bytes enough for several); the fifth tagged."""
    monkeypatch.setattr(local, "CHECKPOINT_BYTES", 64 * 1024)
    client = TracetagClient(Store(store_path))
    client.log_traces([_trace(0)])
    client.store.compact()
    for i in range(1, 101):
        client.log_traces([_recorded(i)])
        if i == 5:
            client.set_trace_tag(f"tr-{5:032x}", "changed", "yes")
    return client


def test_recorded_traces_are_checkpointed_by_bytes_and_named_not_copied(store_path, recorded):
    cp = checkpoint_path(store_path.with_name(store_path.name + "-journal"))
    state = decode_record(cp.read_bytes().rstrip(b"\n"))
    journal = store_path.with_name(store_path.name + "-journal").stat().st_size
    assert state["records"] < local.CHECKPOINT_RECORDS and state["offset"] > journal - 64 * 1024
    # The unchanged documents are where the journal has them; the changed one is kept.
    assert list(state["puts"]) == [f"tr-{5:032x}"]
    assert len(state["put_ids"]) > 60 and cp.stat().st_size < 20_000 < journal / 10
    assert stat.S_IMODE(cp.stat().st_mode) == 0o600  # (it holds trace data: as private)
    tables, traces, loaded = _state(store_path)
    assert loaded > 0 and traces[f"tr-{5:032x}"]["changed"] == "yes"
    assert _state(store_path, use_checkpoint=False)[:2] == (tables, traces)


def test_a_fresh_process_reads_only_the_recorded_traces_it_is_asked_for(store_path, recorded):
    cp = checkpoint_path(store_path.with_name(store_path.name + "-journal"))
    named = decode_record(cp.read_bytes().rstrip(b"\n"))["put_at"][::2]
    assert sum(o >= 0 for o in named) > 60
    with Store(store_path).snapshot() as snap:
        puts = snap.overlay.puts
        assert snap.get(f"tr-{7:032x}")["metadata"]["prompt"].startswith("7 prompt")
        # Of those the checkpoint named, only trace 7 was read (the records after it were).
        assert sum(doc is None for doc in puts._docs.values()) == sum(o >= 0 for o in named) - 1
        assert len(list(puts.values())) == 100  # (all of them when all are wanted)
        assert sorted(d["tags"]["n"] for d in puts.values()) == sorted(map(str, range(1, 101)))


def test_a_damaged_recorded_trace_behind_a_checkpoint_is_named_when_read(store_path, recorded, cli):
    journal = store_path.with_name(store_path.name + "-journal")
    data = bytearray(journal.read_bytes())
    at = data.index(b"10 prompt")  # (trace 10's record, before the checkpoint's offset)
    assert at < decode_record(checkpoint_path(journal).read_bytes().rstrip(b"\n"))["offset"] - 256
    data[at + 3] ^= 0x20
    with open(journal, "r+b") as fh:  # (in place: the checkpoint still fits the journal)
        fh.write(bytes(data))
    with Store(store_path).snapshot() as snap:
        assert snap.get(f"tr-{20:032x}")["tags"]["n"] == "20"
        with pytest.raises(StoreCorrupted, match=r"damaged journal at byte \d+ \(checksum"):
            snap.get(f"tr-{10:032x}")
    r = cli("--store", str(store_path), "show", f"tr-{10:032x}")
    assert r.exit_code == StoreCorrupted.exit_code
    assert "damaged journal at byte" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("--store", str(store_path), "store", "check")
    assert r.exit_code != 0 and "journal" in r.output


@pytest.mark.parametrize("indexed", [False, True], ids=["scan", "indexes"])
def test_a_search_reads_only_the_recorded_traces_whose_bytes_can_match(
    store_path, recorded, indexed
):
    from tracetag import query

    store = Store(store_path)
    store.id_index_min_bytes = 0 if indexed else 1 << 62
    with store.snapshot() as snap:
        snap.get("tr-any")  # (builds the indexes beside a base this small, when asked to)
        docs = snap.overlay.puts._docs
        before = sum(doc is not None for doc in docs.values())
        for needle, expected in (("tags.n = '42'", [42]), ("tags.n = '5'", [5])):
            page = query.search(snap, needle)
            assert page.trace_ids() == [f"tr-{i:032x}" for i in expected]
        # Trace 42 was read (it holds '"42"'); 5 was kept in the checkpoint; no other.
        assert sum(doc is not None for doc in docs.values()) == before + 1
        page = query.search(snap, "tags.n LIKE '4%'")  # (no byte every match holds)
        assert len(page.trace_ids()) == 11
        assert all(doc is not None for doc in docs.values())


def test_a_page_newest_first_reads_the_recorded_traces_it_reaches(store_path, recorded):
    from tracetag import query

    pages = {}
    for indexed in (False, True):
        store = Store(store_path)
        store.id_index_min_bytes = 0 if indexed else 1 << 62
        with store.snapshot() as snap:
            snap.get("tr-any")  # (builds the indexes beside a base this small, when asked to)
            docs = snap.overlay.puts._docs
            unread = sum(doc is None for doc in docs.values())
            pages[indexed] = query.search(snap, "tags.n != '90'", max_results=30).trace_ids()
            if indexed:  # (the walk parsed those it reached: 30 and the one it passed over)
                assert unread - sum(doc is None for doc in docs.values()) <= 31 < unread
    assert pages[True] == pages[False] == [f"tr-{i:032x}" for i in range(100, 69, -1) if i != 90]
