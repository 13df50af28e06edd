"""Writing recorded traces: in the caller's thread, or by a background writer that never drops.

The durability level (``TRACETAG_DURABILITY``, or :func:`set_durability`) says what a traced
call waits for when it returns:

``batched`` (the default)
    Nothing: the finished trace is handed to a background writer, which writes and fsyncs
    everything queued in one store write, continuously. A trace is on disk within about the
    time of one write after its call returned (well under 100 ms here), so it survives a
    ``kill -9`` of the process that came later than that, and a power cut after that. The queue
    is bounded (``MAX_PENDING``): a full queue makes the caller wait, nothing is dropped.
    Everything queued is written at normal interpreter exit, at :func:`flush`, and on SIGTERM;
    a forked child (gunicorn, multiprocessing) starts a writer of its own.
``process``
    The trace is written to the operating system before the call returns (no fsync): it
    survives ``kill -9`` of the process, not a power cut.
``full``
    The trace is written and fsynced before the call returns (several threads share one write).

Reads in the same process (``get_trace``, ``search_traces``, tag writes) first wait for the
traces this process has queued, so they always see them.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from .errors import InvalidInput, StoreLocked

__all__ = ["LEVELS", "MAX_PENDING", "durability", "flush", "pending", "set_durability", "submit"]

log = logging.getLogger("tracetag")
LEVELS = ("batched", "process", "full")
MAX_PENDING = 10_000  # traces queued at most; then callers wait for the writer
_RETRIES = 20  # a failing write (a full disk, a lock held by another process) is retried
_level: str | None = None


def durability() -> str:
    level = _level or os.environ.get("TRACETAG_DURABILITY") or "batched"
    if level not in LEVELS:
        raise InvalidInput(f"durability must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def set_durability(level: str | None) -> None:
    """Choose the level for this process (None: ``$TRACETAG_DURABILITY``, else batched)."""
    global _level
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"durability must be one of {', '.join(LEVELS)}, not {level!r}")
    _level = level


def put_patiently(store: Any, items: list[tuple[dict, list[dict]]]) -> None:
    """Store finished traces; a lock held long by another process (a big compaction, say) is
    waited out rather than the traces dropped."""
    for attempt in range(10):
        try:
            store.put_traces(items, count_replaced=False)
            return
        except StoreLocked:
            if attempt == 9:
                raise
            log.warning("the store is busy; still waiting to record %d traces", len(items))


class _GroupCommit:
    """Durable writes from many threads with few fsyncs.

    Each finished trace joins a queue; whichever thread next holds the writer mutex writes
    every queued trace in one store write and marks them done. A caller returns only once its
    own trace is on disk, so nothing is ever dropped, and a burst from N threads costs about
    one write per turn of the mutex instead of one per trace.
    """

    def __init__(self) -> None:
        self._queue: list[tuple[Any, tuple[dict, list[dict]], dict]] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()

    def submit(self, store: Any, item: tuple[dict, list[dict]]) -> None:
        ticket: dict = {"done": False, "error": None}
        with self._queue_lock:
            self._queue.append((store, item, ticket))
        with self._writer:
            if not ticket["done"]:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                by_store: dict[Any, list] = {}
                for st, it, tk in batch:
                    by_store.setdefault(st, []).append((it, tk))
                for st, entries in by_store.items():
                    try:
                        put_patiently(st, [it for it, _tk in entries])
                    except Exception as e:
                        for _it, tk in entries:
                            tk["error"] = e
                    for _it, tk in entries:
                        tk["done"] = True
        if ticket["error"] is not None:
            raise ticket["error"]


_COMMITS = _GroupCommit()


def write_now(store: Any, item: tuple[dict, list[dict]]) -> None:
    """Write a finished trace before returning (the ``full`` and ``process`` levels)."""
    _COMMITS.submit(store, item)


class _Writer:
    """The background writer of one process: a bounded queue and a daemon thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: list[tuple[Any, tuple[dict, list[dict]]]] = []
        self.in_flight = 0
        self.thread: threading.Thread | None = None

    def submit(self, store: Any, item: tuple[dict, list[dict]]) -> None:
        with self.cond:
            if self.thread is None:
                self._start()
            while len(self.queue) >= MAX_PENDING:
                self.cond.wait()  # back-pressure: wait, never drop
            self.queue.append((store, item))
            if len(self.queue) == 1:
                self.cond.notify_all()  # the writer sleeps only on an empty queue

    def _start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="tracetag-writer", daemon=True)
        self.thread.start()
        _hooks_once()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                batch, self.queue = self.queue, []
                self.in_flight = len(batch)
                self.cond.notify_all()  # room again for callers waiting on a full queue
            self._write(batch)
            with self.cond:
                self.in_flight = 0
                self.cond.notify_all()

    def _write(self, batch: list[tuple[Any, tuple[dict, list[dict]]]]) -> None:
        by_store: dict[Any, list[tuple[dict, list[dict]]]] = defaultdict(list)
        for store, item in batch:
            by_store[store].append(item)
        for store, items in by_store.items():
            for attempt in range(_RETRIES):
                try:
                    put_patiently(store, items)
                    break
                except InvalidInput as e:
                    log.warning("could not store %d traces: %s", len(items), e)
                    break
                except Exception as e:
                    if attempt == _RETRIES - 1:
                        log.error("could not store %d traces after retries: %s", len(items), e)
                    else:
                        time.sleep(min(0.05 * 2**attempt, 2.0))

    def pending(self) -> int:
        with self.cond:
            return len(self.queue) + self.in_flight

    def flush(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.queue or self.in_flight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left)
        return True


_WRITER = _Writer()
_HOOKS = threading.Lock()
_hooked = False
_exiting = False


def submit(store: Any, item: tuple[dict, list[dict]]) -> None:
    """Queue a finished trace for the background writer; once the interpreter is exiting
    (exit hooks, finalizers of abandoned generators) write it here instead, since no writer
    thread would get to it."""
    if _exiting or sys.is_finalizing():
        put_patiently(store, [item])
        return
    _WRITER.submit(store, item)


def _flush_at_exit() -> None:
    global _exiting
    _exiting = True
    flush()


def pending() -> int:
    """Traces this process has queued and not yet written."""
    return _WRITER.pending() if _WRITER.thread is not None else 0


def flush(timeout: float | None = None) -> bool:
    """Wait until every trace queued by this process is written; False on timeout."""
    if _WRITER.thread is None:
        return True
    return _WRITER.flush(timeout)


def _after_fork_in_child() -> None:
    # The parent's queue is the parent's to write; the child starts empty, with its own writer
    # (started on its first trace; the exit hook registered before the fork still applies).
    global _WRITER
    _WRITER = _Writer()


def _on_sigterm(signum: int, frame: Any) -> None:
    flush(timeout=10)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _hooks_once() -> None:
    """At exit and on SIGTERM (when the application has not claimed it), write what is queued."""
    global _hooked
    with _HOOKS:
        if _hooked:
            return
        _hooked = True
        atexit.register(_flush_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):
            pass  # not the main thread: the application's own shutdown must call flush()
