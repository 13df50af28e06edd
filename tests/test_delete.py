"""Deleting traces: by id, by filter and age (MLflow's delete_traces), atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tracetag
from tracetag.api import TracetagClient
from tracetag.backend import open_backend

from .conftest import TRACES_JSONL

A = "tr-6663f3d7173cfa73b65948ca5fbc00b3"
B = "tr-72cb64eba1502f29d5a590b4fab5f196"


def ids(cli, *args: str) -> list[str]:
    return cli("search", "--all", "-o", "ids", *args).stdout.split()


def test_delete_by_id_everywhere_at_once(cli, conformance_store):
    before = set(ids(cli))
    result = cli("delete", A, B, "tr-" + "0" * 32)
    assert result.exit_code == 1  # one unknown id, the rest deleted
    assert result.stderr.splitlines()[0] == "deleted 2 traces, 1 not found"
    after = set(ids(cli))
    assert after == before - {A, B}
    assert cli("show", A).exit_code == 1
    assert cli("tag", "set", A, "x=1").exit_code == 1
    exps = {
        e["experiment_id"]: e["traces"]
        for e in TracetagClient(conformance_store).list_experiments()
    }
    assert exps["1"] == 298
    open_backend(conformance_store).compact()
    assert set(ids(cli)) == after and TracetagClient(conformance_store).check().ok
    if isinstance(conformance_store, Path):  # compaction folded the deletion into the base
        assert A.encode() not in conformance_store.read_bytes()


def test_delete_by_filter_needs_confirmation_in_scripts(cli, conformance_store):
    errors = ids(cli, "-f", "status = 'ERROR'")
    dry = cli("delete", "-f", "status = 'ERROR'", "--dry-run")
    assert sorted(dry.stdout.split()) == sorted(errors) and "would delete 48 traces" in dry.stderr
    refused = cli("delete", "-f", "status = 'ERROR'")
    assert refused.exit_code == 2 and "add --yes" in refused.stderr
    assert len(ids(cli)) == 320
    done = cli("delete", "-f", "status = 'ERROR'", "--yes", "-o", "json")
    assert json.loads(done.stdout)["deleted"] == 48
    assert ids(cli, "-f", "status = 'ERROR'") == [] and len(ids(cli)) == 272


def test_delete_oldest_first_within_an_experiment(cli, conformance_client):
    oldest = [
        t.info.trace_id
        for t in conformance_client.search_traces(
            ["2"], order_by=["timestamp_ms ASC"], max_results=3
        )
    ]
    result = cli("delete", "-f", "timestamp_ms > 0", "-x", "2", "--max-traces", "3", "-y")
    assert result.exit_code == 0 and "deleted 3 traces" in result.stderr
    left = ids(cli, "-x", "2")
    assert len(left) == 17 and not set(oldest) & set(left)


def test_mlflow_shaped_delete_traces(conformance_store):
    tracetag.set_store(conformance_store)
    client = TracetagClient(conformance_store)
    cutoff = sorted(t.info.timestamp_ms for t in client.search_traces(["1"], max_results=None))[9]
    assert tracetag.delete_traces(experiment_id="1", max_timestamp_millis=cutoff) == 10
    assert tracetag.delete_traces(experiment_id="1", trace_ids=[A]) == 0  # already deleted or not
    assert len(client.search_traces(["1"], max_results=None)) == 290
    with pytest.raises(tracetag.InvalidInput, match="give trace ids"):
        tracetag.delete_traces(experiment_id="1")


def test_reimport_brings_a_deleted_trace_back_and_vacuum_reclaims(cli, conformance_store):
    assert cli("delete", A).exit_code == 0
    assert cli("import", str(TRACES_JSONL)).exit_code == 0
    assert A in ids(cli)
    assert len(TracetagClient(conformance_store).get_trace(A).data.spans) == 2
    production = len(ids(cli, "-f", "tags.environment = 'production'"))
    assert cli("delete", "-f", "tags.environment = 'production'", "-y").exit_code == 0
    assert cli("store", "compact", "--vacuum").exit_code == 0
    report = TracetagClient(conformance_store).check()
    assert report.ok and report.facts["traces"] == 320 - production
    if isinstance(conformance_store, Path):  # the vacuum rewrote the span file
        assert report.facts["spans_dead_bytes"] == 0


def test_delete_is_one_write(conformance_store):
    store = open_backend(conformance_store)
    report = TracetagClient(store).delete_traces(filter_string="status = 'OK'")
    assert report.deleted == 272 and store.writes == 1


def test_delete_by_filter_asks_on_a_terminal(conformance_store):
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    def run(answer: bytes) -> tuple[int, bytes]:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracetag", "delete", "-f", "status = 'ERROR'"],
            stdin=slave,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env={**os.environ, "TRACETAG_STORE": str(conformance_store)},
        )
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 30  # a prompt that never comes fails, never hangs
        while b"[y/N]" not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no prompt within 30 s; saw {seen!r}"
            seen += os.read(master, 1024)
        os.write(master, answer)
        code = proc.wait(timeout=60)
        os.close(master)
        return code, seen

    code, prompt = run(b"n\n")
    assert code == 0 and b"Delete 48 traces? [y/N]" in prompt  # declining is no error
    assert len(TracetagClient(conformance_store).search_traces(max_results=None)) == 320
    code, _ = run(b"y\n")
    assert code == 0
    assert len(TracetagClient(conformance_store).search_traces(max_results=None)) == 272
