"""Compaction beside the writers: a big base is rebuilt without the lock, installed under it,
and nothing written meanwhile (or acknowledged before a crash) is lost."""

from __future__ import annotations

import time

import pytest
from conftest import TRACES_JSONL

from tracetag.api import TracetagClient
from tracetag.store import Store
from tracetag.store.base import BaseFile
from tracetag.store.compactor import compact_beside_writers, start


def _store(path):
    client = TracetagClient(path)
    client.import_traces(TRACES_JSONL.read_bytes())
    return client


def _state(path):
    """Every trace's info as a fresh process would read it."""
    client = TracetagClient(Store(path))
    return {t.info.trace_id: t.info.tags for t in client.search_traces(max_results=None)}


def _journal_records(path):
    lines = path.with_name(path.name + "-journal").read_bytes().splitlines()
    return len(lines) - 1  # the header


def test_writes_made_during_the_rebuild_are_in_the_new_journal(store_path):
    client = _store(store_path)
    ids = list(_state(store_path))
    client.set_trace_tag(ids[0], "before", "1")
    generation = BaseFile(store_path).generation

    def others_write():  # another process, while the rebuild runs without the lock
        other = TracetagClient(Store(store_path))
        other.set_trace_tag(ids[1], "during", "yes")
        other.delete_traces(trace_ids=[ids[2]])

    result = compact_beside_writers(Store(store_path), after_build=others_write)
    assert result is not None and result["generation"] == generation + 1
    assert BaseFile(store_path).generation == generation + 1
    assert _journal_records(store_path) == 2  # only what came during the rebuild
    state = _state(store_path)
    assert state[ids[0]]["before"] == "1" and state[ids[1]]["during"] == "yes"
    assert ids[2] not in state and len(state) == 319
    assert TracetagClient(store_path).check().ok


def test_a_crash_between_install_and_journal_loses_nothing_and_the_next_writer_finishes(
    store_path,
):
    client = _store(store_path)
    ids = list(_state(store_path))
    client.set_trace_tag(ids[0], "before", "1")

    def others_write():
        TracetagClient(Store(store_path)).set_trace_tag(ids[1], "during", "yes")

    def die():
        raise KeyboardInterrupt  # killed right after the rename

    with pytest.raises(KeyboardInterrupt):
        compact_beside_writers(Store(store_path), after_build=others_write, after_install=die)
    base = BaseFile(store_path)
    journal_head = store_path.with_name(store_path.name + "-journal").read_bytes()[:200]
    assert f'"generation":{base.generation - 1}'.encode() in journal_head  # the old journal
    # Readers see everything: what the base folded and what came after.
    state = _state(store_path)
    assert state[ids[0]]["before"] == "1" and state[ids[1]]["during"] == "yes"
    # The next writer rewrites the journal for the new base, keeping the record.
    TracetagClient(Store(store_path)).set_trace_tag(ids[2], "after", "yes")
    journal_head = store_path.with_name(store_path.name + "-journal").read_bytes()[:200]
    assert f'"generation":{base.generation}'.encode() in journal_head
    assert _journal_records(store_path) == 2
    state = _state(store_path)
    assert state[ids[1]]["during"] == "yes" and state[ids[2]]["after"] == "yes"
    assert TracetagClient(store_path).check().ok


def test_a_rebuild_overtaken_by_another_compaction_installs_nothing(store_path):
    _store(store_path)
    before = _state(store_path)

    def compact_meanwhile():
        Store(store_path).compact()

    generation = BaseFile(store_path).generation
    assert compact_beside_writers(Store(store_path), after_build=compact_meanwhile) is None
    assert BaseFile(store_path).generation == generation + 1  # the other one only
    assert _state(store_path) == before
    assert not list(store_path.parent.glob(f".{store_path.name}.compact-*"))


def test_a_write_over_the_limit_on_a_big_base_starts_the_rebuild_and_does_not_wait(store_path):
    client = _store(store_path)
    ids = list(_state(store_path))
    generation = BaseFile(store_path).generation
    # Every base counts as big here, and any journal as too long.
    store = Store(store_path, compact_bytes=1, inline_compact_bytes=0)
    TracetagClient(store).set_trace_tag(ids[0], "k", "v")
    assert BaseFile(store_path).generation == generation  # not within the write
    deadline = time.monotonic() + 60
    while BaseFile(store_path).generation == generation and time.monotonic() < deadline:
        time.sleep(0.1)
    assert BaseFile(store_path).generation == generation + 1  # by a process of its own
    assert _state(store_path)[ids[0]]["k"] == "v"
    assert client.check().ok


def test_a_killed_rebuild_leaves_a_temp_file_the_next_one_removes(store_path):
    _store(store_path)
    stale = store_path.with_name(f".{store_path.name}.compact-999999")
    stale.write_bytes(b"half a base")
    assert start(Store(store_path))
    assert not stale.exists()
