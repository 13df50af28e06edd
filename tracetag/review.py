"""What reviewing traces by hand needs beyond search and tag: results read a page at a time,
undo of a tag change, and the history of filters a person typed. The terminal UI
(``tracetag ui``) is one user; none of it depends on a screen.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .planning import Selection, TagPlan
from .tags import TagChange, TagReport

if TYPE_CHECKING:
    from .api import TracetagClient

__all__ = ["FilterHistory", "Pager", "prefetch", "undo"]


@dataclass
class Pager:
    """A search read a page at a time, never all at once: what a results table scrolls
    through. ``rows`` holds what has been read; :meth:`more` reads the next page."""

    client: TracetagClient
    filter_string: str | None = None
    order_by: list[str] | None = None
    experiment_ids: list[str] | None = None
    page_size: int = 200
    first_size: int = 100  # what a screen shows at once, read first: the first rows come sooner
    rows: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    done: bool = False

    def first(self) -> list[dict[str, Any]]:
        """Start over (a new filter or order, or a refresh) and read the first page."""
        self.rows, self.token, self.done = [], None, False
        return self.more(self.first_size)

    def more(self, size: int | None = None) -> list[dict[str, Any]]:
        """The next page (none once every match has been read)."""
        if self.done:
            return []
        page = self.client.search_page(
            self.experiment_ids,
            self.filter_string,
            size or self.page_size,
            self.order_by,
            self.token,
        )
        new = list(page)
        self.rows += new
        self.token = page.token
        self.done = page.token is None
        return new


def prefetch(pager: Pager) -> Future[list[dict[str, Any]]]:
    """``pager.first()`` started in a thread now: a screen that takes a while to start (the
    terminal UI's imports and layout) shows its first rows as soon as both are done."""
    future: Future[list[dict[str, Any]]] = Future()

    def run() -> None:
        try:
            future.set_result(pager.first())
        except BaseException as e:  # handed to whoever waits for the page
            future.set_exception(e)

    threading.Thread(target=run, daemon=True, name="tracetag-first-page").start()
    return future


def undo(client: TracetagClient, report: TagReport) -> TagReport:
    """Take back what ``report`` changed, in one write: keys it added go, keys it changed or
    deleted get their old values back. A key someone changed since is left as it is now."""
    by_id = {c.trace_id: c for c in report.changed}

    def inverse(doc: dict[str, Any]) -> TagChange:
        did = by_id[doc["trace_id"]]
        now = doc.get("tags") or {}
        out = TagChange(doc["trace_id"])
        for k, v in did.added.items():
            if now.get(k) == v:
                out.deleted[k] = v
        for k, (old, new) in did.changed.items():
            if now.get(k) == new:
                out.changed[k] = (new, old)
        for k, old in did.deleted.items():
            if k not in now:
                out.added[k] = old
        return out

    plan = TagPlan(Selection(list(by_id)), inverse)
    return client.apply_changes(plan)


class FilterHistory:
    """The filters a person ran, newest last, in a private file beside tracetag's cache
    (``$XDG_CACHE_HOME/tracetag/filter-history``); a file that cannot be read or written only
    means no history."""

    def __init__(self, path: Path | None = None, keep: int = 100):
        if path is None:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
            path = Path(base) / "tracetag" / "filter-history"
        self.path = path
        self.keep = keep
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        self.items: list[str] = [line for line in text.split("\n") if line.strip()]

    def add(self, text: str) -> None:
        text = " ".join(text.split())  # one line per filter
        if not text:
            return
        kept = [x for x in self.items if x != text][-(self.keep - 1) :]
        self.items = [*kept, text]
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(self.items) + "\n")
        except OSError:
            pass

    def recent(self, n: int = 10) -> Sequence[str]:
        return self.items[-n:][::-1]
