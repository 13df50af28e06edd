"""The shared conformance cases: MLflow 3.18's own answers (and SQL's, for the extensions),
run once through the Python API and once through the CLI."""

from __future__ import annotations

import json

import pytest

from tracetag.errors import FilterSyntaxError
from tracetag.filters import parse_filter, tree

from .conftest import CONFORMANCE

SPEC = json.loads((CONFORMANCE / "filters.json").read_text())
CASES = SPEC["cases"]


def _case_id(case: dict) -> str:
    return (case["filter"] or "<all>")[:60] + (
        f" order={case['order_by']}" if case.get("order_by") else ""
    )


def _explain(case: dict, actual: object) -> str:
    try:
        parsed = tree(parse_filter(case["filter"])) if case["filter"] else "(none)"
    except FilterSyntaxError as e:
        parsed = f"<error: {e}>"
    expected = case.get("result", case.get("error"))
    return (
        f"\nfilter:   {case['filter']!r}\norder_by: {case.get('order_by')}\n"
        f"parsed:\n{parsed}\nexpected: {expected}\nactual:   {actual}"
    )


def test_cases_were_copied_whole():
    assert len(CASES) == 48
    assert sum(1 for c in CASES if "error" in c) == 8
    assert sum(1 for c in CASES if c.get("extension")) == 14


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_python_api(case, readonly_client):
    conformance_client = readonly_client
    kwargs = dict(
        experiment_ids=case["experiment_ids"],
        filter_string=case["filter"],
        max_results=case.get("max_results"),
        order_by=case.get("order_by"),
    )
    if "error" in case:
        with pytest.raises(FilterSyntaxError) as info:
            conformance_client.search_traces(**kwargs)
        assert 0 <= info.value.column <= len(case["filter"]), _explain(case, info.value)
        return
    ids = [t.info.trace_id for t in conformance_client.search_traces(**kwargs)]
    assert ids == case["result"], _explain(case, ids)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cli(case, cli, readonly_store):
    args = ["search", "-o", "ids"]
    for e in case["experiment_ids"]:
        args += ["-x", e]
    if case["filter"] is not None:
        args += ["-f", case["filter"]]
    for key in case.get("order_by") or []:
        args += ["--order-by", key]
    args += ["-n", str(case["max_results"])] if case.get("max_results") else ["--all"]
    result = cli(*args)
    if "error" in case:
        assert result.exit_code == 2, _explain(case, result.output)
        lines = result.stderr.splitlines()
        assert lines[0].startswith("tracetag: error: ") and "Traceback" not in result.stderr
        assert lines[-1].strip() == "^", _explain(case, result.stderr)
        return
    assert result.exit_code == 0, _explain(case, result.stderr)
    assert result.stdout.split() == case["result"], _explain(case, result.stdout.split())
