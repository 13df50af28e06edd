"""Search inside traces: MLflow 3.17.2's own answers on span fields and full text
(tests/conformance/span-filters.json, copied unchanged), tracetag's documented answers where
MLflow's are accidental, and the combination rule for OR and NOT checked against a brute-force
evaluator."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracetag.errors import FilterSyntaxError
from tracetag.filters import parse_filter, tree
from tracetag.interop import trace_from_any

from .conftest import CONFORMANCE, TRACES_JSONL

SPEC = json.loads((CONFORMANCE / "span-filters.json").read_text())
CASES = SPEC["cases"]
MLFLOW = [c for c in CASES if "result" in c and not c.get("quirk")]
QUIRKS = [c for c in CASES if c.get("quirk")]
REFUSED = [c for c in CASES if "error" in c and " OR " not in c["filter"]]
TRACES = [trace_from_any(orjson.loads(line)) for line in TRACES_JSONL.read_bytes().splitlines()]


def _explain(case: dict, actual: object) -> str:
    try:
        parsed = tree(parse_filter(case["filter"]))
    except FilterSyntaxError as e:
        parsed = f"<error: {e}>"
    return (
        f"\nfilter: {case['filter']!r}\nparsed:\n{parsed}\n"
        f"expected: {case.get('result')}\nactual: {actual}"
    )


def _search(client, case):
    return [
        t.info.trace_id
        for t in client.search_traces(
            case["experiment_ids"],
            case["filter"],
            case.get("max_results"),
            case.get("order_by"),
        )
    ]


def test_the_cases_were_copied_whole():
    assert len(CASES) == 34 and len(MLFLOW) == 29 and len(QUIRKS) == 1 and len(REFUSED) == 3


@pytest.mark.parametrize("case", MLFLOW, ids=lambda c: c["filter"][:60])
def test_mlflow_identical_through_the_api(case, readonly_client):
    conformance_client = readonly_client
    ids = _search(conformance_client, case)
    assert ids == case["result"], _explain(case, ids)


@pytest.mark.parametrize("case", MLFLOW, ids=lambda c: c["filter"][:60])
def test_mlflow_identical_through_the_cli(case, cli, readonly_store):
    args = ["search", "-o", "ids", "-f", case["filter"]]
    for e in case["experiment_ids"]:
        args += ["-x", e]
    for key in case.get("order_by") or []:
        args += ["--order-by", key]
    args += ["-n", str(case["max_results"])] if case.get("max_results") else ["--all"]
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == case["result"], _explain(case, r.stdout.split())


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c["filter"])
def test_what_mlflow_refuses_is_refused_with_a_caret(case, cli, conformance_store):
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter(case["filter"])
    assert 0 <= e.value.column <= len(case["filter"])
    r = cli("search", "-f", case["filter"])
    assert r.exit_code == 2 and r.stderr.splitlines()[-1].strip() == "^"


def test_bare_text_is_refused_with_a_hint():
    with pytest.raises(FilterSyntaxError, match=r"did you mean trace\.text"):
        parse_filter("text LIKE '%x%'")


# -- tracetag's answers where MLflow's are accidental ----------------------------------------


def _spans_where(pred) -> set[str]:
    return {t.info.trace_id for t in TRACES if any(pred(s) for s in t.spans)}


def _ids(client, flt, exps=("1",)) -> set[str]:
    return {t.info.trace_id for t in client.search_traces(list(exps), flt, None)}


def test_attribute_equality_compares_the_attribute(conformance_client):
    """MLflow compares the whole span JSON with a literal (never true); tracetag compares the
    attribute's value."""
    want = _spans_where(lambda s: s.attributes.get("model") == "v2.0.0")
    want &= {t.info.trace_id for t in TRACES if t.info.experiment_id == "1"}
    assert want and _ids(conformance_client, QUIRKS[0]["filter"]) == want
    assert _ids(conformance_client, "span.attributes.model IN ('v2.0.0')") == want


def test_attribute_like_is_confined_to_that_attribute(conformance_client):
    """MLflow needs a leading % and lets the text of later attributes match; tracetag matches
    the attribute's own value, so LIKE 'v2.0.0' works and another attribute's text does not."""
    exp1 = {t.info.trace_id for t in TRACES if t.info.experiment_id == "1"}
    want = _spans_where(lambda s: s.attributes.get("model") == "v2.0.0") & exp1
    assert _ids(conformance_client, "span.attributes.model LIKE 'v2.0.0'") == want
    assert _ids(conformance_client, "span.attributes.model LIKE '%answer 29%'") == set()
    assert _ids(conformance_client, "span.attributes.mod_l LIKE '%'") == set()  # a key is a key


# -- OR and NOT: the rule, against a brute-force evaluator ----------------------------------

SPAN_CONDS = [
    ("span.name = 'summarize'", lambda s: s.name == "summarize"),
    ("span.type = 'LLM'", lambda s: s.span_type == "LLM"),
    ("span.type = 'CHAIN'", lambda s: s.span_type == "CHAIN"),
    ("span.status = 'ERROR'", lambda s: s.status == "ERROR"),
    ("span.name LIKE '%ize%'", lambda s: "ize" in s.name),
]
TRACE_CONDS = [
    ("status = 'ERROR'", lambda t: t.info.status == "ERROR"),
    ("execution_time_ms > 5000", lambda t: (t.info.execution_time_ms or 0) > 5000),
    ("tags.environment = 'production'", lambda t: t.info.tags.get("environment") == "production"),
]


def _brute(expr, t) -> bool | None:
    """The documented rule, written directly: span conditions of one AND (parentheses inside
    it included) on one span; every OR / NOT operand its own group; trace conditions with
    SQL's three-valued logic
    (these conditions are never unknown on this data except tags.environment)."""
    kind = expr[0]
    if kind == "span":
        return any(all(p(s) for p in [expr[2]]) for s in t.spans)
    if kind == "trace":
        if expr[1].startswith("tags.") and "environment" not in t.info.tags:
            return None
        return expr[2](t)
    if kind == "not":
        r = _brute(expr[1], t)
        return None if r is None else not r
    parts = _flatten(kind, expr[1])
    if kind == "and":
        spans = [p for p in parts if p[0] == "span"]
        rest = [_brute(p, t) for p in parts if p[0] != "span"]
        if spans:
            rest.append(any(all(p[2](s) for p in spans) for s in t.spans))
        if False in rest:
            return False
        return None if None in rest else True
    results = [_brute(p, t) for p in parts]
    if True in results:
        return True
    return None if None in results else False


def _flatten(kind, parts):
    """AND is associative: parentheses inside an AND do not start a new group (nor do they
    for OR)."""
    out = []
    for p in parts:
        out += _flatten(kind, p[1]) if p[0] == kind else [p]
    return out


def _text(expr) -> str:
    kind = expr[0]
    if kind in ("span", "trace"):
        return expr[1]
    if kind == "not":
        return f"NOT ({_text(expr[1])})"
    joiner = " AND " if kind == "and" else " OR "
    return "(" + joiner.join(_text(p) for p in expr[1]) + ")"


LEAVES = st.one_of(
    st.sampled_from([("span", f, p) for f, p in SPAN_CONDS]),
    st.sampled_from([("trace", f, p) for f, p in TRACE_CONDS]),
)
EXPRS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.tuples(st.just("and"), st.lists(children, min_size=2, max_size=3)),
        st.tuples(st.just("or"), st.lists(children, min_size=2, max_size=3)),
        st.tuples(st.just("not"), children),
    ),
    max_leaves=5,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(EXPRS)
def test_span_conditions_combine_as_documented(conformance_client, expr):
    flt = _text(expr)
    want = {t.info.trace_id for t in TRACES if _brute(expr, t) is True}
    got = {t.info.trace_id for t in conformance_client.search_traces(None, flt, None)}
    assert got == want, flt


def test_mlflows_refused_or_is_tracetags_extension(conformance_client):
    flt = "span.name = 'summarize' OR span.type = 'LLM'"
    want = _spans_where(lambda s: s.name == "summarize") | _spans_where(
        lambda s: s.span_type == "LLM"
    )
    assert _ids(conformance_client, flt, ("1", "2")) == want
    none_error = _ids(conformance_client, "NOT span.status = 'ERROR'", ("1", "2"))
    assert none_error == {t.info.trace_id for t in TRACES} - _spans_where(
        lambda s: s.status == "ERROR"
    )


# -- explain and statistics by span --------------------------------------------------------


def test_explain_shows_the_span_groups(cli, conformance_store):
    out = cli(
        "search", "--explain", "-f", "status = 'ERROR' AND span.name = 'a' AND span.type = 'LLM'"
    ).stdout
    lines = [line.strip() for line in out.splitlines()]
    i = lines.index("SOME SPAN (one span satisfies all of)")
    assert lines[i + 1 : i + 3] == ["Compare: span.name = 'a'", "Compare: span.type = 'LLM'"]
    assert lines.index("Compare: status = 'ERROR'") < i  # trace-level first


def test_stats_by_span_type_are_span_latencies(cli, conformance_store):
    import json as json_module

    data = json_module.loads(cli("stats", "-g", "span.type", "-x", "1", "-o", "json").stdout)
    assert data["unit"] == "span"
    spans = [s for t in TRACES if t.info.experiment_id == "1" for s in t.spans]
    by_type: dict[str, list[float]] = {}
    for s in spans:
        by_type.setdefault(s.span_type, []).append(s.duration_ms)
    got = {g["group"][0]: g for g in data["groups"]}
    assert set(got) == set(by_type)
    for kind, durations in by_type.items():
        durations.sort()
        assert got[kind]["count"] == len(durations)
        assert got[kind]["max_ms"] == durations[-1]
        assert got[kind]["p50_ms"] == durations[max(1, -(-len(durations) // 2)) - 1]


# -- the span summary in the file store's documents ----------------------------------------

SUMMARISED_FILTERS = [
    "span.type = 'LLM'",
    "span.name = 'summarize' AND span.status = 'ERROR'",
    "span.type IN ('LLM', 'RETRIEVER') AND span.name LIKE '%e%'",
    "span.status != 'OK'",
    "span.name RLIKE '^re' OR NOT span.type = 'CHAIN'",
]


@pytest.mark.parametrize("flt", SUMMARISED_FILTERS)
def test_the_span_summary_answers_as_the_spans_do(flt, local_conformance_store, monkeypatch):
    """Conditions on span name, type and status alone are decided from the (name, type,
    status) kinds the document keeps: no span record is read, and the answer is the one the
    spans themselves give."""
    from tracetag.api import TracetagClient
    from tracetag.store.snapshot import Snapshot

    client = TracetagClient(local_conformance_store)
    want = {t.info.trace_id for t in TRACES if _brute_filter(flt, t)}
    reads: list[str] = []
    for name in ("spans", "span_record"):
        real = getattr(Snapshot, name)
        monkeypatch.setattr(
            Snapshot,
            name,
            lambda self, doc, real=real: reads.append(doc["trace_id"]) or real(self, doc),
        )
    assert _ids(client, flt, ("1", "2")) == want
    assert reads == []
    # A condition on anything else still reads the spans.
    _ids(client, flt.split(" OR ")[0] + " AND span.attributes.model LIKE '%'", ("1", "2"))
    assert reads


def _brute_filter(flt: str, t) -> bool:
    """SUMMARISED_FILTERS, written directly."""
    s = t.spans
    return {
        SUMMARISED_FILTERS[0]: any(x.span_type == "LLM" for x in s),
        SUMMARISED_FILTERS[1]: any(x.name == "summarize" and x.status == "ERROR" for x in s),
        SUMMARISED_FILTERS[2]: any(
            x.span_type in ("LLM", "RETRIEVER") and "e" in x.name for x in s
        ),
        SUMMARISED_FILTERS[3]: any(x.status != "OK" for x in s),
        SUMMARISED_FILTERS[4]: any(x.name.startswith("re") for x in s)
        or not any(x.span_type == "CHAIN" for x in s),
    }[flt]


def test_a_document_without_a_summary_has_its_spans_read(tmp_path):
    """A trace of many span kinds keeps no summary (it would weigh on every scan), and a
    document of an older store has none: both are answered from the spans."""
    from tracetag.api import TracetagClient
    from tracetag.filters import compile_filter
    from tracetag.filters.spans import SPAN_KINDS, span_summary
    from tracetag.model import Span, Trace, TraceData, TraceInfo

    many = [
        {"span_id": f"{i:016x}", "name": f"step_{i}", "span_type": "TOOL", "status": "OK"}
        for i in range(40)
    ]
    assert span_summary(many) == {}
    assert span_summary(many[:2]) == {SPAN_KINDS: "step_0\tTOOL\tOK\nstep_1\tTOOL\tOK"}
    client = TracetagClient(tmp_path / "s.json")
    spans = [
        Span.from_dict({**s, "trace_id": "tr-many", "start_time_ns": 1, "end_time_ns": 2})
        for s in many
    ]
    client.log_traces([Trace(TraceInfo("tr-many", timestamp_ms=1, status="OK"), TraceData(spans))])
    assert _ids(client, "span.name = 'step_39'", ("0",)) == {"tr-many"}
    assert _ids(client, "span.name = 'step_40'", ("0",)) == set()
    # The same document with and without its summary, judged the same way.
    doc = {"trace_id": "t", SPAN_KINDS: "a\tLLM\tOK"}
    spans_of = lambda d: [{"name": "a", "span_type": "LLM", "status": "OK"}]  # noqa: E731
    for flt, want in [
        ("span.type = 'LLM'", True),
        ("span.type = 'LLM' AND span.name = 'b'", False),
    ]:
        pred = compile_filter(parse_filter(flt), spans_of=spans_of)
        assert pred(doc) is want
        assert pred({"trace_id": "t"}) is want
