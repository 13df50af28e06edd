"""The filter language: each extension and each error message, and properties of the parser."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracetag.errors import FilterSyntaxError
from tracetag.filters import ast as A
from tracetag.filters import compile_filter, parse_filter
from tracetag.filters.fields import parse_iso_ms
from tracetag.filters.parser import grammar_path


def doc(**tags) -> dict:
    base = {
        "trace_id": "tr-1",
        "experiment_id": "0",
        "name": "chat",
        "timestamp_ms": parse_iso_ms("2025-03-05T10:00:00Z"),
        "execution_time_ms": 5000,
        "status": "OK",
        "metadata": {"app_version": "1.3.0", "mlflow.sourceRun": "run-1"},
    }
    base["tags"] = tags
    return base


def match(filter_string: str, d: dict, now: int | None = None) -> bool | None:
    return compile_filter(parse_filter(filter_string), now)(d)


# -- semantics -------------------------------------------------------------------------------


def test_three_valued_logic():
    d = doc(environment="production")
    assert match("tags.x != 'a'", d) is None  # absent: unknown, not true
    assert match("NOT tags.x = 'a'", d) is None
    assert match("tags.x IS NULL", d) is True
    assert match("tags.x = 'a' OR tags.environment = 'production'", d) is True
    assert match("tags.x = 'a' AND tags.environment = 'production'", d) is None
    assert match("tags.x = 'a' AND tags.environment = 'staging'", d) is False
    assert match("tags.environment IS NOT NULL", d) is True


def test_precedence_and_binds_tighter_than_or():
    d = doc(a="1", b="0", c="1")
    assert match("tags.a = '0' AND tags.b = '1' OR tags.c = '1'", d) is True
    assert match("tags.a = '0' AND (tags.b = '1' OR tags.c = '1')", d) is False
    assert match("NOT tags.a = '0' AND tags.c = '1'", d) is True
    node = parse_filter("tags.a = '1' OR tags.b = '1' AND tags.c = '1'")
    assert isinstance(node, A.Or) and isinstance(node.items[1], A.And)


def test_keywords_any_case_and_key_forms():
    d = doc(**{"service.name": "chat_api", "review status": "done", "name": "tagged"})
    assert match("TAGS.service.name = 'chat_api' and tag.`review status` = 'done'", d) is True
    assert match('tags."review status" = "done"', d) is True
    assert match("tags.name = 'tagged'", d) is True  # the tag, not the trace name
    assert match("name = 'chat'", d) is True
    assert match("attributes.status = 'OK' AnD trace.name = 'chat'", d) is True


def test_like_ilike_rlike():
    d = doc(environment="Production", promo="50%_off")
    assert match("tags.environment LIKE 'prod%'", d) is False  # case-sensitive
    assert match("tags.environment ILIKE 'prod%'", d) is True
    assert match("tags.environment LIKE 'P_oduction'", d) is True
    assert match("tags.promo LIKE '50\\%\\_off'", d) is True
    assert match("tags.promo LIKE '50\\%x%'", d) is False
    assert match("tags.environment RLIKE 'duct'", d) is True  # unanchored search
    assert match("tags.environment RLIKE '^duct'", d) is False
    assert match("tags.environment NOT LIKE 'Prod%'", d) is False
    assert match("tags.missing LIKE '%'", d) is None


def test_in_and_not_in_on_tags_metadata_attributes():
    d = doc(model_version="v2.1.0")
    assert match("tags.model_version IN ('v2.0.0', 'v2.1.0')", d) is True
    assert match("tags.model_version NOT IN ('v2.0.0', 'v2.1.0')", d) is False
    assert match("metadata.app_version IN ('1.3.0')", d) is True
    assert match("status IN ('ERROR', 'OK')", d) is True
    assert match("tags.absent NOT IN ('a')", d) is None


def test_numeric_tag_comparison():
    assert match("tags.retries > 9", doc(retries="12")) is True  # 12 > 9 as numbers
    assert match("tags.retries > 9", doc(retries="3")) is False
    assert match("tags.retries > 9", doc(retries="many")) is None  # not a number: unknown
    assert match("tags.retries = 12", doc(retries="12.0")) is True
    assert match("tags.retries IN (1, 12)", doc(retries="12")) is True
    assert match("tags.score >= -0.5", doc(score="-0.25")) is True


def test_durations():
    d = doc()
    assert match("execution_time_ms >= 5s", d) is True
    assert match("execution_time_ms > 5s", d) is False
    assert match("execution_time_ms < 1.5m", d) is True
    assert match("execution_time_ms <= 250ms", d) is False
    assert match("execution_time_ms < 2h", d) is True
    assert match("execution_duration_ms = 5000", d) is True
    assert parse_filter("execution_time_ms > 1.5m") == parse_filter("execution_time_ms > 90000ms")


def test_dates_on_timestamps_are_utc():
    d = doc()
    assert match("timestamp_ms >= '2025-03-05'", d) is True
    assert match("timestamp_ms >= '2025-03-06'", d) is False
    assert match("timestamp_ms > '2025-03-05T09:59:59Z'", d) is True
    assert match("timestamp_ms > '2025-03-05T10:00:00'", d) is False  # no zone: UTC
    assert match("timestamp_ms > '2025-03-05T10:30:00+01:00'", d) is True  # 09:30 UTC
    assert match("request_time < '2025-03-05T10:00:01Z'", d) is True
    assert match("end_time_ms = '2025-03-05T10:00:05Z'", d) is True


def test_now_relative_with_frozen_clock(monkeypatch):
    d = doc()
    now = parse_iso_ms("2025-03-06T09:00:00Z")
    assert match("timestamp_ms > now() - 24h", d, now=now) is True
    assert match("timestamp_ms > now() - 12h", d, now=now) is False
    assert match("timestamp_ms < now() + 1d", d, now=now) is True
    monkeypatch.setenv("TRACETAG_NOW", "2025-03-06T09:00:00Z")
    assert match("timestamp_ms > now() - 24h", d) is True
    assert match("timestamp_ms > now() - 23h", d) is False


def test_mlflow3_aliases():
    d = doc()
    assert match("trace_id = 'tr-1'", d) is True
    assert match("request_id = 'tr-1'", d) is True
    assert match("state = 'OK'", d) is True
    assert match("run_id = 'run-1'", d) is True
    assert parse_filter("state = 'OK'") == parse_filter("status = 'OK'")
    assert parse_filter("timestamp > 5") == parse_filter("timestamp_ms > 5")


def test_strings_with_quotes_and_escapes():
    assert match('tags.customer = "O\'Brien"', doc(customer="O'Brien")) is True
    assert match("tags.customer = 'O\\'Brien'", doc(customer="O'Brien")) is True
    assert match("tags.customer = 'say \"hi\"'", doc(customer='say "hi"')) is True
    assert match("tags.note = ''", doc(note="")) is True
    assert match("tags.city = 'Zürich'", doc(city="Zürich")) is True


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message, column",
    [
        ("tags.environment = production", "expected a quoted string, a number or a duration", 19),
        ("tags.environment =", "unexpected end of filter, expected", 18),
        ("tags.environment = 'prod", "unterminated string: no closing '", 19),
        ("invalid_attribute = 'foo'", "unknown attribute 'invalid_attribute'", 0),
        ("tags.environment RLIKE '[('", "invalid regular expression '[(':", 24),
        ("tags.environment = 'production' AND", "unexpected end of filter", 35),
        ("(tags.environment = 'production'", "unexpected end of filter, expected ')'", 32),
        ("tags.model_version IN ()", "IN needs at least one value", 23),
        ("tags. = 'x'", "empty key after 'tags.'", 5),
        ("tags.retries > 'nine'", "compares tags.retries as a number", 15),
        ("status > 'OK'", "status supports =, !=, LIKE, ILIKE, RLIKE and IN, not >", 0),
        ("execution_time_ms > 'slow'", "execution_time_ms takes a number or a duration", 20),
        ("timestamp_ms > '2025-13-45'", "is not a date", 15),
        ("timestamp_ms > 5s", "did you mean now() - 5000ms", 15),
        ("execution_time_ms > now()", "now() compares with timestamps", 20),
        ("tags.x = 5s", "tags.x is text; a duration or now() cannot be compared", 9),
        ("name = 5", "name is text; quote the value", 7),
        ("foo.bar = 'x'", "unknown field prefix 'foo'", 0),
        ("tags.a = 'x' tags.b = 'y'", "unexpected field 'tags.b', expected AND or OR", 13),
        ("tags.a = 'x' AND AND tags.b = 'y'", "unexpected 'AND'", 17),
        ("tags.a == 'x'", "unexpected operator '='", 8),
        ("tags.a IN ('x',)", "expected a value before ')'", 15),
        ("tags.a = 'x')", "unexpected ')'", 12),
        ("tags.a ~ 'x'", "unexpected character '~'", 7),
        ("tags.`a = 'x'", "unterminated quoted key", 5),
        ("tags.a IN ('x', 1)", "IN values must all be strings or all numbers", 10),
        ("execution_time_ms LIKE '5%'", "LIKE needs a text field", 0),
    ],
)
def test_error_messages_and_columns(text, message, column):
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    e = info.value
    assert message in e.message, e.message
    assert e.column == column, (e.column, e.caret())
    assert e.caret().splitlines()[1] == "  " + " " * column + "^"


def test_error_message_names_no_lark_terminals():
    for text in ("tags.a =", "tags.a", "(", "tags.a = 'x' AND", "tags.a IN", "tags.a IS", "NOT"):
        with pytest.raises(FilterSyntaxError) as info:
            parse_filter(text)
        msg = info.value.message
        assert not any(
            t in msg for t in ("STRING", "FIELD", "COMP_OP", "$END", "_NOT", "LPAR", "__ANON")
        ), msg


def test_cli_error_shows_caret_and_exits_2(cli):
    result = cli("search", "-f", "tags.environment = 'production' AND")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "tracetag: error: unexpected end of filter, expected '(', NOT or a field such as "
        "tags.environment or status (at column 36)",
        "  tags.environment = 'production' AND",
        "                                     ^",
    ]


def test_multiline_filter_from_reference_examples():
    text = """
        tags.environment = 'production'
        AND status = 'ERROR'
        AND execution_time_ms > 5000
    """
    node = parse_filter(text)
    assert (
        str(node)
        == "tags.environment = 'production' AND status = 'ERROR' AND execution_time_ms > 5000"
    )
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter("\n  tags.a = 'x'\n  AND\n")
    assert info.value.column == len("\n  tags.a = 'x'\n  AND\n")


def test_grammar_file_is_the_one_in_the_repository():
    assert grammar_path().name == "filter.lark"
    assert "?or_expr" in grammar_path().read_text()


def test_blank_filter_matches_everything():
    assert parse_filter("   ") is None
    assert compile_filter(None)(doc()) is True


# -- properties ------------------------------------------------------------------------------

ALPHABET = string.ascii_letters + string.digits + " _.'\"`()=!<>%,-+*/\\\n\t" + "éü"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.text(max_size=40), st.text(alphabet=ALPHABET, max_size=60)))
def test_any_text_parses_or_raises_filter_error_with_column(text):
    try:
        node = parse_filter(text)
    except FilterSyntaxError as e:
        assert 0 <= e.column <= len(text)
        return
    if node is not None:
        assert parse_filter(str(node)) == node


KEYS = st.sampled_from(
    ["environment", "service.name", "review status", "a-b", "x:y/z", "name", "retries"]
)
STRINGS = st.text(alphabet=string.ascii_letters + " '\"\\%_é", max_size=8)


def _field():
    return st.one_of(
        st.builds(lambda k: f"tags.{k}" if " " not in k else f"tags.`{k}`", KEYS),
        st.sampled_from(["name", "request_id", "client_request_id", "metadata.app_version"]),
    )


def _quote(s: str) -> str:
    return A.quote_string(s)


COMPARISONS = st.one_of(
    st.builds(
        lambda f, op, v: f"{f} {op} {_quote(v)}", _field(), st.sampled_from(["=", "!="]), STRINGS
    ),
    st.builds(
        lambda f, op, v: f"{f} {op} {_quote(v)}",
        _field(),
        st.sampled_from(["LIKE", "ILIKE", "NOT LIKE"]),
        STRINGS,
    ),
    st.builds(
        lambda f, vs: f"{f} IN ({', '.join(_quote(v) for v in vs)})",
        _field(),
        st.lists(STRINGS, min_size=1, max_size=3),
    ),
    st.builds(lambda f, n: f"{f} IS {'NOT ' if n else ''}NULL", _field(), st.booleans()),
    st.builds(
        lambda f, op, n: f"{f} {op} {n}",
        st.sampled_from(["execution_time_ms", "timestamp_ms", "tags.retries", "end_time_ms"]),
        st.sampled_from(["<", "<=", ">", ">=", "=", "!="]),
        st.one_of(
            st.integers(-(10**6), 10**12),
            st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)),
        ),
    ),
    st.builds(
        lambda op, d: f"execution_time_ms {op} {d}",
        st.sampled_from(["<", ">="]),
        st.sampled_from(["5s", "250ms", "1.5m", "2h", "1d"]),
    ),
    st.just("timestamp_ms > now() - 24h"),
    st.just("timestamp_ms >= '2025-03-05'"),
    # status takes its known values only (anything else is refused, not silently empty)
    st.builds(
        lambda op, v: f"status {op} '{v}'",
        st.sampled_from(["=", "!=", "LIKE"]),
        st.sampled_from(["OK", "ERROR", "IN_PROGRESS"]),
    ),
)


def _combine(children):
    return st.one_of(
        st.builds(lambda a, b: f"{a} AND {b}", children, children),
        st.builds(lambda a, b: f"{a} OR {b}", children, children),
        st.builds(lambda a: f"NOT {a}", children),
        st.builds(lambda a: f"({a})", children),
    )


FILTERS = st.recursive(COMPARISONS, _combine, max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(FILTERS)
def test_generated_filters_print_and_parse_back_to_the_same_ast(text):
    node = parse_filter(text)
    assert node is not None
    printed = str(node)
    assert parse_filter(printed) == node
    assert str(parse_filter(printed)) == printed


def test_parser_cache_is_private_and_survives_damage(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = "from tracetag.filters import parse_filter; print(parse_filter(\"tags.a = 'b'\"))"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert first.stdout == "tags.a = 'b'\n" and first.stderr == ""
    folder = tmp_path / "tracetag"
    (cache,) = folder.iterdir()
    assert folder.stat().st_mode & 0o077 == 0  # only this user can plant a pickle there
    cache.write_bytes(b"garbage")
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert again.stdout == "tags.a = 'b'\n" and again.stderr == ""
