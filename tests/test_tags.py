"""Tags on finished traces: the Python API and the tag commands, one trace or thousands."""

from __future__ import annotations

import json
import os
import re
import stat
import sys

import pytest

import tracetag
from tracetag.api import TagNotFound, TracetagClient
from tracetag.backend import open_backend
from tracetag.errors import InvalidTag, TraceNotFound
from tracetag.model import Trace, TraceInfo
from tracetag.store import Store

from .conftest import run_tracetag, written

A = "tr-6663f3d7173cfa73b65948ca5fbc00b3"
B = "tr-72cb64eba1502f29d5a590b4fab5f196"
MISSING = "tr-" + "0" * 32


def tags_of(store_path, trace_id):
    return TracetagClient(store_path).get_trace(trace_id).info.tags


# -- Python ------------------------------------------------------------------------------------


def test_set_and_delete_fluent_and_client(conformance_store):
    tracetag.set_store(conformance_store)
    tracetag.set_trace_tag(A, "needs_review", True)  # non-strings become strings
    tracetag.set_trace_tags(A, {"score": 0.5, "reviewer": "ana"})
    assert {k: tags_of(conformance_store, A)[k] for k in ("needs_review", "score", "reviewer")} == {
        "needs_review": "True",
        "score": "0.5",
        "reviewer": "ana",
    }
    client = tracetag.MlflowClient()  # the name ported MLflow code uses
    client.delete_trace_tag(A, "reviewer")
    client.set_trace_tag(A, "needs_review", "false")
    tags = tags_of(conformance_store, A)
    assert "reviewer" not in tags and tags["needs_review"] == "false"
    with pytest.raises(TraceNotFound):
        tracetag.set_trace_tag(MISSING, "a", "b")
    with pytest.raises(TagNotFound):
        tracetag.delete_trace_tag(A, "never_set")


def test_set_trace_tags_is_one_write(conformance_store):
    store = open_backend(conformance_store)
    TracetagClient(store).set_trace_tags(A, {f"k{i}": str(i) for i in range(50)})
    assert store.writes == 1


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("", "x", "invalid tag key ''"),
        ("bad*key", "x", "invalid tag key 'bad*key'"),
        ("k" * 251, "x", "invalid tag key"),
        ("ok", "v" * 8001, "value has 8001 characters, the limit is 8000"),
        ("ok", None, "value is None"),
    ],
)
def test_validation(conformance_store, key, value, message):
    with pytest.raises(InvalidTag, match=re.escape(message)):
        TracetagClient(conformance_store).set_trace_tag(A, key, value)


def test_valid_keys_follow_mlflow_rule(conformance_store):
    client = TracetagClient(conformance_store)
    for key in ("service.name", "a-b", "x:y/z", "review status", "ключ", "k" * 250):
        client.set_trace_tag(A, key, "v")
    client.set_trace_tag(A, "long", "v" * 8000)
    assert tags_of(conformance_store, A)["long"] == "v" * 8000


# -- CLI ---------------------------------------------------------------------------------------


def test_tag_set_values_verbatim(cli, conformance_store):
    result = cli(
        "tag", "set", A, "eq=a=b=c", "empty=", "quote='x\"y", "uni=Zürich ✓", "sp= padded "
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "1 trace changed, 0 unchanged\n"
    tags = tags_of(conformance_store, A)
    assert tags["eq"] == "a=b=c" and tags["empty"] == "" and tags["quote"] == "'x\"y"
    assert tags["uni"] == "Zürich ✓" and tags["sp"] == " padded "
    again = cli("tag", "set", A, "eq=a=b=c")
    assert again.stderr == "0 traces changed, 1 unchanged; nothing written\n"


def test_tag_set_several_ids_with_unknown_one(cli, conformance_store):
    result = cli("tag", "set", A, MISSING, B, "batch=1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "2 traces changed, 0 unchanged, 1 not found",
        f"tracetag: trace not found: {MISSING}",
    ]
    assert (
        tags_of(conformance_store, A)["batch"] == "1"
        and tags_of(conformance_store, B)["batch"] == "1"
    )


def test_tag_set_strict_writes_nothing_on_unknown_id(cli, conformance_store):
    before = written(conformance_store)
    result = cli("tag", "set", "--strict", A, MISSING, "batch=1")
    assert result.exit_code == 1 and "nothing written" in result.stderr
    assert written(conformance_store) == before


def test_bad_pair_means_nothing_written(cli, conformance_store):
    before = written(conformance_store)
    result = cli("tag", "set", A, "good=1", "bad*key=2")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "tracetag: error: invalid tag key 'bad*key': use 1 to 250 characters"
    )
    assert cli("tag", "set", A, "x=" + "v" * 8001).exit_code == 2
    assert cli("tag", "set", A).exit_code == 2
    assert written(conformance_store) == before


def test_dry_run_shows_changes_and_writes_nothing(cli, conformance_store):
    before = written(conformance_store)
    result = cli("tag", "set", "--dry-run", A, B, "priority=urgent", "new=1")
    assert result.exit_code == 0
    out = result.stdout.splitlines()
    assert f"{A}  ~ priority: normal -> urgent" in out and f"{A}  + new=1" in out
    assert result.stderr == "2 traces would change, 0 unchanged\n"
    result = cli("tag", "delete", "--dry-run", A, "priority")
    assert result.stdout == f"{A}  - priority (was normal)\n"
    assert written(conformance_store) == before


def test_tag_delete_reports_missing_keys(cli, conformance_store):
    result = cli("tag", "delete", A, B, "priority", "not_there")
    assert result.exit_code == 1
    assert f"tracetag: trace {A} has no tag 'not_there'" in result.stderr
    assert "priority" not in tags_of(conformance_store, A)
    assert "priority" not in tags_of(conformance_store, B)


def test_tag_list(cli, conformance_store):
    data = json.loads(cli("tag", "list", A, "-o", "json").stdout)
    assert data["session_id"] == "session_049" and data["review status"] == "done"
    tsv = cli("tag", "list", A).stdout.splitlines()
    assert tsv[0] == "key\tvalue" and "city\tZürich" in tsv
    assert cli("tag", "list", MISSING).exit_code == 1


def test_tag_by_filter_and_json_report(cli, conformance_store):
    result = cli(
        "tag", "set", "-f", "status = 'ERROR'", "-x", "1", "needs_review=yes", "-o", "json"
    )
    report = json.loads(result.stdout)
    assert report["changed"] == 45 and report["unchanged"] == 0 and report["written"]
    ids = cli("search", "-f", "tags.needs_review = 'yes'", "--all", "-o", "ids").stdout.split()
    assert len(ids) == 45


def test_ids_from_stdin(cli, conformance_store):
    ids = cli("search", "-f", "tags.environment = 'staging'", "--all", "-o", "ids").stdout
    result = cli("tag", "set", "-", "reviewed=true", input=ids)
    assert result.exit_code == 0
    n = len(ids.split())
    assert result.stderr == f"{n} traces changed, 0 unchanged\n"
    result = cli("tag", "delete", "-", "reviewed", input=ids)
    assert result.stderr == f"{n} traces changed, 0 unchanged\n"


def test_real_pipeline_search_into_tag_set(conformance_store):
    env = {"TRACETAG_STORE": str(conformance_store)}
    search = run_tracetag("search", "-f", "status = 'ERROR'", "--all", "--output", "ids", env=env)
    assert search.returncode == 0
    tag = run_tracetag("tag", "set", "-", "triage=true", input=search.stdout, env=env)
    assert tag.returncode == 0, tag.stderr
    assert tag.stderr.decode() == "48 traces changed, 0 unchanged\n"
    check = run_tracetag("search", "-f", "tags.triage = 'true'", "--all", "-o", "ids", env=env)
    assert sorted(check.stdout.split()) == sorted(search.stdout.split())


def test_ten_thousand_traces_tagged_by_filter_in_one_write(store_path, cli):
    client = TracetagClient(store_path)
    client.log_traces(
        [
            Trace(
                TraceInfo(
                    trace_id=f"tr-{i:032x}", timestamp_ms=i, status="ERROR" if i % 2 else "OK"
                )
            )
            for i in range(20_000)
        ]
    )
    store = Store(store_path)
    report = TracetagClient(store).update_tags(
        filter_string="status = 'ERROR'", set={"needs_review": "true"}
    )
    assert len(report.changed) == 10_000
    assert store.writes == 1  # one journal record for the whole batch
    journal = store.journal_path.read_bytes().splitlines()
    assert journal[-1].count(b'"needs_review"') == 1
    result = cli("search", "-f", "tags.needs_review = 'true'", "--all", "-o", "ids")
    assert len(result.stdout.split()) == 10_000


# -- tag edit ----------------------------------------------------------------------------------


def _editor(tmp_path, body: str):
    script = tmp_path / "editor.py"
    script.write_text(
        f"import sys\npath = sys.argv[1]\ntext = open(path, encoding='utf-8').read()\n{body}\n"
    )
    wrapper = tmp_path / "editor.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return {"EDITOR": str(wrapper), "VISUAL": ""}


def test_tag_edit_applies_difference(cli, tmp_path, conformance_store):
    body = (
        "lines = [l for l in text.splitlines() if not l.startswith(('priority', 'note '))]\n"
        "lines = [l.replace('city = Zürich', 'city = Genève') for l in lines]\n"
        "lines.append('owner = team ml')\n"
        "lines.append('spaced = \"  two spaces  \"')\n"
        "open(path, 'w', encoding='utf-8').write('\\n'.join(lines) + '\\n')"
    )
    result = cli("tag", "edit", A, env=_editor(tmp_path, body))
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert "+ owner=team ml" in err and "~ city: Zürich -> Genève" in err
    assert "- priority (was normal)" in err and "- note (was )" in err
    tags = tags_of(conformance_store, A)
    assert (
        tags["owner"] == "team ml"
        and tags["city"] == "Genève"
        and tags["spaced"] == "  two spaces  "
    )
    assert "priority" not in tags and tags["customer"] == 'say "hi"'  # quoted value kept


def test_tag_edit_unchanged_or_emptied_writes_nothing(cli, tmp_path, conformance_store):
    before = written(conformance_store)
    result = cli("tag", "edit", A, env=_editor(tmp_path, "pass"))
    assert result.exit_code == 0 and "no changes" in result.stderr
    result = cli("tag", "edit", A, env=_editor(tmp_path, "open(path, 'w').write('# aborted\\n')"))
    assert result.exit_code == 0 and "no changes" in result.stderr
    assert written(conformance_store) == before


@pytest.mark.parametrize(
    "line, message",
    [
        ("bad*key = 1", "line 6: invalid tag key 'bad*key'"),
        ("city = again", "line 6: duplicate key 'city' (first on line"),
        ("no equals sign", "line 6: expected 'key = value'"),
    ],
)
def test_tag_edit_invalid_content_keeps_the_text(cli, tmp_path, conformance_store, line, message):
    before = written(conformance_store)
    body = (
        f"lines = text.splitlines()\nlines.insert(5, {line!r})\n"
        "open(path, 'w').write('\\n'.join(lines))"
    )
    result = cli("tag", "edit", A, env=_editor(tmp_path, body))
    assert result.exit_code == 2
    assert message in result.stderr
    saved = result.stderr.rsplit("saved in ", 1)[1].strip()
    with open(saved, encoding="utf-8") as f:
        assert line in f.read()
    os.unlink(saved)
    assert written(conformance_store) == before


def test_tag_edit_keeps_concurrent_change_to_other_keys(tmp_path, conformance_store, cli):
    body = (
        "import subprocess, sys, os\n"
        "subprocess.run([sys.executable, '-m', 'tracetag', 'tag', 'set',"
        f" {A!r}, 'other=concurrent'], check=True)\n"
        "open(path, 'a').write('mine = 1\\n')"
    )
    result = cli(
        "tag", "edit", A, env={**_editor(tmp_path, body), "TRACETAG_STORE": str(conformance_store)}
    )
    assert result.exit_code == 0, result.output
    tags = tags_of(conformance_store, A)
    assert tags["mine"] == "1" and tags["other"] == "concurrent"


def _run_with_tty_stderr(args: list[str], env: dict) -> tuple[int, bytes, bytes]:
    import pty
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetag", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, **env},
    )
    os.close(slave)
    out = proc.stdout.read()
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(), out, b"".join(chunks)


def test_progress_bar_only_on_a_terminal(conformance_store, cli):
    env = {"TRACETAG_STORE": str(conformance_store), "COLUMNS": "100"}
    code, _out, err = _run_with_tty_stderr(
        ["tag", "set", "--filter", "status = 'OK'", "batch=1"], env
    )
    assert code == 0
    assert b"selecting traces" in err and b"272 traces changed" in err
    quiet = cli("tag", "set", "--filter", "status = 'OK'", "batch=2")
    assert quiet.stderr == "272 traces changed, 0 unchanged\n"  # not a terminal: summary only
