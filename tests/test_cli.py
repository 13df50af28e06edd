"""The command line as a whole: help, version, generated docs, completion, packaging."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.core import TyperGroup

import tracetag
from tracetag.cli.complete import script
from tracetag.cli.docs import SHELLS, commands, reference

from .conftest import TRACES_JSONL, run_tracetag

ROOT = Path(__file__).resolve().parents[1]
LEAVES = [(path, cmd) for path, cmd in commands() if not isinstance(cmd, TyperGroup)]


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p))
def test_every_command_has_help(cli, path):
    result = cli(*path[1:], "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.stdout
    assert len(result.stdout.splitlines()) > 4


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=lambda p: " ".join(p))
def test_every_command_help_has_an_example(cli, path):
    result = cli(*path[1:], "--help")
    assert "Example: tracetag " in result.stdout or "Example: EDITOR=" in result.stdout, (
        result.stdout
    )


def test_version(cli):
    result = cli("--version")
    assert result.stdout == f"tracetag {tracetag.__version__}\n"


def test_generated_reference_is_fresh():
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == reference(), (
        "docs/cli.md is stale: run python -m tracetag.cli.docs"
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_are_fresh(shell, cli):
    assert (ROOT / "completions" / f"tracetag.{shell}").read_text() == script(shell)
    assert cli("completion", shell).stdout == script(shell)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["search", "--bogus"], "No such option: --bogus"),
        (["search", "-o", "xml"], "'xml' is not one of"),
        (["nope"], "No such command 'nope'"),
        (["tags", "set"], "did you mean 'tracetag tag set'?"),
        (["serch"], "did you mean 'tracetag search'?"),
        (["tag", "list"], "Missing argument 'TRACE_ID'"),
    ],
)
def test_usage_errors_are_one_line_with_a_hint(cli, args, says):
    result = cli(*args)
    assert result.exit_code == 2, args
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tracetag: error: ")
    assert says in result.stderr, result.stderr
    assert "--help" in result.stderr


def _complete(words: str, store: Path, cword: int | None = None) -> list[str]:
    parts = words.split(" ")
    env = {
        **os.environ,
        "_TRACETAG_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1 if cword is None else cword),
        "TRACETAG_STORE": str(store),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tracetag"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == ""
    return [line for line in proc.stdout.splitlines() if line]


def test_dynamic_completion_sources(conformance_store):
    ids = _complete("tracetag show tr-66", conformance_store)
    assert ids == ["tr-6663f3d7173cfa73b65948ca5fbc00b3"]
    assert len(_complete("tracetag tag set tr-", conformance_store)) == 200  # capped
    keys = _complete(
        "tracetag tag delete tr-6663f3d7173cfa73b65948ca5fbc00b3 re", conformance_store
    )
    assert keys == ["request_type", "retries", "review status"]
    first = _complete("tracetag tag delete tr-6663", conformance_store)
    assert first == ["tr-6663f3d7173cfa73b65948ca5fbc00b3"]
    assert "tags.model_version" in _complete("tracetag stats --group-by tags.mo", conformance_store)
    assert "session_id" in _complete("tracetag tags values se", conformance_store)
    assert _complete("tracetag search -x ", conformance_store) == ["0", "1", "2"]


def test_completion_never_prints_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not a store")
    assert _complete("tracetag show tr-", bad) == []
    assert _complete("tracetag search -x ", tmp_path / "missing.json") == ["0"]


def test_console_script_and_module_run(tmp_path):
    # The console script beside this Python, whether or not its folder is on PATH.
    script = Path(sys.executable).with_name("tracetag")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("tracetag ")
    env = {"TRACETAG_STORE": str(tmp_path / "s.json")}
    assert run_tracetag("import", str(TRACES_JSONL), env=env).returncode == 0
    head = subprocess.run(
        f'"{sys.executable}" -m tracetag search --all -o ids | head -1',
        shell=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    assert head.returncode == 0 and head.stderr == b""  # a closed pipe is not an error


def test_wheel_contains_the_grammar(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("tracetag-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "tracetag/grammar/filter.lark" in names
        assert (
            z.read("tracetag/grammar/filter.lark")
            == (ROOT / "grammar" / "filter.lark").read_bytes()
        )
        assert "tracetag/cli/__init__.py" in names
    # The installed wheel parses filters with the packaged grammar, not the checkout's.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(target)], check=True)
    code = (
        "import tracetag.filters.parser as p; "
        "assert 'site' in str(p.grammar_path()), p.grammar_path(); "
        "print(p.parse_filter(\"tags.a = 'b'\"))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tags.a = 'b'"


def test_options_are_converted_without_loading_pydantic(local_conformance_store):
    """Every command converts its options without the 0.15 s import of pydantic that
    Typer's own conversion costs."""
    script = (
        "import sys\n"
        "from tracetag.cli import main\n"
        f"sys.argv = ['tracetag', '--store', {str(local_conformance_store)!r}, 'search', '-n', '2',"
        " '-o', 'ids', '--order-by', 'timestamp_ms DESC']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('pydantic' in sys.modules, code)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("tr-")
    assert lines[-1] == "False 0"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "0"], "Invalid value for '--max-results' / '-n': must be at least 1, not 0"),
        (["-n", "abc"], "Invalid value for '--max-results' / '-n': 'abc' is not a whole number"),
        (["-n", "2.5"], "'2.5' is not a whole number"),
    ],
)
def test_a_bad_number_is_one_line_naming_the_option(local_conformance_store, cli, args, message):
    result = cli("--store", str(local_conformance_store), "search", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
