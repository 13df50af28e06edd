"""What data written by others can do to a terminal, a spreadsheet or a pipe: nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracetag.api import TracetagClient
from tracetag.cli.render import csv_cell, tsv_cell, visible
from tracetag.editing import format_tags, parse_tags_text
from tracetag.model import Span, SpanEvent, Trace, TraceData, TraceInfo

HOSTILE = [
    "\x1b]0;pwned\x07",  # retitle the window
    "\x1b[2J\x1b[H",  # clear the screen
    "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",  # a hidden hyperlink
    "\x1b]0;unterminated OSC swallows the rest",
    "[link=http://evil.example]click me[/link]",
    "[todo] fix retries",
    "[/api/v1/chat]",
    "[bold red]alarm[/]",
    "cr\rover",
    '=HYPERLINK("http://evil.example")',
    "\u202etxt.exe",
]


def _hostile_trace(tid: str, text: str) -> Trace:
    return Trace(
        TraceInfo(
            trace_id=tid,
            name=text,
            timestamp_ms=1_700_000_000_000,
            execution_time_ms=5,
            tags={"note": text, "review status": text},
            metadata={text[:200] or "m": text},
            request_preview=text,
            response_preview=text,
            client_request_id=text,
        ),
        TraceData(
            [
                Span(
                    "a1",
                    text,
                    span_type=text,
                    start_time_ns=1,
                    end_time_ns=2,
                    attributes={text: text},
                    events=[SpanEvent(text, 1, {text: text})],
                    inputs=text,
                    outputs={"x": text},
                )
            ]
        ),
    )


HUMAN = [
    ["search", "-o", "table"],
    ["search", "-o", "tsv"],
    ["search", "-o", "csv"],
    ["search", "--columns", "trace_id,name,tags.note,metadata.m", "-o", "table"],
    ["show", "TID"],
    ["tag", "list", "TID"],
    ["tag", "list", "TID", "-o", "tsv"],
    ["tags", "keys", "-o", "table"],
    ["tags", "values", "note", "-o", "table"],
    ["stats", "-g", "name", "-o", "table"],
    ["stats", "-g", "tags.note", "-o", "tsv"],
    ["tag", "set", "TID", "other=1", "--dry-run"],
    ["delete", "TID", "--dry-run"],
    ["lint", "-o", "table"],
]
MACHINE = [["search", "-o", "json"], ["search", "-o", "jsonl"], ["show", "TID", "-o", "json"]]


def _run_all(cli, tid: str, text: str) -> None:
    for args in HUMAN + MACHINE:
        args = [tid if a == "TID" else a for a in args]
        r = cli(*args)
        assert r.exit_code in (0, 1), (args, r.output)
        # No ESC (or other control byte) from the data reaches a person's terminal, and JSON
        # escapes them (orjson writes \u001b).
        for stream in (r.stdout, r.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\r" not in stream, args
        if args[-1] == "json" or "json" in args:
            if args[0] == "search" and args[-1] == "jsonl":
                rows = [json.loads(x) for x in r.stdout.splitlines()]
                assert rows[0]["name"] == text
            elif args[0] == "show":
                assert json.loads(r.stdout)["info"]["name"] == text


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_never_reach_the_terminal(cli, store_path, text):
    client = TracetagClient(store_path)
    client.log_traces([_hostile_trace("tr-h", text)])
    client.store.compact()
    _run_all(cli, "tr-h", text)


def test_markup_in_data_is_shown_as_text(cli, store_path):
    client = TracetagClient(store_path)
    client.log_traces([_hostile_trace("tr-h", "[todo] fix retries")])
    for args in (["search", "-o", "table"], ["show", "tr-h"], ["stats", "-g", "name"]):
        out = cli(*args).stdout
        assert "[todo] fix retries" in out.replace("\n", "") or "[todo]" in out, args
    out = cli("tag", "list", "tr-h", "-o", "tsv").stdout
    assert "note\t[todo] fix retries\n" in out  # machine output: no markup escaping


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.slow
@given(st.text(max_size=40))
def test_any_text_in_every_field_reads_back_safely(cli, store_path, text):
    client = TracetagClient(store_path)
    text = text[:200]
    client.log_traces([_hostile_trace("tr-f", text)])
    client.store.compact()
    assert client.get_trace("tr-f").info.tags["note"] == text
    _run_all(cli, "tr-f", text)


# -- the escapes themselves -------------------------------------------------------------------


def test_tsv_escapes_are_unambiguous_and_reversible():
    value = "a\tb\nc\rd\\e\x1bf"
    cell = tsv_cell(value)
    assert "\t" not in cell and "\n" not in cell and "\r" not in cell and "\x1b" not in cell
    assert cell == "a\\tb\\nc\\rd\\\\e\\x1bf"
    decoded = cell.encode().decode("unicode_escape")
    assert decoded == value


def test_csv_cells_do_not_run_in_a_spreadsheet(cli, store_path):
    client = TracetagClient(store_path)
    client.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id=f"tr-{n}",
                    name=name,
                    timestamp_ms=1_700_000_000_000 + n,
                    tags={"t": name},
                )
            )
            for n, name in enumerate(["=1+2", "+cmd", "-2", "@SUM(A1)", "plain"])
        ]
    )
    rows = list(csv.reader(io.StringIO(cli("search", "-o", "csv", "--columns", "name").stdout)))
    assert sorted(r[0] for r in rows[1:]) == sorted(["'=1+2", "'+cmd", "-2", "'@SUM(A1)", "plain"])
    assert csv_cell("-5") == "-5" and csv_cell(5) == 5


def test_visible_shows_controls_and_bidi_overrides():
    assert visible("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert visible("\u202eabc") == "\\u202eabc"
    assert visible("x\ny") == "x\\x0ay" and visible("x\ny", newlines=True) == "x\ny"


def test_errors_echoing_input_are_escaped(cli, conformance_store):
    r = cli("tag", "set", "tr-\x1b[2J", "k=v")
    assert "\x1b" not in r.stderr
    r = cli("search", "-f", "tags.x = '\x1b]0;t\x07")
    assert r.exit_code == 2 and "\x1b" not in r.stderr and "\x07" not in r.stderr


# -- show: long chains and cycles -----------------------------------------------------------


def test_show_a_5000_span_chain(cli, store_path):
    spans = [
        Span(f"s{i:05d}", f"step {i}", parent_id=f"s{i - 1:05d}" if i else None, start_time_ns=i)
        for i in range(5000)
    ]
    TracetagClient(store_path).log_traces(
        [Trace(TraceInfo(trace_id="tr-chain", timestamp_ms=1), TraceData(spans))]
    )
    r = cli("show", "tr-chain")
    assert r.exit_code == 0
    assert "step 4999" in r.stdout and "(depth 4999)" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) < 400


def test_show_spans_in_a_parent_cycle(cli, store_path):
    spans = [
        Span("a", "root", start_time_ns=1),
        Span("b", "loop-b", parent_id="c", start_time_ns=2),
        Span("c", "loop-c", parent_id="b", start_time_ns=3),
        Span("d", "self", parent_id="d", start_time_ns=4),
    ]
    TracetagClient(store_path).log_traces(
        [Trace(TraceInfo(trace_id="tr-cyc", timestamp_ms=1), TraceData(spans))]
    )
    out = cli("show", "tr-cyc").stdout
    for name in ("root", "loop-b", "loop-c", "self"):
        assert name in out


# -- tag edit round-trips every legal key and value ----------------------------------------

KEY_CHARS = st.sampled_from(list("abcXYZ_-.:/ 09é"))
KEYS = st.text(KEY_CHARS, min_size=1, max_size=12)
VALUES = st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=6))
def test_tag_edit_text_round_trips_every_legal_tag(tags):
    assert parse_tags_text(format_tags("tr-1", tags)) == tags


@pytest.mark.parametrize(
    "value", [" padded ", "line\u2028sep", "form\x0cfeed", "next\x85line", '"quoted"', "a\nb"]
)
def test_tag_edit_keeps_untouched_tags(cli, tmp_path, store_path, value):
    client = TracetagClient(store_path)
    tags = {" lead": "1", "trail ": "2", "v": value}
    client.log_traces([Trace(TraceInfo(trace_id="tr-e", timestamp_ms=1, tags=tags))])
    script = tmp_path / "ed.py"
    script.write_text(
        "import sys\np = sys.argv[1]\nt = open(p, encoding='utf-8', newline='').read()\n"
        "open(p, 'w', encoding='utf-8', newline='').write(t + 'added = yes\\n')\n"
    )
    import sys

    r = cli("tag", "edit", "tr-e", env={"EDITOR": f"{sys.executable} {script}"})
    assert r.exit_code == 0, r.output
    assert client.get_trace("tr-e").info.tags == {**tags, "added": "yes"}
