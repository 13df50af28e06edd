"""LIKE and RLIKE patterns, matched in time linear in the text, whatever the pattern.

Filters come from people and scripts, values from whatever an application recorded. Python's
``re`` backtracks: ``(a+)+$`` on 31 characters takes a minute, and the ``.*`` runs of a LIKE
translated to ``re`` go quadratic or worse. Both kinds of pattern are therefore compiled for RE2
(``google-re2``), an automaton engine with a linear-time guarantee, so a search, and a write that
plans by filter, always finishes.

The RLIKE dialect is RE2's: Perl-like syntax without backreferences or look-around, ``\\d`` and
``\\w`` on ASCII, ``(?i)`` for case-insensitive, search semantics (the pattern may match anywhere;
anchor it with ``^`` and ``$``). Repetition counts are limited to 1000.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import re2

__all__ = ["PatternError", "compile_like", "compile_rlike", "like_regex"]

Matcher = Callable[[str], bool]
# Enough for any sensible pattern; a pattern whose automaton needs more is refused, not run.
_MAX_MEM = 64 << 20


class PatternError(ValueError):
    """A regular expression RE2 refuses, with RE2's reason."""


def _options(ignore_case: bool = False, dot_nl: bool = False) -> Any:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print parse errors on stderr itself
    opts.max_mem = _MAX_MEM
    opts.case_sensitive = not ignore_case
    opts.dot_nl = dot_nl
    return opts


def like_regex(pattern: str) -> str:
    """SQL LIKE as an RE2 expression: ``%`` any run, ``_`` one character, ``\\`` escapes."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re2.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re2.escape(c))
        i += 1
    return "".join(out)


def _compile(expr: str, opts: Any) -> Any:
    try:
        return re2.compile(expr, opts)
    except re2.error as e:
        reason = e.args[0] if e.args else str(e)
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


@lru_cache(maxsize=256)
def compile_like(pattern: str, ignore_case: bool) -> Matcher:
    """A predicate: does the whole value match the LIKE (or ILIKE) pattern?"""
    rx = _compile(like_regex(pattern), _options(ignore_case, dot_nl=True))
    full = rx.fullmatch
    return lambda text: full(text) is not None


@lru_cache(maxsize=256)
def compile_rlike(pattern: str) -> Matcher:
    """A predicate: does the regular expression match somewhere in the value?"""
    rx = _compile(pattern, _options())
    search = rx.search
    return lambda text: search(text) is not None
