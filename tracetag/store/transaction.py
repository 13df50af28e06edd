"""One atomic write to the local store.

``with store.transaction() as tx:`` takes the writers' lock, gives a current snapshot to read
(``tx.snapshot``), collects the records the caller appends, and on leaving the block writes them
as one journal line (one ``batch`` record when there are several): all of it lands, or none.
Span payloads go to the span file first (:meth:`Transaction.append_spans`), so no record ever
points at spans that are not on disk. Raising inside the block writes no record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .local import Store
    from .snapshot import Snapshot

__all__ = ["Transaction"]


class Transaction:
    def __init__(self, store: Store, snapshot: Snapshot):
        self.store = store
        self.snapshot = snapshot
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        """Queue a journal record (written when the block ends)."""
        self.records.append(record)

    def append_spans(self, items: list[tuple[str, list[dict[str, Any]]]]) -> list[list[int]]:
        """Write span payloads now; returns where each landed (``[offset, length]``)."""
        return self.store.append_spans(self.snapshot, items)

    def append_span_lines(self, lines: list[bytes]) -> list[list[int]]:
        """Write span records already encoded (``files.record_line``)."""
        return self.store.append_span_lines(self.snapshot, lines)

    def changed_since(self, version: tuple[int, int | None, int] | None) -> set[str] | None:
        """Trace ids changed after a snapshot's ``version`` (None: cannot tell, plan again)."""
        return self.store.changed_since(version)

    def record(self) -> dict[str, Any] | None:
        """The one journal record this transaction writes, if any."""
        if not self.records:
            return None
        if len(self.records) == 1:
            return self.records[0]
        return {"op": "batch", "ops": self.records}
