"""What the store accepts: the rules every trace document is checked against before it is written.

The data we store was written by others (prompts, model outputs, files from elsewhere), and one
bad document must never make the store unreadable for every later command. So every write path
(recording, ``log_traces``, import, copy) goes through :func:`check_trace`, and every rule here is
one a reader relies on: ids that can sit in the base file's layout, times a calendar can show,
strings where strings are read, JSON that encodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from .errors import InvalidInput
from .model import STATUSES
from .tags import MAX_KEY_LENGTH, MAX_VALUE_LENGTH, key_problem

__all__ = [
    "MAX_EXPERIMENT_ID",
    "MAX_TIME_MS",
    "check_info",
    "check_trace",
    "deeper_than",
    "encode_spans",
    "next_experiment_id",
    "valid_experiment_id",
    "valid_trace_id",
]

_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_EXP_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_EXPERIMENT_ID = 64
# 9999-12-31T23:59:59.999Z: the last instant a calendar (and every listing) can show.
MAX_TIME_MS = 253_402_300_799_999
MAX_PREVIEW = 1_000_000
MAX_JSON_DEPTH = 200  # orjson encodes at most 254 levels; leave room for the envelope


def valid_trace_id(trace_id: Any) -> bool:
    """1 to 128 letters, digits, ``_ . : -`` (the whole string: no trailing newline)."""
    return isinstance(trace_id, str) and _ID_RE.fullmatch(trace_id) is not None


def next_experiment_id(existing: Iterable[str]) -> str:
    """The id a new experiment gets: one more than the largest numeric id, as MLflow numbers
    them."""
    return str(max((int(e) for e in existing if e.isdigit()), default=0) + 1)


def valid_experiment_id(experiment_id: Any) -> bool:
    return isinstance(experiment_id, str) and _EXP_RE.fullmatch(experiment_id) is not None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Every tag key of a document at once: keys joined by a newline (which no key may contain).
_KEY = rf"[\w\-.:/ ]{{1,{MAX_KEY_LENGTH}}}"
_TAG_KEYS_RE = re.compile(rf"{_KEY}(?:\n{_KEY})*")


def _all_fine(values: dict[Any, Any], key_rule: bool) -> bool:
    """The common case in one pass of builtins (documents are checked by the hundred
    thousand on import): every key and value a string of allowed length and characters."""
    try:
        keys = "\n".join(values)
        if values and set(map(type, values.values())) != {str}:
            return False
        if max(map(len, values.values())) > MAX_VALUE_LENGTH:
            return False
    except (TypeError, ValueError):  # a key that is not a string; no values at all
        return not values
    if key_rule:  # as many newlines as joints: no key has one of its own
        return keys.count("\n") == len(values) - 1 and _TAG_KEYS_RE.fullmatch(keys) is not None
    return all(0 < len(k) <= MAX_KEY_LENGTH for k in values)


def _check_strings(what: str, values: Any, *, key_rule: bool) -> None:
    if not isinstance(values, dict):
        raise InvalidInput(f"{what} must be an object of strings, not {type(values).__name__}")
    if _all_fine(values, key_rule):
        return
    for k, v in values.items():
        if key_rule:
            problem = key_problem(k)
            if problem:
                raise InvalidInput(f"{what} key {_shown(k)}: {problem}")
        elif not isinstance(k, str) or not k or len(k) > MAX_KEY_LENGTH:
            raise InvalidInput(f"{what} key {_shown(k)}: 1 to {MAX_KEY_LENGTH} characters")
        if not isinstance(v, str):
            raise InvalidInput(f"{what} {_shown(k)}: value must be a string, not {_shown(v)}")
        if len(v) > MAX_VALUE_LENGTH:
            raise InvalidInput(
                f"{what} {_shown(k)}: value has {len(v)} characters, the limit is "
                f"{MAX_VALUE_LENGTH}"
            )


def _check_time(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number of milliseconds, not {_shown(value)}")
    if not 0 <= value <= MAX_TIME_MS:
        raise InvalidInput(f"{name} {value} is out of range (0 to {MAX_TIME_MS})")


def check_info(doc: dict[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming the first field of an info document that is wrong."""
    tid = doc.get("trace_id")
    if not valid_trace_id(tid):
        raise InvalidInput(
            f"invalid trace id {_shown(tid)}: use 1 to 128 letters, digits, '_', '.', ':' or '-'"
        )
    exp = doc.get("experiment_id")
    if not valid_experiment_id(exp):
        raise InvalidInput(
            f"invalid experiment id {_shown(exp)}: use 1 to {MAX_EXPERIMENT_ID} letters, "
            "digits, '_', '.', ':' or '-'"
        )
    _check_time("timestamp_ms", doc.get("timestamp_ms"), optional=False)
    _check_time("execution_time_ms", doc.get("execution_time_ms"), optional=True)
    if doc.get("status") not in STATUSES:
        raise InvalidInput(
            f"status {_shown(doc.get('status'))} is not one of {', '.join(STATUSES)}"
        )
    for name in ("name", "request_preview", "response_preview", "client_request_id"):
        v = doc.get(name)
        if v is not None and not isinstance(v, str):
            raise InvalidInput(f"{name} must be a string, not {_shown(v)}")
        if isinstance(v, str) and len(v) > MAX_PREVIEW:
            raise InvalidInput(f"{name} has {len(v)} characters, the limit is {MAX_PREVIEW}")
    _check_strings("tag", doc.get("tags"), key_rule=True)
    _check_strings("metadata", doc.get("metadata"), key_rule=False)


def deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests deeper than ``limit`` (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return True
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return False


def check_trace(doc: dict[str, Any], spans: list[dict[str, Any]], encode: bool = True) -> None:
    """An info document and its spans, as the store will write them. ``encode=False`` leaves
    the spans to :func:`encode_spans` (the store encodes them once, and that is the check)."""
    check_info(doc)
    if encode:
        encode_spans(doc["trace_id"], spans)


def encode_spans(trace_id: str, spans: list[dict[str, Any]], envelope: bool = True) -> bytes:
    """The spans as the JSON the span file holds (``envelope=False``: the bare list, as a
    database column holds it), or :class:`InvalidInput` saying why not."""
    # Bare, orjson's own limit (254 levels) is the check; wrapped, the envelope needs room.
    try:
        data = orjson.dumps({"trace_id": trace_id, "spans": spans} if envelope else spans)
    except (orjson.JSONEncodeError, TypeError) as e:
        if envelope and deeper_than(spans, MAX_JSON_DEPTH):
            too_deep = f"spans of {trace_id} nest deeper than {MAX_JSON_DEPTH} levels"
            raise InvalidInput(too_deep) from None
        raise InvalidInput(f"spans of {trace_id} do not encode as JSON ({e})") from None
    # Nesting N levels takes N opening brackets: with fewer in the whole text (the usual
    # trace), the walk through every value is not needed.
    if (
        envelope
        and data.count(b"{") + data.count(b"[") > MAX_JSON_DEPTH
        and deeper_than(spans, MAX_JSON_DEPTH)
    ):
        raise InvalidInput(f"spans of {trace_id} nest deeper than {MAX_JSON_DEPTH} levels")
    return data
