"""A real ``mlflow server`` for the tests: SQLite in a temporary folder, a free localhost port,
one worker; started once per session and stopped at the end.

``start()`` returns None with a reason when MLflow is not installed; with
``$TRACETAG_REQUIRE_MLFLOW`` set (CI sets it), a missing MLflow is an error instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["Server", "start"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path, port: int, proc: subprocess.Popen[bytes]):
        self.root = root
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(20)
        if self.proc.poll() is None:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start(
    timeout: float = 120, workers: int = 1, backend: str | None = None
) -> tuple[Server | None, str]:
    """A server on a free port; ``backend``: its backend store URI (a SQLite file of its own
    when None)."""
    if importlib.util.find_spec("mlflow") is None:
        return None, "MLflow is not installed (pip install -e '.[dev]')"
    root = Path(tempfile.mkdtemp(prefix="tracetag-mlflow-"))
    port = _free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - the server writes it until stop()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend or f"sqlite:///{root}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return Server(root, port, proc), ""
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
