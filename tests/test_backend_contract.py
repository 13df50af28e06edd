"""The behavioural contract every backend keeps (docs/backends.md), run against each registered
backend through its real interface. The conformance cases (test_conformance.py) and the tag,
delete and paging tests that use the conformance store run per backend as well."""

from __future__ import annotations

import io

import pytest

from tracetag.api import TracetagClient
from tracetag.backend import BACKENDS, Backend, ReadView, open_backend


@pytest.fixture
def backend_client(conformance_store):
    return TracetagClient(conformance_store)


def test_the_registered_backends_implement_the_interface(readonly_store, any_backend):
    store = BACKENDS[any_backend](readonly_store)
    assert isinstance(store, Backend)
    with store.snapshot() as view:
        assert isinstance(view, ReadView)
        assert len(list(view.iter_docs())) == 320


def test_a_batch_is_one_atomic_write_with_dry_run_and_strict(backend_client):
    c = backend_client
    dry = c.update_tags(filter_string="status = 'ERROR'", set={"triage": "yes"}, dry_run=True)
    assert dry.changed and not dry.written
    assert c.search_traces(filter_string="tags.triage = 'yes'") == []
    ids = [t.info.trace_id for t in c.search_traces(max_results=3)]
    strict = c.update_tags([*ids, "tr-missing"], set={"k": "v"}, strict=True)
    assert strict.not_found == ["tr-missing"] and not strict.written
    assert c.search_traces(filter_string="tags.k = 'v'") == []
    done = c.update_tags(filter_string="status = 'ERROR'", set={"triage": "yes"})
    assert done.written and len(done.changed) == len(dry.changed)
    found = c.search_traces(filter_string="tags.triage = 'yes'", max_results=None)
    assert len(found) == len(dry.changed)


def test_delete_by_filter_and_by_id(backend_client):
    c = backend_client
    report = c.delete_traces(filter_string="status = 'ERROR'")
    assert report.deleted and c.search_traces(filter_string="status = 'ERROR'") == []
    some = c.search_traces(max_results=2)
    gone = c.delete_traces(trace_ids=[t.info.trace_id for t in some] + ["tr-nope"])
    assert gone.deleted == 2 and gone.not_found == ["tr-nope"]
    assert len(c.search_traces(max_results=None)) == 320 - report.deleted - 2


def test_import_export_round_trip(backend_client, tmp_path):
    out = io.BytesIO()
    assert backend_client.export_traces(out) == 320
    other = TracetagClient(open_backend(tmp_path / "copy.json"))
    assert other.import_traces(out.getvalue()).imported == 320
    again = io.BytesIO()
    other.export_traces(again)
    assert again.getvalue() == out.getvalue()


def test_paging_never_repeats_or_skips_under_concurrent_inserts(backend_client):
    c = backend_client
    first = c.search_traces(max_results=100, order_by=["timestamp_ms ASC"])
    from tracetag.model import Trace, TraceInfo

    # A trace that sorts into the first page, added between pages, is neither seen twice nor
    # does it push a trace of the next page out.
    c.log_traces([Trace(TraceInfo(trace_id="tr-early", timestamp_ms=0))])
    seen = [t.info.trace_id for t in first]
    token = first.token
    while token:
        page = c.search_traces(max_results=100, order_by=["timestamp_ms ASC"], page_token=token)
        seen += [t.info.trace_id for t in page]
        token = page.token
    assert len(seen) == len(set(seen)) == 320
