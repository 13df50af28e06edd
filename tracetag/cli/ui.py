"""``tracetag ui``: the terminal UI (the ``ui`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InvalidInput
from .app import ExpOpt, FilterOpt, _state, app, long_lived
from .traces import OrderByOpt

TagColumnsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag-column",
        "-c",
        metavar="KEY",
        help="Show this tag in a column of its own (repeatable, or comma-separated).",
        show_default=False,
    ),
]


@app.command()
def ui(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    order_by: OrderByOpt = None,
    tag_columns: TagColumnsOpt = None,
) -> None:
    """Look at traces and tag them by hand in a terminal UI (? inside for its keys).

    Search with the whole filter language (checked as you type), read a trace's spans, mark
    traces and tag them in one write (previewed as a dry run), undo, see statistics.

    \b
    Example: tracetag ui -f "status = 'ERROR'" -c environment -c model_version
    """
    from ..review import Pager, prefetch
    from ..ui import available

    if not available():
        raise InvalidInput("the terminal UI needs Textual: pip install 'tracetag[ui]'")
    st = _state(ctx)
    columns = [c.strip() for v in tag_columns or [] for c in v.split(",") if c.strip()]
    orders = [o.strip() for v in order_by or [] for o in v.split(",") if o.strip()]
    from ..filters import parse_filter

    parse_filter(filter_string)  # a bad filter is one line with a caret, before any screen
    long_lived()
    pager = Pager(st.client, filter_string or None, orders or None, experiment_id)
    first = prefetch(pager)  # the store is read while Textual starts
    from ..ui.app import TracetagApp

    TracetagApp(st.client, tag_columns=columns, pager=pager, first_page=first).run()
