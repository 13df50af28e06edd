"""Editing a trace's tags in a text editor: the terminal counterpart of MLflow's tag editor.

The file holds one ``key = value`` per line under a comment header. A value with surrounding
spaces, a newline or a leading double quote is written JSON-quoted, so every value round-trips.
Saving applies the difference in one write; an unchanged or emptied file writes nothing; an
invalid file writes nothing and is kept, with the line that is wrong named.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidInput, InvalidTag
from .tags import TagChange, validate_key, validate_value
from .terminal import ask

if TYPE_CHECKING:
    from .api import TracetagClient

__all__ = ["EditResult", "edit_tags", "format_tags", "parse_tags_text"]

HEADER = """\
# Tags of trace {trace_id}{name}
# One "key = value" per line; delete a line to delete that tag; '#' lines are ignored.
# Keys and values with surrounding spaces or control characters are JSON-quoted ("...").
# Save and quit to apply. An unchanged or empty file changes nothing.
"""


@dataclass
class EditResult:
    change: TagChange | None = None
    error: str | None = None
    saved_to: str | None = None


_LINE_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _needs_quotes(text: str) -> bool:
    """Whether ``text`` must be JSON-quoted to survive the file exactly: surrounding spaces,
    a leading quote, and any character an editor or ``splitlines`` treats as a line break or
    control (``\\x0c``, ``\\x85``, U+2028...)."""
    return text != text.strip() or text.startswith('"') or bool(_LINE_BREAKS.search(text))


def _quoted(text: str) -> str:
    if not _needs_quotes(text):
        return text
    # json.dumps leaves U+2028, U+2029 and C1 controls raw; editors may break lines there.
    return _LINE_BREAKS.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False)
    )


def format_tags(trace_id: str, tags: dict[str, str], name: str | None = None) -> str:
    shown_name = f" ({_quoted(name)})" if name else ""
    lines = [HEADER.format(trace_id=trace_id, name=shown_name)]
    for k in sorted(tags):
        lines.append(f"{_quoted(k)} = {_quoted(tags[k])}\n")
    return "".join(lines)


def _unquote(text: str, n: int, what: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInput(f"line {n}: unreadable quoted {what} {text}") from None
    if not isinstance(value, str):
        raise InvalidInput(f"line {n}: quoted {what} must be a string")
    return value


def parse_tags_text(text: str) -> dict[str, str] | None:
    """Tags from edited text; None when the file has no tag lines (an abort).

    Lines end at ``\\n`` only (a CR before it is dropped): every other character, whatever
    ``str.splitlines`` thinks of it, belongs to a value.
    """
    tags: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith('"'):
            try:
                _key, end = json.JSONDecoder().raw_decode(stripped)
            except json.JSONDecodeError:
                raise InvalidInput(f"line {n}: unreadable quoted key {stripped}") from None
            key_text, rest = stripped[:end], stripped[end:].lstrip()
            if not rest.startswith("="):
                raise InvalidInput(f"line {n}: expected 'key = value', got {stripped!r}")
            key, value = _unquote(key_text, n, "key"), rest[1:].strip(" ")
        else:
            key, sep, value = stripped.partition("=")
            if not sep:
                raise InvalidInput(f"line {n}: expected 'key = value', got {stripped!r}")
            key, value = key.strip(), value.strip(" ")
        if value.startswith('"'):
            value = _unquote(value, n, "value")
        try:
            validate_key(key)
            validate_value(key, value)
        except InvalidTag as e:
            raise InvalidInput(f"line {n}: {e}") from None
        if key in tags:
            raise InvalidInput(f"line {n}: duplicate key {key!r} (first on line {first_line[key]})")
        first_line[key] = n
        tags[key] = value
    return tags or None


def _run_editor(path: str) -> None:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        code = subprocess.call([*shlex.split(editor), path])
    except OSError as e:
        raise InvalidInput(f"cannot start editor {editor!r}: {e.strerror}") from None
    if code != 0:
        raise InvalidInput(f"editor {editor!r} exited with status {code}; nothing written")


def edit_tags(client: TracetagClient, trace_id: str) -> EditResult:
    with client.snapshot() as snap:
        doc = snap.require(trace_id)
    base = dict(doc["tags"])
    original = format_tags(trace_id, base, doc.get("name"))
    fd, path = tempfile.mkstemp(prefix=f"tracetag-{trace_id}-", suffix=".tags")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(original)
    keep = False
    try:
        while True:
            _run_editor(path)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if text == original:
                return EditResult()
            try:
                new = parse_tags_text(text)
            except InvalidInput as e:
                if ask("Reopen the editor to fix it?", default=True):
                    continue
                keep = True
                return EditResult(error=str(e), saved_to=path)
            if new is None:
                return EditResult()
            return EditResult(change=client.replace_tags(trace_id, new, base))
    finally:
        if not keep:
            os.unlink(path)
