"""Shared fixtures: every test gets its own store in tmp_path; nothing touches a real user store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracetag import runtime
from tracetag.api import TracetagClient
from tracetag.backend import BACKENDS
from tracetag.cli import app

HERE = Path(__file__).parent
CONFORMANCE = HERE / "conformance"
TRACES_JSONL = CONFORMANCE / "traces.jsonl"


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch, _cache_home):
    path = tmp_path / "store.json"
    monkeypatch.setenv("TRACETAG_STORE", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))
    monkeypatch.delenv("TRACETAG_NOW", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    runtime.reset()
    yield path
    runtime.reset()


@pytest.fixture
def store_path(isolated_store):
    return isolated_store


@pytest.fixture
def client(store_path):
    return TracetagClient(store_path)


@pytest.fixture(scope="session")
def _conformance_master(tmp_path_factory):
    """The 320 conformance traces imported once; tests get a copy."""
    d = tmp_path_factory.mktemp("conformance-master")
    c = TracetagClient(d / "store.json")
    c.import_traces(TRACES_JSONL.read_bytes(), str(TRACES_JSONL))
    c.store.compact()
    return d


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """The name of a registered backend: tests that use the conformance store run against
    every one (today the local file store; the behavioural suite is the same for all)."""
    return request.param


@pytest.fixture
def conformance_store(backend, _conformance_master, store_path):
    """A store of ``backend`` holding the 320 conformance traces; ``$TRACETAG_STORE`` points
    at it, so the CLI and the fluent functions use it too."""
    if backend == "local":
        for f in _conformance_master.iterdir():
            shutil.copy2(f, store_path.parent / f.name)
        return store_path
    raise AssertionError(f"no conformance fixture for backend {backend!r}")


@pytest.fixture
def conformance_client(conformance_store):
    return TracetagClient(conformance_store)


class Cli:
    """Runs the CLI in-process through Typer's CliRunner, with stdout and stderr apart."""

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict | None = None):
        return self.runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture
def cli():
    return Cli()


def run_tracetag(*args: str, input: bytes | None = None, env: dict | None = None, cwd=None):
    """The real console entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tracetag", *args],
        input=input,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


ID_RE = re.compile(r"tr-[0-9a-f]{32}")


def normalise(text: str) -> str:
    """Trace ids and times replaced, so CLI output can be compared exactly."""
    text = ID_RE.sub("<id>", text)
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", text)
