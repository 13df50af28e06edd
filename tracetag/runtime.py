"""Everything tracetag keeps per process, in one place, with one :func:`reset`.

The fluent functions and the tracing decorators act on "the" store and "the" experiment, as
MLflow's do; this module holds those choices, the ``Store`` objects opened so far (one per file,
so threads share its caches and lock), the traces being recorded right now, and which tracing
problems were already warned about. Nothing else in the package keeps module-level state.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend

__all__ = [
    "active_experiment_id",
    "choose_experiment",
    "default_store",
    "experiment_for_new_traces",
    "last_trace_id",
    "live_lock",
    "live_traces",
    "reset",
    "set_default_store",
    "set_last_trace_id",
    "store_for",
    "using_store",
    "warn_once",
]


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live_lock = threading.Lock()
        self.stores: dict[Path | str, Any] = {}
        self.default_path: str | None = None
        self.experiment_id = "0"
        self.experiment_chosen = False
        self.last_trace_id: str | None = None
        self.live: dict[str, Any] = {}  # trace id -> the trace being recorded
        self.warned: set[str] = set()
        self.default_cache: tuple[tuple[str | None, ...], Any] | None = None


_STATE = _State()


def _after_fork_in_child() -> None:
    # A child must not share its parent's Store objects: their locks (a flock on an open file,
    # a threading lock another thread may have held at the fork) belong to the parent.
    _STATE.stores = {}
    _STATE.default_cache = None
    _STATE.lock = threading.Lock()
    _STATE.live_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reset() -> None:
    """Forget every choice and cache: the state of a fresh process (tests use this)."""
    global _STATE
    _STATE = _State()
    from . import recorder

    recorder.set_durability(None)


# -- stores ------------------------------------------------------------------------------------


def chosen_store(path: str | os.PathLike[str] | None) -> str | os.PathLike[str] | None:
    """The store a location means: itself, else the default chosen in this process, else
    ``$TRACETAG_STORE``, else ``$MLFLOW_TRACKING_URI`` when it names an HTTP server, as MLflow's
    client would use it (None: the per-user store)."""
    from .locations import is_mlflow_url

    chosen = path or _STATE.default_path or os.environ.get("TRACETAG_STORE")
    if chosen:
        return chosen
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    return tracking if is_mlflow_url(tracking) else None


def store_for(path: str | os.PathLike[str] | None) -> Backend:
    """One store object per file or database per process (``None``: the default store)."""
    from .locations import is_mlflow_url, is_postgres_url

    chosen = chosen_store(path)
    if is_postgres_url(chosen) or is_mlflow_url(chosen):
        url = str(chosen)
        with _STATE.lock:
            store = _STATE.stores.get(url)
            if store is None:
                if is_postgres_url(url):
                    from .postgres import PgStore

                    store = _STATE.stores[url] = PgStore(url)
                else:
                    from .mlflow_server import MlflowStore

                    store = _STATE.stores[url] = MlflowStore(url)
        return store
    from .store import Store, resolve_store_path

    resolved = resolve_store_path(chosen).absolute()
    with _STATE.lock:
        store = _STATE.stores.get(resolved)
        if store is None:
            store = _STATE.stores[resolved] = Store(resolved)
    return store


def default_store() -> Backend:
    """The default store, resolved once per choice: recording asks for it on every trace, and
    resolving a path (symbolic links, file type) costs system calls."""
    # Everything chosen_store reads: a changed $MLFLOW_TRACKING_URI is a new choice too.
    # (A store chosen in the process outranks both variables: no need to read them.)
    env = os.environ
    key = (
        (_STATE.default_path,)
        if _STATE.default_path
        else (None, env.get("TRACETAG_STORE"), env.get("MLFLOW_TRACKING_URI"))
    )
    cached = _STATE.default_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    store = store_for(None)
    _STATE.default_cache = (key, store)
    return store


def set_default_store(path: str | os.PathLike[str] | None) -> None:
    """Use this store for the fluent functions and for recording; None: back to the default
    (``$TRACETAG_STORE``, else the per-user store)."""
    _STATE.default_path = None if path is None else os.fspath(path)


@contextlib.contextmanager
def using_store(path: str | os.PathLike[str]) -> Iterator[None]:
    """The default store is ``path`` inside the block (and the experiment choice is kept)."""
    previous = (_STATE.default_path, _STATE.experiment_id, _STATE.experiment_chosen)
    set_default_store(path)
    try:
        yield
    finally:
        _STATE.default_path, _STATE.experiment_id, _STATE.experiment_chosen = previous


# -- experiments and traces ------------------------------------------------------------------


def choose_experiment(experiment_id: str) -> None:
    _STATE.experiment_id = experiment_id
    _STATE.experiment_chosen = True


def experiment_for_new_traces() -> str:
    return _STATE.experiment_id


def active_experiment_id() -> str | None:
    """The experiment ``set_experiment`` chose in this process, if any."""
    return _STATE.experiment_id if _STATE.experiment_chosen else None


def last_trace_id() -> str | None:
    return _STATE.last_trace_id


def set_last_trace_id(trace_id: str) -> None:
    _STATE.last_trace_id = trace_id


def live_traces() -> dict[str, Any]:
    """The traces being recorded in this process, by id (callers lock it with ``live_lock``)."""
    return _STATE.live


def live_lock() -> threading.Lock:
    return _STATE.live_lock


def warn_once(kind: str) -> bool:
    """True the first time ``kind`` is seen in this process."""
    with _STATE.lock:
        if kind in _STATE.warned:
            return False
        _STATE.warned.add(kind)
        return True
