"""The traces whose span records hold some bytes, found by searching the span file.

A filter that requires text of a trace's spans (``trace.text LIKE '%question 29%'``, or a span
name ``= 'retrieve'``) can only match traces whose span record holds those bytes. Searching the
span file for them (``mmap.find``, at memory speed) and reading just those traces costs a
fraction of judging every trace; the filter still judges each one, so a record of an older
version of a trace, or one whose trace was deleted, is only a wasted lookup. When too many
records hold the bytes, the scan is the cheaper plan.
"""

from __future__ import annotations

import mmap
import re
from typing import Any

from .files import id_from_key

# A record: 8 hex digits of CRC-32, a space, then {"trace_id":"...", ...} (schema.encode_spans).
_RECORD_ID = re.compile(rb'[0-9a-f]{8} \{"trace_id":"((?:[^"\\\n]|\\.)*)"')


def span_file_plan(fh: Any, needles: list[bytes], documents: int) -> tuple[bytes, list[str]] | None:
    """The plan for a filter whose span records must hold ``needles``
    (``filters.required_span_bytes``, not empty), on a store of ``documents`` traces whose
    span file is ``fh``: (the bytes searched for, the ids of the traces whose records hold
    them), or None when too many records hold them (then scan)."""
    needle = max(needles, key=len)  # (the longest is the likeliest to be rare)
    holders = traces_holding(fh, needle, holders_limit(documents))
    return None if holders is None else (needle, holders)


def holders_limit(documents: int) -> int:
    """How many traces the plan may look up before the scan is cheaper: a tenth of the
    ``documents`` (a lookup by id costs some ten times a scanned line)."""
    return max(16, documents // 10)


def traces_holding(fh: Any, needle: bytes, limit: int) -> list[str] | None:
    """Ids of the traces with a record in the span file ``fh`` holding ``needle``, in file
    order, each once; None when more than ``limit`` do."""
    found: dict[str, None] = {}
    try:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file
        return []
    with mm:
        size = len(mm)
        pos = mm.find(needle)
        while pos >= 0:
            start = mm.rfind(b"\n", 0, pos) + 1
            end = mm.find(b"\n", pos)
            m = _RECORD_ID.match(mm, start)
            if m is not None:
                found[id_from_key(m.group(1))] = None
                # (Common bytes give up early: at the rate so far, the file holds too many.)
                if len(found) > limit or (len(found) > 256 and len(found) * size > 2 * limit * pos):
                    return None
            if end < 0:
                break
            pos = mm.find(needle, end)
    return list(found)
