"""The writers' lock between processes."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ..errors import StoreLocked
from .paths import create_file, file_mode

LOCK_TIMEOUT_S = 60.0


class ProcessLock:
    """An exclusive lock between processes on ``path``.

    On POSIX an ``flock`` on a descriptor kept open for the life of the store: a few
    microseconds per acquisition, released by the kernel if the holder dies. Elsewhere,
    ``filelock``. Threads of one process are kept apart by the store's own mutex.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self, timeout: float, store: Path) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            from filelock import FileLock, Timeout

            if self._fallback is None:
                self._fallback = FileLock(str(self.path), thread_local=False)
            try:
                self._fallback.acquire(timeout=timeout)
            except Timeout:
                raise locked_error(store, timeout) from None
            return
        if self._fd is None:
            self._fd = create_file(self.path, file_mode(store), os.O_RDWR)
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise locked_error(store, timeout) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.01)

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def locked_error(store: Path, timeout: float) -> StoreLocked:
    return StoreLocked(f"{store}: another process has held the write lock for {timeout:.0f} s")
