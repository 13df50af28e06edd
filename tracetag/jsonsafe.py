"""Values from the traced application made safe to store: JSON as it is, or a repr.

Inputs, outputs and attributes come from code we do not control; converting them never raises
and never lets one odd value make the store refuse a whole trace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import orjson

from .schema import deeper_than

__all__ = ["MAX_VALUE_DEPTH", "safe_repr", "to_jsonable"]


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    for method in ("model_dump", "dict", "to_dict"):
        fn = getattr(obj, method, None)
        if callable(fn):
            with contextlib.suppress(Exception):
                return fn()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return repr(obj)


# Inputs and outputs nest at most this deep; deeper values are kept as their repr, so one odd
# payload can never make the store refuse the whole trace.
MAX_VALUE_DEPTH = 64


def safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ of the user's must not break the call
        return f"<unrepresentable {type(value).__name__}>"


def to_jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value``: dataclasses and models as dicts, anything else as repr.

    Never raises: whatever the application passes, the traced call goes on.
    """
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        # JSON has no NaN or infinity, and orjson writes null for them; keep the value visible
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return value if not isinstance(value, int) or abs(value) < 2**63 else str(value)
    if type(value) is dict and _flat(value):
        return dict(value)  # the usual inputs: a few named arguments of plain values
    try:
        data = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
        out = orjson.loads(data)
    except Exception:
        return safe_repr(value)
    # Nesting N levels takes N brackets: with fewer, no walk through the value is needed.
    if data.count(b"{") + data.count(b"[") <= MAX_VALUE_DEPTH:
        return out
    return safe_repr(value) if deeper_than(out, MAX_VALUE_DEPTH) else out


def _flat(value: dict) -> bool:
    """Whether every key is a string and every value one JSON keeps as it is."""
    for k, v in value.items():
        t = type(v)
        if type(k) is not str:
            return False
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if -(2**63) < v < 2**63:
                continue
            return False
        if t is float and math.isfinite(v):
            continue
        return False
    return True
