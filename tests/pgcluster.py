"""A throwaway PostgreSQL cluster for the tests and benchmarks: ``initdb`` + ``pg_ctl`` on a port
and a socket folder of its own, under an unprivileged account when run as root (the server
refuses root), stopped and removed at the end.

``start()`` returns None with a reason when PostgreSQL is not installed; with
``$TRACETAG_REQUIRE_POSTGRES`` set (CI sets it), a missing PostgreSQL is an error instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Cluster", "find_bin", "start"]

PASSWORD_USER = "tt_secret_user"
PASSWORD = "s3cret-pässword"


def find_bin() -> Path | None:
    """The folder of initdb / pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bindir: Path, root: Path, port: int, user: str | None):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = port
        self.os_user = user  # the account the server runs as (None: this one)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)

    def url(self, db: str = "postgres", user: str = "tracetag") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def password_url(self, db: str = "postgres", password: str = PASSWORD) -> str:
        from urllib.parse import quote

        return f"postgresql://{PASSWORD_USER}:{quote(password)}@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "tracetag", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=256MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.root / "server.log"), "start")  # fmt: skip
        self.sql(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")

    def sql(self, statement: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(db), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {template}" if template else ""
        self.sql(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> tuple[Cluster | None, str]:
    """A running cluster, or (None, why not)."""
    bindir = find_bin()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[postgres]')"
    if bindir is None:
        return None, "PostgreSQL is not installed (apt-get install -y postgresql)"
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        subprocess.run(["id", user], check=True, capture_output=True)
    root = Path(tempfile.mkdtemp(prefix="tracetag-pg-"))
    os.chmod(root, 0o755)
    if user:
        shutil.chown(root, user)
    (root / "sockets").mkdir()
    if user:
        shutil.chown(root / "sockets", user)
    cluster = Cluster(bindir, root, _free_port(), user)
    for attempt in range(3):
        try:
            cluster.start()
            return cluster, ""
        except subprocess.CalledProcessError as e:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            if attempt == 2:
                raise RuntimeError(f"PostgreSQL did not start: {e.stderr}\n{log}") from e
            shutil.rmtree(cluster.data, ignore_errors=True)
            cluster.port = _free_port()
            time.sleep(0.5)
    raise AssertionError("unreachable")
