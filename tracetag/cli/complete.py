"""Shell completion: the scripts in ``completions/`` and the dynamic sources behind them.

Sources must answer fast and never print: trace ids come from a regular-expression pass over
the base file (no JSON parsing), tag keys from the most recent traces only.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from ..filters.fields import ATTRIBUTES
from ..store import Store

__all__ = ["experiment_ids", "fields", "script", "tag_keys", "trace_ids"]

MAX_ITEMS = 200
RECENT = 5000


def script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    text = get_completion_script(
        prog_name="tracetag", complete_var="_TRACETAG_COMPLETE", shell=shell
    )
    return text.rstrip("\n") + "\n"


def _store(ctx: Any) -> Any:
    from ..backend import backend_kind, open_backend

    location = ctx.find_root().params.get("store")
    if backend_kind(location) == "local":
        return Store(location)  # not the process's cached one: completion runs once and exits
    return open_backend(location)


def trace_ids(ctx: Any, incomplete: str) -> list[str]:
    store = _store(ctx)
    with store.snapshot() as snap:
        if not isinstance(store, Store):  # a database answers with its index
            out, gone = snap.ids_with_prefix(incomplete, MAX_ITEMS), set()
        else:
            out = [t for t in snap.overlay.puts if t.startswith(incomplete)]
            out += snap.base.ids_with_prefix(incomplete, MAX_ITEMS)
            gone = snap.overlay.deleted
    already = set(ctx.params.get("args") or [])
    return [t for t in dict.fromkeys(out) if t not in already and t not in gone][:MAX_ITEMS]


def _recent_keys(store: Any, ids: list[str]) -> list[str]:
    keys: dict[str, None] = {}
    with store.snapshot() as snap:
        if ids:
            for doc in snap.get_many(ids).values():
                keys.update(dict.fromkeys(doc["tags"]))
            return sorted(keys)
        if not isinstance(store, Store):
            return sorted(snap.recent_tag_keys(RECENT))
        tail: deque[bytes] = deque(maxlen=RECENT)
        for _tid, raw in snap.base.iter_raw():
            tail.append(raw)
        for raw in tail:
            keys.update(dict.fromkeys(orjson.loads(raw)["tags"]))
        for doc in snap.overlay.puts.values():
            keys.update(dict.fromkeys(doc["tags"]))
    return sorted(keys)


def tag_keys(ctx: Any, incomplete: str) -> list[str]:
    if incomplete.startswith("tr-") and ctx.command.name == "delete":
        return trace_ids(ctx, incomplete)  # `tag delete` takes ids first, then keys
    args = [a for a in (ctx.params.get("args") or []) if a.startswith("tr-")]
    keys = _recent_keys(_store(ctx), args)
    return [k for k in keys if k.startswith(incomplete) and k not in (ctx.params.get("args") or [])]


def fields(ctx: Any, incomplete: str) -> list[str]:
    names = sorted(set(ATTRIBUTES.values()))
    names += [f"tags.{k}" for k in _recent_keys(_store(ctx), [])]
    return [n for n in names if n.startswith(incomplete)]


def experiment_ids(ctx: Any, incomplete: str) -> list[str]:
    with _store(ctx).snapshot() as snap:
        return [
            e["experiment_id"]
            for e in snap.experiments()
            if e["experiment_id"].startswith(incomplete)
        ]
