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
from collections import defaultdict, deque
from typing import Any

from .errors import InvalidInput, StoreLocked
from .schema import check_trace

__all__ = ["LEVELS", "MAX_PENDING", "durability", "flush", "pending", "set_durability", "submit"]

log = logging.getLogger("tracetag")
LEVELS = ("batched", "process", "full")
MAX_PENDING = 10_000  # traces queued at most; then callers wait for the writer
_RETRIES = 20  # a failing write (a full disk, a lock held by another process) is retried
_level: str | None = None
_from_environment: str | None = None  # read once: every traced call asks


def durability() -> str:
    global _from_environment
    if _level is not None:
        return _level
    if _from_environment is None:
        level = os.environ.get("TRACETAG_DURABILITY") or "batched"
        if level not in LEVELS:
            raise InvalidInput(f"durability must be one of {', '.join(LEVELS)}, not {level!r}")
        _from_environment = level
    return _from_environment


def set_durability(level: str | None) -> None:
    """Choose the level for this process (None: ``$TRACETAG_DURABILITY``, else batched)."""
    global _level, _from_environment
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"durability must be one of {', '.join(LEVELS)}, not {level!r}")
    _level = level
    _from_environment = None


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


def put_each_valid(store: Any, items: list[tuple[dict, list[dict]]]) -> None:
    """Store finished traces; one the store refuses (an experiment id it does not allow, say)
    is logged and left out, and the rest are written: one bad trace never costs the others
    queued with it."""
    try:
        put_patiently(store, items)
        return
    except InvalidInput:
        if len(items) == 1:
            raise
    valid = []
    for item in items:
        try:
            check_trace(*item)
        except InvalidInput as e:
            log.warning("could not store trace %s: %s", item[0].get("trace_id"), e)
        else:
            valid.append(item)
    if valid:
        put_patiently(store, valid)


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
                        put_each_valid(st, [it for it, _tk in entries])
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
    """The background writer of one process: a bounded queue and a daemon thread.

    Callers append to a deque and wake the writer only when it sleeps: no lock on the way in,
    since with eight threads recording a shared lock per trace cost more than the trace. A
    flush queues a marker and waits for the writer to pass it, so everything queued before
    the flush is written when it returns.
    """

    def __init__(self) -> None:
        self.queue: deque[tuple[Any, Any]] = deque()
        self.wake = threading.Event()
        self.room = threading.Condition()  # callers wait here while the queue is full
        self.in_flight = 0
        self.busy = False  # set before the writer takes anything off the queue
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    def submit(self, store: Any, item: tuple[dict, list[dict]]) -> None:
        if self.thread is None:
            self._start()
        if len(self.queue) >= MAX_PENDING:
            self._wait_for_room()
        self.queue.append((store, item))
        if not self.wake.is_set():
            self.wake.set()

    def _wait_for_room(self) -> None:
        # Back-pressure: wait, never drop. The timeout covers a wakeup that came between the
        # length check and the wait.
        with self.room:
            while len(self.queue) >= MAX_PENDING:
                self.wake.set()
                self.room.wait(0.05)

    def _start(self) -> None:
        with self.start_lock:
            if self.thread is not None:
                return
            thread = threading.Thread(target=self._run, name="tracetag-writer", daemon=True)
            thread.start()
            self.thread = thread
        _hooks_once()

    def _run(self) -> None:
        queue = self.queue
        while True:
            self.wake.wait()
            self.wake.clear()  # before draining: an append after the drain sets it again
            self.busy = True
            while queue:
                batch: list[tuple[Any, tuple[dict, list[dict]]]] = []
                markers: list[threading.Event] = []
                while queue and len(batch) < MAX_PENDING:
                    store, item = queue.popleft()
                    if store is None:
                        markers.append(item)
                    else:
                        batch.append((store, item))
                self.in_flight = len(batch)
                with self.room:
                    self.room.notify_all()  # room again for callers waiting on a full queue
                if batch:
                    self._write(batch)
                self.in_flight = 0
                for marker in markers:
                    marker.set()
            self.busy = False

    def _write(self, batch: list[tuple[Any, tuple[dict, list[dict]]]]) -> None:
        by_store: dict[Any, list[tuple[dict, list[dict]]]] = defaultdict(list)
        for store, item in batch:
            by_store[store].append(item)
        for store, items in by_store.items():
            for attempt in range(_RETRIES):
                try:
                    put_each_valid(store, items)
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
        return sum(1 for store, _item in list(self.queue) if store is not None) + self.in_flight

    def flush(self, timeout: float | None = None) -> bool:
        if not self.queue and not self.busy:
            return True  # (queue first: the writer is busy before it empties the queue)
        done = threading.Event()
        self.queue.append((None, done))
        self.wake.set()
        return done.wait(timeout)


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
