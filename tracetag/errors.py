"""One error family for the whole library.

The CLI turns each class into a single line on stderr and the class's ``exit_code``; the library
never prints. Exit codes: 1 a lookup or operation failed, 2 the input was wrong, 3 the store
itself is unusable (not a store, damaged, locked).
"""

from __future__ import annotations

__all__ = [
    "ExperimentNotFound",
    "FilterSyntaxError",
    "ImportFormatError",
    "InvalidInput",
    "InvalidQuery",
    "InvalidTag",
    "NotAStore",
    "StoreCorrupted",
    "StoreError",
    "StoreLocked",
    "StoreMissing",
    "TagNotFound",
    "TraceNotFound",
    "TracetagError",
]


class TracetagError(Exception):
    """Base class of every error tracetag raises on purpose."""

    exit_code = 1


class TraceNotFound(TracetagError):
    def __init__(self, trace_id: str):
        super().__init__(f"trace not found: {trace_id}")
        self.trace_id = trace_id


class StoreMissing(TracetagError):
    """A command that reads was pointed at a store that does not exist."""

    def __init__(self, path: object):
        super().__init__(
            f"{path}: no tracetag store here (check --store or $TRACETAG_STORE; "
            "'tracetag import FILE' or 'tracetag demo' creates one)"
        )
        self.path = path


class TagNotFound(TracetagError):
    """Deleting a tag the trace does not have (as MLflow, which raises too)."""

    def __init__(self, trace_id: str, key: str):
        super().__init__(f"trace {trace_id} has no tag {key!r}")
        self.trace_id = trace_id
        self.key = key


class ExperimentNotFound(TracetagError):
    def __init__(self, experiment: str):
        super().__init__(f"experiment not found: {experiment}")
        self.experiment = experiment


class InvalidInput(TracetagError):
    """The caller's input was wrong; nothing was written."""

    exit_code = 2


class InvalidTag(InvalidInput):
    pass


class InvalidQuery(InvalidInput):
    """A search that cannot run for another reason than the filter's syntax: a page token
    from another search, ``max_results < 1``, an unknown statistic or grouping."""


class ImportFormatError(InvalidInput):
    pass


class FilterSyntaxError(InvalidInput):
    """A filter, order-by key or page token that cannot be used.

    ``column`` is a 0-based offset into ``text`` (``len(text)`` for "unexpected end"), so the CLI
    can put a caret under it.
    """

    def __init__(self, message: str, text: str = "", column: int = 0):
        super().__init__(message)
        self.message = message
        self.text = text
        self.column = max(0, min(column, len(text)))

    def __str__(self) -> str:
        if not self.text:
            return self.message
        return f"{self.message} (at column {self.column + 1})"

    def caret(self) -> str:
        """The filter and a caret under the offending column, for terminals."""
        flat = self.text.replace("\n", " ").replace("\t", " ")
        return f"  {flat}\n  {' ' * self.column}^"


class StoreError(TracetagError):
    exit_code = 3


class NotAStore(StoreError):
    pass


class StoreCorrupted(StoreError):
    pass


class StoreLocked(StoreError):
    pass
