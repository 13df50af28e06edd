"""Tag rules and tag change plans.

Keys follow MLflow's rule (1 to 250 characters of letters, digits, ``_ - . : /`` and space);
values are strings of at most 8,000 characters. MLflow silently truncates longer values; we
refuse them, since a truncated session id or prompt hash is worse than an error.
A plan says, per trace, what a change would add, change and delete, so the same object drives
``--dry-run``, the summary and the single journal record that applies it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidTag

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "TagChange",
    "TagReport",
    "key_problem",
    "parse_assignment",
    "plan_change",
    "tag_record",
    "validate_deletable_key",
    "validate_key",
    "validate_tags",
    "validate_value",
]

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 8000
_KEY_RE = re.compile(r"[\w\-.:/ ]+")
KEY_RULE = "1 to 250 characters of letters, digits, '_', '-', '.', ':', '/' and space"


def key_problem(key: Any) -> str | None:
    """Why ``key`` is not a valid tag key, or None. The whole key must match (``fullmatch``:
    ``$`` would let a trailing newline through)."""
    if not isinstance(key, str):
        return f"keys are strings ({KEY_RULE})"
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(key):
        return f"use {KEY_RULE}"
    return None


def validate_key(key: Any) -> str:
    problem = key_problem(key)
    if problem:
        shown = repr(key) if len(repr(key)) <= 62 else repr(key)[:57] + "...'"
        raise InvalidTag(f"invalid tag key {shown}: {problem}")
    return str(key)


def validate_deletable_key(key: Any) -> str:
    """Keys to delete: any non-empty string, so that a key an older version (or an import)
    let in can always be removed again."""
    if not isinstance(key, str) or not key or len(key) > 100_000:
        raise InvalidTag(f"invalid tag key {key!r}: give the key to delete")
    return key


def validate_value(key: str, value: Any) -> str:
    """Values become strings as MLflow makes them (``str(value)``); too long is an error."""
    if value is None:
        raise InvalidTag(f"tag {key!r}: value is None; delete the tag instead")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidTag(
            f"tag {key!r}: value has {len(text)} characters, the limit is {MAX_VALUE_LENGTH}"
        )
    return text


def validate_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {validate_key(k): validate_value(k, v) for k, v in tags.items()}


def parse_assignment(text: str) -> tuple[str, str]:
    """``key=value`` split at the first ``=``; the value is taken verbatim (may be empty)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidTag(f"expected key=value, got {text!r}")
    return validate_key(key), validate_value(key, value)


@dataclass
class TagChange:
    """What one change does to one trace."""

    trace_id: str
    added: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # keys asked to delete, not present
    # (key, target) renames not made because the target key holds another value (lint --fix)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_change(self) -> bool:
        return bool(self.added or self.changed or self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "added": self.added,
            "changed": {k: {"old": o, "new": n} for k, (o, n) in self.changed.items()},
            "deleted": self.deleted,
            "missing": self.missing,
        }


def plan_change(
    trace_id: str,
    current: Mapping[str, str],
    sets: Mapping[str, str],
    deletes: Iterable[str] = (),
) -> TagChange:
    change = TagChange(trace_id)
    for k, v in sets.items():
        old = current.get(k)
        if old is None:
            change.added[k] = v
        elif old != v:
            change.changed[k] = (old, v)
    for k in deletes:
        if k in current:
            change.deleted[k] = current[k]
        else:
            change.missing.append(k)
    return change


@dataclass
class TagReport:
    """The outcome of a tag command over one or many traces."""

    changes: list[TagChange] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    written: bool = False
    dry_run: bool = False

    @property
    def changed(self) -> list[TagChange]:
        return [c for c in self.changes if c.is_change]

    @property
    def unchanged(self) -> list[TagChange]:
        return [c for c in self.changes if not c.is_change]

    @property
    def missing_keys(self) -> list[tuple[str, str]]:
        return [(c.trace_id, k) for c in self.changes for k in c.missing]

    @property
    def conflicts(self) -> list[tuple[str, str, str]]:
        return [(c.trace_id, k, t) for c in self.changes for k, t in c.conflicts]

    @property
    def ok(self) -> bool:
        return not self.not_found and not self.missing_keys and not self.conflicts

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
            "not_found": self.not_found,
            "missing_keys": [{"trace_id": t, "key": k} for t, k in self.missing_keys],
            "conflicts": [{"trace_id": t, "key": k, "rename_to": r} for t, k, r in self.conflicts],
            "dry_run": self.dry_run,
            "written": self.written,
            "changes": [c.to_dict() for c in self.changes if c.is_change],
        }


def tag_record(changes: Iterable[TagChange]) -> dict[str, Any] | None:
    """One journal record for a set of per-trace changes, grouping traces with equal changes."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for c in changes:
        if not c.is_change:
            continue
        sets = {**c.added, **{k: n for k, (_o, n) in c.changed.items()}}
        key = (tuple(sorted(sets.items())), tuple(sorted(c.deleted)))
        groups.setdefault(key, []).append(c.trace_id)
    ops = [
        {"op": "tag", "ids": ids, "set": dict(sets), "del": list(dels)}
        for (sets, dels), ids in groups.items()
    ]
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else {"op": "batch", "ops": ops}
