"""The UI's other screens: tagging with a preview, statistics as bars, help."""

from __future__ import annotations

import shlex
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from ..errors import TracetagError
from ..tags import TagReport, parse_assignment, validate_deletable_key
from .render import bar, duration, plain

__all__ = ["HelpScreen", "StatsScreen", "TagScreen", "parse_tag_edit"]

PREVIEW_LINES = 200


def parse_tag_edit(text: str) -> tuple[dict[str, str], list[str]]:
    """``key=value`` sets, ``-key`` deletes; quotes as in a shell (``"note=needs review"``)."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise TracetagError(f"cannot read {text!r}: {e}") from None
    sets: dict[str, str] = {}
    dels: list[str] = []
    for w in words:
        if w.startswith("-") and "=" not in w:
            dels.append(validate_deletable_key(w[1:]))
        else:
            key, value = parse_assignment(w)
            sets[key] = value
    return sets, dels


def diff_text(report: TagReport) -> Text:
    """The change a tag write makes, as ``tracetag tag set --dry-run`` prints it."""
    out = Text()
    lines = 0
    for c in report.changed:
        for k, v in c.added.items():
            out.append(f"{plain(c.trace_id)}  + {plain(k)}={plain(v)}\n", style="green")
            lines += 1
        for k, (old, new) in c.changed.items():
            out.append(f"{plain(c.trace_id)}  ~ {plain(k)}: {plain(old)} -> {plain(new)}\n",
                       style="yellow")  # fmt: skip
            lines += 1
        for k, v in c.deleted.items():
            out.append(f"{plain(c.trace_id)}  - {plain(k)} (was {plain(v)})\n", style="red")
            lines += 1
        if lines >= PREVIEW_LINES:
            out.append("...\n")
            break
    n = len(report.changed)
    out.append(f"{n} {'trace' if n == 1 else 'traces'} would change, "
               f"{len(report.unchanged)} unchanged", style="bold")  # fmt: skip
    return out


class TagScreen(ModalScreen["TagReport | None"]):
    """Set and delete tags on the chosen traces: the preview is the dry run of the very write
    Enter makes (one atomic write)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    TagScreen { align: center middle; }
    #box { width: 90%; max-width: 120; height: 80%; border: round $primary; padding: 0 1; }
    #preview { height: 1fr; }
    #tag-problem { color: $error; height: auto; }
    """

    def __init__(
        self, client: Any, ids: list[str] | None, filter_string: str | None, pager: Any, what: str
    ):
        super().__init__()
        self.client = client
        self.ids = ids
        self.filter_string = filter_string
        self.experiment_ids = pager.experiment_ids
        self.what = what
        self.edit: tuple[dict[str, str], list[str]] = ({}, [])

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static(Text(f"tag {self.what}: key=value sets, -key deletes; Enter writes"))
            yield Input(placeholder="reviewed=yes -needs_review", id="tag-input")
            yield Static(Text(""), id="tag-problem")
            with VerticalScroll(id="preview"):
                yield Static(Text(""), id="diff")
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tag-input", Input).focus()

    def _update(self, sets: dict[str, str], dels: list[str], dry_run: bool) -> TagReport:
        report: TagReport = self.client.update_tags(
            self.ids,
            set=sets,
            delete=dels,
            filter_string=None if self.ids is not None else (self.filter_string or ""),
            experiment_ids=self.experiment_ids,
            dry_run=dry_run,
        )
        return report

    @on(Input.Changed, "#tag-input")
    def changed(self, event: Input.Changed) -> None:
        problem = self.query_one("#tag-problem", Static)
        try:
            self.edit = parse_tag_edit(event.value)
        except TracetagError as e:
            problem.update(Text(plain(str(e))))
            self.edit = ({}, [])
            return
        problem.update(Text(""))
        self._preview(*self.edit)

    @work(thread=True, exclusive=True)
    def _preview(self, sets: dict[str, str], dels: list[str]) -> None:
        if not sets and not dels:
            self.app.call_from_thread(self.query_one("#diff", Static).update, Text(""))
            return
        try:
            text = diff_text(self._update(sets, dels, dry_run=True))
        except TracetagError as e:
            text = Text(plain(str(e)), style="red")
        self.app.call_from_thread(self.query_one("#diff", Static).update, text)

    @on(Input.Submitted, "#tag-input")
    def write(self) -> None:
        sets, dels = self.edit
        if not sets and not dels:
            return
        try:
            report = self._update(sets, dels, dry_run=False)
        except TracetagError as e:
            self.query_one("#tag-problem", Static).update(Text(plain(str(e))))
            return
        self.dismiss(report)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StatsScreen(Screen[None]):
    """``tracetag stats`` for the current filter: counts, error rates and latency as bars."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("q", "app.pop_screen", "back")]
    DEFAULT_CSS = """
    #group { height: 3; }
    #stats-problem { color: $error; height: auto; }
    #stats { height: 1fr; }
    """

    def __init__(self, client: Any, pager: Any, group_by: str = "status"):
        super().__init__()
        self.client = client
        self.pager = pager
        self.group_by = group_by

    def compose(self) -> ComposeResult:
        what = self.pager.filter_string or "every trace"
        yield Static(Text(f"statistics of {plain(what)}, grouped by (Enter to apply):"))
        hint = "group by, e.g. tags.model_version"
        yield Input(value=self.group_by, placeholder=hint, id="group")
        yield Static(Text(""), id="stats-problem")
        yield DataTable(id="stats", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#stats", DataTable)
        for label in ("group", "count", "errors", "error rate", "p50", "p95", "p99", "p95 bar"):
            table.add_column(label, key=label)
        self._compute(self.group_by)
        table.focus()

    @on(Input.Submitted, "#group")
    def regroup(self, event: Input.Submitted) -> None:
        self._compute(event.value)

    @work(thread=True, exclusive=True)
    def _compute(self, group_by: str) -> None:
        keys = [k.strip() for k in group_by.split(",") if k.strip()]
        try:
            result = self.client.stats(keys, self.pager.filter_string, self.pager.experiment_ids)
        except TracetagError as e:
            self.app.call_from_thread(
                self.query_one("#stats-problem", Static).update, Text(plain(str(e)))
            )
            return
        self.app.call_from_thread(self._fill, result)

    def _fill(self, result: Any) -> None:
        self.query_one("#stats-problem", Static).update(Text(""))
        table = self.query_one("#stats", DataTable)
        table.clear()
        worst = max((r.get("p95_ms") or 0 for r in result.rows), default=0) or 1
        for r in result.rows:
            rate = r["error_rate"]
            group = ", ".join("(none)" if g is None else str(g) for g in r["group"]) or "all"
            table.add_row(
                Text(plain(group)[:40]),
                Text(str(r["count"]), justify="right"),
                Text(str(r["errors"]), justify="right"),
                Text(f"{bar(rate, 8)} {rate:.1%}", style="red" if rate else ""),
                Text(duration(r.get("p50_ms")), justify="right"),
                Text(duration(r.get("p95_ms")), justify="right"),
                Text(duration(r.get("p99_ms")), justify="right"),
                Text(bar((r.get("p95_ms") or 0) / worst, 16), style="cyan"),
            )


HELP = """\
tracetag ui: look at traces and tag them

/        the search box: the whole filter language (tracetag help filters);
         errors show with a caret as you type; up/down: earlier filters
Enter    (in the box) search; (in the table) look at the trace
up/down  move (pageup/pagedown, ctrl+home/ctrl+end); the trace shows on
         the right (or below); more results are read as you reach them
space    mark the trace; shift+up/down marks as it moves
a        mark every trace that matches (loaded or not); again: unmark
t        tag the marked traces (or this one): key=value sets, -key
         deletes; the preview is the write's dry run; Enter writes it
u        undo the last tag change
s        sort: newest, slowest, fastest, by name (or click a header)
g        statistics: counts, error rates and latency by a group
r        refresh: read the store again (changes by other processes)
z        zoom the trace pane; again to go back
q        quit        ?  this help (Escape closes it)
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "close"),
        Binding("question_mark", "dismiss", "close"),
        Binding("q", "dismiss", "close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: auto; max-width: 90; height: auto; border: round $primary; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP), id="help")

    async def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(None)
