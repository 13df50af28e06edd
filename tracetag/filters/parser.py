"""Filter text -> AST, with errors that say what was expected, in words, and where.

The grammar is ``grammar/filter.lark`` (shipped inside the wheel as ``tracetag/grammar``). The
Transformer only builds nodes; :func:`validate` checks fields, operators and literal types in a
separate pass so that every error carries the column of the offending token.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import FilterSyntaxError
from . import ast as A
from .fields import (
    ATTRIBUTES,
    LIKELY,
    NUMERIC_ATTRIBUTES,
    SPAN_FIELDS,
    SPAN_STATUS_VALUES,
    STATUS_VALUES,
    TIME_ATTRIBUTES,
    parse_field,
    parse_iso_ms,
)

__all__ = ["ATTRIBUTES", "grammar_path", "parse_field", "parse_filter", "parse_iso_ms"]

MAX_FILTER_LENGTH = 65_536
MAX_DEPTH = 100
_EXPECTED_WORDS = {
    "STRING": "a quoted string",
    "NUMBER": "a number",
    "DURATION": "a duration such as 5s",
    "NOW": "now()",
    "FIELD": "a field such as tags.environment or status",
    "COMP_OP": "a comparison (=, !=, <, <=, >, >=)",
    "LIKE_OP": "LIKE, ILIKE or RLIKE",
    "_IN": "IN",
    "_IS": "IS",
    "_NULL": "NULL",
    "_NOT": "NOT",
    "_AND": "AND",
    "_OR": "OR",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "SIGN": "+ or -",
}
_TOKEN_WORDS = {
    "FIELD": "field",
    "STRING": "string",
    "NUMBER": "number",
    "DURATION": "duration",
    "COMP_OP": "operator",
    "LIKE_OP": "operator",
}


def grammar_path() -> Path:
    """The grammar inside the installed package, or at the repository root in a checkout."""
    packaged = resources.files("tracetag") / "grammar" / "filter.lark"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "grammar" / "filter.lark"


def _private_folder(folder: str) -> bool:
    """True when ``folder`` is a real directory owned by this user that nobody else can write.

    lark's cache is a pickle, and loading a pickle runs code: one planted by another user in a
    shared or group-writable folder would run as us, and a planted symlink would make lark
    overwrite a file of ours. So the cache is used only in a folder only we control.
    """
    import os
    import stat

    try:
        st = os.lstat(folder)
    except OSError:
        return False
    owner = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == owner
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _cache_file(text: str) -> str | bool:
    """A per-user file for lark's compiled parser (building it costs ~50 ms per process), or
    False (no cache) when there is no folder only this user can write."""
    import hashlib
    import os
    import sys

    import lark

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "tracetag")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not _private_folder(folder):
        return False
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    py = f"{sys.version_info[0]}{sys.version_info[1]}"
    path = os.path.join(folder, f"filter-{digest}-lark{lark.__version__}-py{py}.cache")
    if os.path.islink(path):
        return False
    return path


@lru_cache(maxsize=1)
def _parser() -> Any:
    from lark import Lark

    text = grammar_path().read_text()
    return Lark(text, parser="lalr", maybe_placeholders=True, cache=_cache_file(text))


def _describe_token(tok: Any) -> str:
    if tok.type == "$END":
        return "end of filter"
    word = _TOKEN_WORDS.get(tok.type)
    return f"{word} {str(tok)!r}" if word else repr(str(tok))


def _expected(names: set[str]) -> str:
    words = sorted({_EXPECTED_WORDS.get(n, n) for n in names if not n.startswith("__")})
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(text: str, e: Exception) -> FilterSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(e, UnexpectedToken):
        tok = e.token
        expected = set(e.expected)
        if tok.type == "$END":
            want = _expected(expected)
            msg = "unexpected end of filter" + (f", expected {want}" if want else "")
            return FilterSyntaxError(msg, text, len(text))
        pos = tok.start_pos if tok.start_pos is not None else len(text)
        if tok.type == "FIELD" and {"STRING", "NUMBER"} & expected:
            return FilterSyntaxError(
                f"expected a quoted string, a number or a duration, got {str(tok)!r} "
                f"(quote text values: '{tok}')",
                text,
                pos,
            )
        if tok.type == "RPAR" and "__ANON_0" not in expected and "STRING" in expected:
            return FilterSyntaxError("expected a value before ')'", text, pos)
        if text[:pos].count("(") <= text[:pos].count(")"):
            expected -= {"RPAR", "COMMA"}  # LALR merges states; no group or list is open here
        want = _expected(expected)
        msg = f"unexpected {_describe_token(tok)}" + (f", expected {want}" if want else "")
        return FilterSyntaxError(msg, text, pos)
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream if e.pos_in_stream is not None else len(text)
        ch = text[pos] if pos < len(text) else ""
        if ch in "'\"":
            return FilterSyntaxError(f"unterminated string: no closing {ch}", text, pos)
        if ch == "`":
            return FilterSyntaxError("unterminated quoted key: no closing `", text, pos)
        return FilterSyntaxError(f"unexpected character {ch!r}", text, pos)
    if isinstance(e, UnexpectedEOF):
        return FilterSyntaxError("unexpected end of filter", text, len(text))
    return FilterSyntaxError(str(e), text, 0)


def parse_filter(text: str | None) -> A.Node | None:
    """Parse and validate a filter; ``None`` or blank text means "every trace"."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(
            f"filter too long: {len(text)} characters, the limit is {MAX_FILTER_LENGTH}"
        )
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        tree = _parser().parse(text)
        from .build import BUILD

        node: A.Node = BUILD.transform(tree)
    except UnexpectedInput as e:
        raise _syntax_error(text, e) from None
    except RecursionError:
        raise _too_deep(text) from None
    except LarkError as e:
        if isinstance(getattr(e, "orig_exc", None), RecursionError):
            raise _too_deep(text) from None
        raise FilterSyntaxError(f"cannot parse filter: {e}", text, 0) from None
    if A.depth(node) > MAX_DEPTH:
        raise _too_deep(text)
    validate(node, text)
    return node


def _too_deep(text: str) -> FilterSyntaxError:
    return FilterSyntaxError(
        f"filter nests too deeply (at most {MAX_DEPTH} levels of parentheses and NOT)", text, 0
    )


# ---------------------------------------------------------------------------------------------
# Validation: the semantic rules, each error pointing at a column


def _err(msg: str, text: str, pos: int) -> FilterSyntaxError:
    return FilterSyntaxError(msg, text, pos)


def _check_field(f: A.Field, text: str) -> None:
    if f.kind == "unknown":
        prefix = f.raw.split(".", 1)[0]
        raise _err(
            f"unknown field prefix {prefix!r}; use tags., metadata. or an attribute",
            text,
            f.pos,
        )
    if f.kind in ("tag", "metadata") and f.key == "":
        raise _err(f"empty key after '{f.raw.split('.', 1)[0]}.'", text, f.pos + len(f.raw))
    if f.kind == "attribute" and f.key not in ATTRIBUTES.values():
        raise _err(unknown_attribute(f.key), text, f.pos)
    if f.kind == "span":
        name = f.key.removeprefix("attributes.")
        if f.key not in SPAN_FIELDS and not (f.key.startswith("attributes.") and name):
            raise _err(
                f"unknown span field {f.key!r}; use span.name, span.type, span.status, "
                "span.attributes.KEY or trace.text",
                text,
                f.pos,
            )
    if f.kind == "assessment" and not f.key.partition(".")[2]:
        raise _err(f"empty name after '{f.key}'", text, f.pos + len(f.raw))


# What each kind of span field can be compared with (MLflow's rules, plus NOT LIKE).
_SPAN_OPS = {"=", "!=", "IN", "NOT IN", "LIKE", "ILIKE", "RLIKE"}
_TEXT_OPS = {"LIKE", "ILIKE"}


def _check_span_op(f: A.Field, op: str, text: str, pos: int) -> None:
    allowed = _TEXT_OPS if f.key == "content" else _SPAN_OPS
    if op.removeprefix("NOT ") not in allowed and op not in allowed:
        shown = ", ".join(sorted(allowed))
        what = "trace.text" if f.key == "content" else str(f)
        raise _err(f"{what} takes {shown}, not {op}", text, pos)


def _check_special(node: A.Node, text: str) -> None:
    """Span fields, assessments and prompt take their own comparisons."""
    f: A.Field = node.field  # type: ignore[union-attr]
    if isinstance(node, A.IsNull):
        if f.kind == "span":
            raise _err(f"{f} takes no IS NULL (a span condition holds on some span)", text, f.pos)
        return
    op = node.op if isinstance(node, A.Compare | A.Like) else "IN"
    if isinstance(node, A.InList) and node.negated:
        op = "NOT IN"
    if f.kind == "span":
        _check_span_op(f, op.removeprefix("NOT ") if isinstance(node, A.Like) else op, text, f.pos)
        values = node.values if isinstance(node, A.InList) else [getattr(node, "value", None)]
        for v in values:
            if v is not None and not isinstance(v, A.String):
                raise _err(f"{f} compares with quoted strings", text, v.pos)
            if f.key == "status" and isinstance(v, A.String) and v.value not in SPAN_STATUS_VALUES:
                raise _err(f"span.status is one of {', '.join(SPAN_STATUS_VALUES)}", text, v.pos)
    if f.kind == "prompt":
        v = getattr(node, "value", None)
        if op != "=" or not isinstance(v, A.String) or v.value.count("/") != 1:
            raise _err("prompt takes = 'name/version'", text, f.pos)


def unknown_attribute(name: str) -> str:
    """The message for a name that is no attribute, with the likeliest meaning."""
    likely = LIKELY.get(name.lower())
    if likely:
        hint = f"did you mean {likely}?"
    else:
        hint = f"for a tag write tags.{name}" if re.fullmatch(r"[\w.]+", name) else ""
    valid = ", ".join(sorted(set(ATTRIBUTES.values())))
    return f"unknown attribute {name!r}; {hint + '; ' if hint else ''}attributes are {valid}"


def _finite(v: A.Number | A.Duration) -> bool:
    value = v.value if isinstance(v, A.Number) else v.ms
    if isinstance(value, int):
        return abs(value) < 10**300
    return math.isfinite(value) and abs(value) < 1e300


def _check_value(f: A.Field, op: str, v: A.Value, text: str) -> None:
    name = str(f)
    is_status = f.kind == "attribute" and f.key == "status"
    if is_status and isinstance(v, A.String) and v.value not in STATUS_VALUES:
        raise _err(f"status is one of {', '.join(STATUS_VALUES)}, not {v}", text, v.pos)
    if (isinstance(v, A.Number | A.Duration) and not _finite(v)) or (
        isinstance(v, A.Now) and not abs(v.offset_ms) < 1e300
    ):
        raise _err("number out of range", text, v.pos)
    if f.kind == "attribute" and f.key in NUMERIC_ATTRIBUTES:
        if isinstance(v, A.String):
            if f.key not in TIME_ATTRIBUTES:
                raise _err(f"{name} takes a number or a duration such as 5s", text, v.pos)
            try:
                parse_iso_ms(v.value)
            except ValueError:
                raise _err(
                    f"{v} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z]", text, v.pos
                ) from None
        if isinstance(v, A.Now) and f.key not in TIME_ATTRIBUTES:
            raise _err(f"now() compares with timestamps, not {name}", text, v.pos)
        if isinstance(v, A.Duration) and f.key in TIME_ATTRIBUTES:
            raise _err(
                f"a duration cannot be compared with {name}; did you mean now() - {v}?",
                text,
                v.pos,
            )
        return
    # String-valued fields: tags, metadata and the text attributes.
    if isinstance(v, A.Duration | A.Now):
        raise _err(f"{name} is text; a duration or now() cannot be compared with it", text, v.pos)
    if f.kind == "attribute" and isinstance(v, A.Number):
        raise _err(f"{name} is text; quote the value", text, v.pos)
    if op in ("<", "<=", ">", ">="):
        if f.kind == "attribute":
            raise _err(f"{name} supports =, !=, LIKE, ILIKE, RLIKE and IN, not {op}", text, f.pos)
        if not isinstance(v, A.Number):
            raise _err(
                f"{op} compares {name} as a number; use an unquoted number such as 9",
                text,
                v.pos,
            )


def validate(node: A.Node, text: str) -> None:
    if isinstance(node, A.And | A.Or):
        for item in node.items:
            validate(item, text)
    elif isinstance(node, A.Not):
        validate(node.item, text)
    elif isinstance(node, A.Compare):
        _check_field(node.field, text)
        if node.field.kind in ("span", "prompt"):
            _check_special(node, text)
        elif node.field.kind != "assessment":
            _check_value(node.field, node.op, node.value, text)
    elif isinstance(node, A.Like):
        _check_field(node.field, text)
        if node.field.kind in ("span", "prompt"):
            _check_special(node, text)
        if node.field.kind == "attribute" and node.field.key in NUMERIC_ATTRIBUTES:
            raise _err(
                f"{node.op} needs a text field, {node.field} is a number", text, node.field.pos
            )
        from .patterns import PatternError, compile_like, compile_rlike

        try:
            if node.op == "RLIKE":
                compile_rlike(node.pattern.value)
            else:
                compile_like(node.pattern.value, node.op == "ILIKE")
        except PatternError as e:
            what = "regular expression" if node.op == "RLIKE" else "pattern"
            raise _err(f"invalid {what} {node.pattern}: {e}", text, node.pattern.pos + 1) from None
    elif isinstance(node, A.InList):
        _check_field(node.field, text)
        if not node.values:
            raise _err("IN needs at least one value", text, node.pos + 1)
        kinds = {type(v) for v in node.values}
        if len(kinds) > 1 and not kinds <= {A.Number, A.Duration}:
            raise _err("IN values must all be strings or all numbers", text, node.pos)
        if node.field.kind in ("span", "prompt"):
            _check_special(node, text)
        elif node.field.kind != "assessment":
            for v in node.values:
                _check_value(node.field, "=", v, text)
    elif isinstance(node, A.IsNull):
        _check_field(node.field, text)
        if node.field.kind in ("span", "prompt"):
            _check_special(node, text)
