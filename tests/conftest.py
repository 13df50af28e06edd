"""Shared fixtures: every test gets its own store in tmp_path; nothing touches a real user store."""

from __future__ import annotations

import itertools
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

sys.path.insert(0, str(Path(__file__).parent))
import mlflowserver
import pgcluster

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


def _required(started, what: str, variable: str):
    """A started component, else a skip saying why, or a failure where ``variable`` says the
    component must be there (CI): tests of a component never skip in CI."""
    component, why = started
    if component is None:
        if os.environ.get(variable):
            pytest.fail(f"{what} is required here: {why}")
        pytest.skip(why)
    return component


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server for the session (tests/pgcluster.py). Without PostgreSQL
    the tests that need it skip, saying why, unless $TRACETAG_REQUIRE_POSTGRES is set (CI)."""
    cluster = _required(pgcluster.start(), "PostgreSQL", "TRACETAG_REQUIRE_POSTGRES")
    yield cluster
    cluster.stop()


_DATABASES = itertools.count()


@pytest.fixture
def pg_url(pg_cluster, monkeypatch):
    """A new, empty database; ``$TRACETAG_STORE`` points at it."""
    url = pg_cluster.create_database(f"tt_{next(_DATABASES)}")
    monkeypatch.setenv("TRACETAG_STORE", url)
    return url


@pytest.fixture(scope="session")
def _pg_conformance_master(pg_cluster, _conformance_master):
    """The conformance traces copied once into a template database."""
    url = pg_cluster.create_database("tt_conformance")
    runtime.reset()
    source = TracetagClient(_conformance_master / "store.json")
    target = TracetagClient(url)
    target.copy_from(source)
    target.store.close()
    runtime.reset()
    return "tt_conformance"


def _mlflow_server():
    """A real ``mlflow server`` (tests/mlflowserver.py); skips without MLflow unless
    $TRACETAG_REQUIRE_MLFLOW is set (CI)."""
    server = _required(mlflowserver.start(), "MLflow", "TRACETAG_REQUIRE_MLFLOW")
    yield server
    server.stop()


# One server holds the shared conformance copy; tests that write get a second one.
mlflow_server = pytest.fixture(scope="session", name="mlflow_server")(_mlflow_server)
mlflow_scratch = pytest.fixture(scope="session", name="mlflow_scratch")(_mlflow_server)


@pytest.fixture(scope="session")
def mlflow_conformance(mlflow_server, _conformance_master):
    """The server loaded once with the conformance traces, through ``store copy``."""
    runtime.reset()
    TracetagClient(mlflow_server.url).copy_from(TracetagClient(_conformance_master / "store.json"))
    runtime.reset()
    return mlflow_server.url


# The backends with transactions: the whole behavioural suite (writes included) runs on each.
TRANSACTIONAL = ["local", "postgresql"]


@pytest.fixture(params=TRANSACTIONAL)
def backend(request):
    """The name of a backend: tests that use the conformance store run against each one with
    transactions (the local file store and PostgreSQL; the behavioural suite is the same)."""
    return request.param


@pytest.fixture(params=sorted(BACKENDS))
def any_backend(request):
    """Every registered backend, the MLflow server included: for tests that only read."""
    return request.param


def _conformance_of(request, backend, monkeypatch):
    if backend == "local":
        return request.getfixturevalue("local_conformance_store")
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        template = request.getfixturevalue("_pg_conformance_master")
        url = cluster.create_database(f"tt_{next(_DATABASES)}", template=template)
        monkeypatch.setenv("TRACETAG_STORE", url)
        return url
    if backend == "mlflow":
        url = request.getfixturevalue("mlflow_conformance")
        monkeypatch.setenv("TRACETAG_STORE", url)
        return url
    raise AssertionError(f"no conformance fixture for backend {backend!r}")


@pytest.fixture
def conformance_store(request, backend, monkeypatch):
    """A store of ``backend`` holding the 320 conformance traces; ``$TRACETAG_STORE`` points
    at it, so the CLI and the fluent functions use it too."""
    return _conformance_of(request, backend, monkeypatch)


@pytest.fixture
def readonly_store(request, any_backend, monkeypatch):
    """The conformance traces on every backend; the test must not write (the MLflow server's
    copy is shared by the session)."""
    return _conformance_of(request, any_backend, monkeypatch)


@pytest.fixture
def readonly_client(readonly_store):
    return TracetagClient(readonly_store)


@pytest.fixture
def local_conformance_store(_conformance_master, store_path):
    """The conformance traces in a local store, for tests about the local store's files."""
    for f in _conformance_master.iterdir():
        shutil.copy2(f, store_path.parent / f.name)
    return store_path


@pytest.fixture
def conformance_client(conformance_store):
    return TracetagClient(conformance_store)


def written(location) -> object:
    """Something that changes whenever anything is written to the store at ``location``: the
    local store's files, a database's write count."""
    if isinstance(location, Path):
        return {p.name: p.read_bytes() for p in location.parent.glob(location.name + "*")}
    return TracetagClient(location).info()["writes"]


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
