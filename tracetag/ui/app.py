"""``tracetag ui``: look at traces and tag them by hand, in a terminal (Textual).

The screen is a search box (the whole filter language, checked as you type), the results (read
a page at a time from the store, so a store of millions opens as fast as ``tracetag search``),
and the selected trace: info, tags, metadata, the span tree with durations as bars, and the
highlighted span's inputs, outputs, attributes and events. Tag changes are one atomic write,
previewed as the CLI's ``--dry-run`` diff, and the last one can be undone.

Everything shown comes from other people's data, so it is shown as plain text (never Rich
markup) with control characters escaped.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Input, Static, Tree

from ..api import TracetagClient
from ..errors import FilterSyntaxError, TracetagError
from ..review import FilterHistory, Pager, undo
from .render import (
    COLUMNS,
    ORDER_OF_COLUMN,
    metadata_text,
    plain,
    row_cells,
    span_label,
    span_text,
    trace_text,
)
from .screens import HelpScreen, StatsScreen, TagScreen

__all__ = ["TracetagApp", "shown_order"]

LOAD_AHEAD = 20  # rows from the end of what is loaded at which the next page is read


class FilterInput(Input):
    """The search box; up and down walk through the filters run before."""

    BINDINGS = [
        Binding("up", "history(1)", "older filter", show=False),
        Binding("down", "history(-1)", "newer filter", show=False),
    ]

    def __init__(self, history: FilterHistory, **kw: Any):
        super().__init__(**kw)
        self.history = history
        self._at = -1

    def action_history(self, step: int) -> None:
        items = self.history.recent(len(self.history.items))
        if not items:
            return
        self._at = max(-1, min(len(items) - 1, self._at + step))
        self.value = "" if self._at < 0 else items[self._at]
        self.cursor_position = len(self.value)


class TracetagApp(App[None]):
    TITLE = "tracetag"
    CSS = """
    Screen { layout: vertical; }
    #search { height: 3; }
    #problem { height: auto; max-height: 5; color: $error; padding: 0 1; }
    #problem.ok { display: none; }
    #body { height: 1fr; }
    #results { height: 1fr; }
    #detail { height: 45%; border-top: solid $primary; }
    #body.wide { layout: horizontal; }
    #body.wide #detail { height: 1fr; width: 45%; border-top: none; border-left: solid $primary; }
    #info { height: auto; padding: 0 1; }
    #spans { height: auto; max-height: 50%; }
    #span { height: auto; padding: 0 1; }
    #metadata { height: auto; padding: 0 1; }
    """
    BINDINGS = [
        Binding("slash", "focus_search", "search"),
        Binding("space", "mark", "mark", show=True),
        Binding("shift+down", "mark_move(1)", "mark down", show=False),
        Binding("shift+up", "mark_move(-1)", "mark up", show=False),
        Binding("a", "mark_all", "mark all"),
        Binding("t", "tag", "tag"),
        Binding("u", "undo", "undo"),
        Binding("s", "sort", "sort"),
        Binding("g", "stats", "stats"),
        Binding("r", "refresh", "refresh"),
        Binding("z", "maximize_detail", "zoom", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        client: TracetagClient,
        filter_string: str | None = None,
        experiment_ids: list[str] | None = None,
        order_by: list[str] | None = None,
        tag_columns: list[str] | None = None,
        history: FilterHistory | None = None,
        pager: Pager | None = None,
        first_page: Future[list[dict[str, Any]]] | None = None,
    ):
        super().__init__()
        self.client = client
        self.history = history or FilterHistory()
        self.pager = pager or Pager(client, filter_string or None, order_by, experiment_ids)
        # The first page, read while Textual starts (see prefetch); used by the first search.
        self.first_page = first_page
        # One reader of the pager at a time: a search started while another page is being read
        # must not interleave with it (the pager's rows and page token are shared).
        self._pager_lock = threading.Lock()
        self.tag_columns = list(tag_columns or [])
        self.marked: set[str] = set()
        self.mark_all = False  # every match of the filter, loaded or not
        self.last_report: Any = None  # the last tag change, for undo
        self.generation = 0  # bumps on each new search; stale pages are dropped
        self.start_filter = self.pager.filter_string or ""
        self.shown: str | None = None  # the trace in the detail pane

    # Keys of the results screen, off (and out of the footer) on the screens above it.
    MAIN_ACTIONS = frozenset(
        ("focus_search", "mark", "mark_move", "mark_all", "tag", "undo", "sort", "stats",
         "refresh", "maximize_detail")
    )  # fmt: skip

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.MAIN_ACTIONS and len(self.screen_stack) > 1)

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield FilterInput(
            self.history,
            value=self.start_filter,
            placeholder="filter, e.g. tags.environment = 'production' AND status = 'ERROR'",
            id="search",
        )
        yield Static(Text(""), id="problem", classes="ok")
        with Vertical(id="body"):
            yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="detail"):
                yield Static(Text("select a trace"), id="info")
                yield Tree(Text("spans"), id="spans")
                yield Static(Text(""), id="span")
                yield Static(Text(""), id="metadata")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "tracetag"
        table = self.query_one("#results", DataTable)
        table.add_column("", key="mark", width=1)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        for key in self.tag_columns:
            table.add_column(key, key=f"tags.{key}")
        table.focus()
        self.search()

    def on_resize(self) -> None:
        self.query_one("#body").set_class(self.size.width >= 140, "wide")

    # -- searching -----------------------------------------------------------------------------

    @on(Input.Changed, "#search")
    def check_filter(self, event: Input.Changed) -> None:
        """Checked on every key; a filter that parses is searched after a short pause."""
        from ..filters import parse_filter

        problem = self.query_one("#problem", Static)
        try:
            parse_filter(event.value or None)
        except FilterSyntaxError as e:
            problem.set_class(False, "ok")
            problem.update(Text(plain(f"{e}\n{e.caret()}")))
            return
        problem.set_class(True, "ok")
        problem.update(Text(""))
        if (event.value or None) != self.pager.filter_string:
            self.set_timer(0.3, lambda value=event.value: self._search_if_current(value))

    def _search_if_current(self, value: str) -> None:
        # Not when Enter searched it meanwhile: a second search would clear the rows (and the
        # marks) the person has started working on.
        if (value or None) == self.pager.filter_string:
            return
        if self.query_one("#search", Input).value == value:
            self.pager.filter_string = value or None
            self.search()

    @on(Input.Submitted, "#search")
    def run_filter(self, event: Input.Submitted) -> None:
        if not self.query_one("#problem", Static).has_class("ok"):
            return
        self.pager.filter_string = event.value or None
        if event.value:
            self.history.add(event.value)
        self.search()
        self.query_one("#results", DataTable).focus()

    def search(self) -> None:
        """Start over: a new filter, order or a refresh."""
        self.generation += 1
        self.marked.clear()
        self.mark_all = False
        table = self.query_one("#results", DataTable)
        table.clear()
        self._load(self.generation, first=True)

    @work(thread=True, exclusive=True, group="load")
    def _load(self, generation: int, first: bool = False) -> None:
        try:
            with self._pager_lock:
                if generation != self.generation:
                    return  # a newer search has started: this one's page is not wanted
                prefetched, self.first_page = self.first_page, None
                if first and prefetched is not None:
                    rows = prefetched.result()
                else:
                    rows = self.pager.first() if first else self.pager.more()
        except TracetagError as e:
            self.call_from_thread(self._problem, str(e))
            return
        self.call_from_thread(self._add_rows, generation, rows)

    def _problem(self, message: str) -> None:
        problem = self.query_one("#problem", Static)
        problem.set_class(False, "ok")
        problem.update(Text(plain(message)))

    def _add_rows(self, generation: int, rows: list[dict[str, Any]]) -> None:
        if generation != self.generation:
            return  # a page of a search since replaced
        table = self.query_one("#results", DataTable)
        for doc in rows:
            cells = row_cells(doc, self.tag_columns, self._is_marked(doc["trace_id"]))
            table.add_row(*cells, key=doc["trace_id"])
        table.refresh(layout=True)  # column widths follow the rows just read
        self._status()
        if table.row_count and self.shown is None:
            self._show(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))

    def _status(self) -> None:
        n = len(self.pager.rows)
        more = "" if self.pager.done else "+"
        marked = "all matching" if self.mark_all else f"{len(self.marked)} marked"
        self.sub_title = f"{n}{more} traces, {marked}"
        self.query_one("#results", DataTable).border_title = self.sub_title

    @on(DataTable.RowHighlighted, "#results")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if event.cursor_row >= table.row_count - LOAD_AHEAD and not self.pager.done:
            self._load(self.generation)
        if event.row_key.value is not None:
            self._show(str(event.row_key.value))

    @on(DataTable.HeaderSelected, "#results")
    def header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        order = ORDER_OF_COLUMN.get(key) or (key if key.startswith("tags.") else None)
        if order is None:
            return
        current = (self.pager.order_by or [""])[0]
        desc = not current.endswith(" DESC") if current.startswith(order) else True
        self.pager.order_by = [f"{order} {'DESC' if desc else 'ASC'}"]
        self.search()

    # -- the selected trace --------------------------------------------------------------------

    def _show(self, trace_id: str) -> None:
        self.shown = trace_id
        self._load_trace(trace_id)

    @work(thread=True, exclusive=True, group="trace")
    def _load_trace(self, trace_id: str) -> None:
        try:
            trace = self.client.get_trace(trace_id)
        except TracetagError as e:
            self.call_from_thread(self._problem, str(e))
            return
        self.call_from_thread(self._fill_detail, trace)

    def _fill_detail(self, trace: Any) -> None:
        if trace.info.trace_id != self.shown:
            return
        self.query_one("#info", Static).update(trace_text(trace))
        self.query_one("#metadata", Static).update(metadata_text(trace))
        tree = self.query_one("#spans", Tree)
        tree.clear()
        tree.root.set_label(Text(f"spans ({len(trace.spans)})"))
        by_parent: dict[str | None, list[Any]] = {}
        ids = {s.span_id for s in trace.spans}
        for s in trace.spans:
            parent = s.parent_id if s.parent_id in ids else None
            by_parent.setdefault(parent, []).append(s)
        total = max((s.end_time_ns or s.start_time_ns for s in trace.spans), default=0) - min(
            (s.start_time_ns for s in trace.spans), default=0
        )
        start = min((s.start_time_ns for s in trace.spans), default=0)

        def add(node: Any, parent: str | None, depth: int) -> None:
            for s in sorted(by_parent.get(parent, []), key=lambda x: x.start_time_ns):
                label = span_label(s, start, total)
                child = node.add(label, data=s, expand=depth < 8)
                if depth < 50:  # a hostile trace may nest its spans very deep
                    add(child, s.span_id, depth + 1)

        add(tree.root, None, 0)
        tree.root.expand()
        spans = trace.spans
        self.query_one("#span", Static).update(span_text(spans[0]) if spans else Text(""))

    @on(Tree.NodeHighlighted, "#spans")
    def span_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self.query_one("#span", Static).update(span_text(event.node.data))

    # -- marks and tags ------------------------------------------------------------------------

    def _is_marked(self, trace_id: str) -> bool:
        return self.mark_all or trace_id in self.marked

    def _current_id(self) -> str | None:
        table = self.query_one("#results", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _redraw_mark(self, trace_id: str) -> None:
        table = self.query_one("#results", DataTable)
        table.update_cell(trace_id, "mark", Text("●" if self._is_marked(trace_id) else ""))

    def action_mark(self) -> None:
        tid = self._current_id()
        if tid is None:
            return
        if self.mark_all:  # unmarking one of "all matching" makes the marks explicit
            self.mark_all = False
            self.marked = {d["trace_id"] for d in self.pager.rows}
        self.marked ^= {tid}
        self._redraw_mark(tid)
        self._status()

    def action_mark_move(self, step: int) -> None:
        tid = self._current_id()
        if tid is not None and not self._is_marked(tid):
            self.marked.add(tid)
            self._redraw_mark(tid)
        table = self.query_one("#results", DataTable)
        table.move_cursor(row=table.cursor_row + step)
        tid = self._current_id()
        if tid is not None:
            self.marked.add(tid)
            self._redraw_mark(tid)
        self._status()

    def action_mark_all(self) -> None:
        self.mark_all = not self.mark_all
        self.marked.clear()
        for doc in self.pager.rows:
            self._redraw_mark(doc["trace_id"])
        self._status()

    def targets(self) -> tuple[list[str] | None, str | None, str]:
        """(ids, filter, what) a tag change applies to: the marks, every match, or the
        highlighted trace."""
        if self.mark_all:
            return None, self.pager.filter_string or "", "every matching trace"
        if self.marked:
            ids = [d["trace_id"] for d in self.pager.rows if d["trace_id"] in self.marked]
            return ids, None, f"{len(ids)} marked traces"
        tid = self._current_id()
        return ([tid] if tid else []), None, "this trace"

    def action_tag(self) -> None:
        ids, filter_string, what = self.targets()
        if ids == []:
            return
        self.push_screen(TagScreen(self.client, ids, filter_string, self.pager, what), self._tagged)

    def _tagged(self, report: Any) -> None:
        if report is None:
            return
        self.last_report = report
        n = len(report.changed)
        self._after_write(f"{n} trace{'' if n == 1 else 's'} changed (u undoes)")

    def action_undo(self) -> None:
        if self.last_report is None or not self.last_report.changed:
            self.notify("nothing to undo")
            return
        try:
            report = undo(self.client, self.last_report)
        except TracetagError as e:
            self.notify(plain(str(e)), severity="error")
            return
        self.last_report = None
        n = len(report.changed)
        self._after_write(f"undone: {n} trace{'' if n == 1 else 's'} changed back")

    def _after_write(self, message: str) -> None:
        self.notify(message)
        shown, self.shown = self.shown, None
        cursor = self.query_one("#results", DataTable).cursor_row
        self.search()
        self.call_after_refresh(self._restore, cursor, shown)

    def _restore(self, row: int, shown: str | None) -> None:
        table = self.query_one("#results", DataTable)
        if row < table.row_count:
            table.move_cursor(row=row)
        if shown is not None:
            self._show(shown)

    # -- other views ---------------------------------------------------------------------------

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_sort(self) -> None:
        cycle = ["timestamp_ms DESC", "execution_time_ms DESC", "execution_time_ms ASC", "name"]
        current = (self.pager.order_by or ["timestamp_ms DESC"])[0]
        nxt = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]
        self.pager.order_by = [nxt]
        self.notify(f"order: {nxt}")
        self.search()

    def action_refresh(self) -> None:
        self.search()

    def action_stats(self) -> None:
        self.push_screen(StatsScreen(self.client, self.pager))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_maximize_detail(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        else:
            self.screen.maximize(self.query_one("#detail"))


def shown_order(app: TracetagApp) -> list[str]:
    """The ids in the results table, top to bottom (for tests and tools)."""
    table = app.query_one("#results", DataTable)
    keys = (table.coordinate_to_cell_key(Coordinate(r, 0)) for r in range(table.row_count))
    return [str(k.row_key.value) for k in keys]
