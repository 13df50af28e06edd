"""Commands about tags: tag set / delete / list / edit, and tags keys / values."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import InvalidInput
from .app import (
    DryRunOpt,
    ExpOpt,
    FilterOpt,
    NoHeaderOpt,
    RowsOutput,
    StrictOpt,
    TextOutput,
    _ids_from,
    _render,
    _state,
    complete_tag_keys,
    complete_trace_ids,
    tag_app,
    tags_app,
)

# ---------------------------------------------------------------------------------------------
# tag ...


def _tag_report(ctx: typer.Context, report: Any, output: str | None) -> None:
    _render().tag_report(report, output or "text", color=_state(ctx).color)
    if not report.ok:
        raise typer.Exit(1)


@tag_app.command("set")
def tag_set(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        typer.Argument(
            help="Trace ids (or - to read ids from stdin), then key=value pairs.",
            metavar="TRACE_ID|KEY=VALUE",
            autocompletion=complete_trace_ids,
            show_default=False,
        ),
    ],
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    output: TextOutput = None,
) -> None:
    """Add or update tags on traces, by id, from stdin, or by --filter: one atomic write.

    On an MLflow tracking server (--store http://...) there are no transactions: each tag is
    its own request, and if some fail they are listed and the exit code is 1; run the same
    command again to finish.

    \b
    Example: tracetag search -f "status = 'ERROR'" -o ids | tracetag tag set - needs_review=true
    """
    from ..tags import parse_assignment

    assignments = [a for a in args if "=" in a]
    rest = [a for a in args if "=" not in a]
    if not assignments:
        raise InvalidInput("nothing to set: give key=value pairs after the trace ids")
    sets = dict(parse_assignment(a) for a in assignments)
    report = _update(ctx, rest, filter_string, experiment_id, sets, [], dry_run, strict)
    _tag_report(ctx, report, output)


def _update(
    ctx: typer.Context,
    id_args: list[str],
    filter_string: str | None,
    experiment_id: list[str] | None,
    sets: dict[str, str],
    deletes: list[str],
    dry_run: bool,
    strict: bool,
) -> Any:
    st = _state(ctx)
    if filter_string is not None:
        if id_args:
            raise InvalidInput("give trace ids or --filter, not both")
        with _render().progress("selecting traces") as progress:
            return st.client.update_tags(
                filter_string=filter_string,
                experiment_ids=experiment_id,
                set=sets,
                delete=deletes,
                dry_run=dry_run,
                strict=strict,
                progress=progress,
            )
    ids = _ids_from(id_args)
    if not ids:
        raise InvalidInput("no trace ids: give ids, - to read them from stdin, or --filter")
    return st.client.update_tags(ids, set=sets, delete=deletes, dry_run=dry_run, strict=strict)


def _looks_like_id(arg: str) -> bool:
    from ..schema import valid_trace_id

    return arg == "-" or (valid_trace_id(arg) and (arg.startswith("tr-") or len(arg) == 32))


@tag_app.command("delete")
def tag_delete(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        typer.Argument(
            help="Trace ids (or -), then keys to delete. With --filter, every argument is a key.",
            metavar="TRACE_ID|KEY",
            autocompletion=complete_tag_keys,
            show_default=False,
        ),
    ],
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    output: TextOutput = None,
) -> None:
    """Delete tags from traces. Ids are the leading arguments that look like trace ids.

    \b
    Example: tracetag tag delete tr-6663f3d7173cfa73b65948ca5fbc00b3 needs_review review_priority
    """
    from ..tags import validate_deletable_key

    if filter_string is not None:
        ids: list[str] = []
        keys = list(args)
    else:
        split = next((i for i, a in enumerate(args) if not _looks_like_id(a)), len(args))
        ids, keys = list(args[:split]), list(args[split:])
    if not keys:
        raise InvalidInput("nothing to delete: give tag keys after the trace ids")
    report = _update(
        ctx,
        ids,
        filter_string,
        experiment_id,
        {},
        [validate_deletable_key(k) for k in keys],
        dry_run,
        strict,
    )
    _tag_report(ctx, report, output)


@tag_app.command("list")
def tag_list(
    ctx: typer.Context,
    trace_id: Annotated[
        str, typer.Argument(help="Trace id.", metavar="TRACE_ID", autocompletion=complete_trace_ids)
    ],
    output: RowsOutput = None,
    no_header: NoHeaderOpt = False,
) -> None:
    """List the tags of a trace.

    \b
    Example: tracetag tag list tr-6663f3d7173cfa73b65948ca5fbc00b3 --output json
    """
    st = _state(ctx)
    tags = st.client.get_tags(trace_id)
    render = _render()
    fmt = output or render.default_format()
    render.key_values(tags, fmt, color=st.color, header=not no_header)


@tag_app.command("edit")
def tag_edit(
    ctx: typer.Context,
    trace_id: Annotated[
        str, typer.Argument(help="Trace id.", metavar="TRACE_ID", autocompletion=complete_trace_ids)
    ],
) -> None:
    """Edit a trace's tags in $VISUAL / $EDITOR, one 'key = value' per line.

    The difference is applied in one write. An unchanged file writes nothing. Invalid lines are
    reported with their line number, nothing is written, and the text is kept in a file.

    \b
    Example: EDITOR=nano tracetag tag edit tr-6663f3d7173cfa73b65948ca5fbc00b3
    """
    from ..editing import edit_tags

    st = _state(ctx)
    result = edit_tags(st.client, trace_id)
    _render().edit_result(result)
    if result.error:
        raise typer.Exit(2)


# ---------------------------------------------------------------------------------------------
# tags keys / values


@tags_app.command("keys")
def tags_keys(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    output: RowsOutput = None,
    no_header: NoHeaderOpt = False,
) -> None:
    """Every tag key in use, with how many traces carry it and its number of distinct values.

    \b
    Example: tracetag tags keys -f "tags.environment = 'production'"
    """
    st = _state(ctx)
    rows = st.client.tag_keys(filter_string, experiment_id)
    render = _render()
    fmt = output or render.default_format()
    render.rows(rows, ["key", "traces", "values"], fmt, st.color, header=not no_header)


@tags_app.command("values")
def tags_values(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(help="Tag key.", metavar="KEY", autocompletion=complete_tag_keys)
    ],
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    output: RowsOutput = None,
    no_header: NoHeaderOpt = False,
) -> None:
    """The values of one tag key, with counts.

    \b
    Example: tracetag tags values model_version
    """
    st = _state(ctx)
    rows = st.client.tag_values(key, filter_string, experiment_id)
    render = _render()
    fmt = output or render.default_format()
    render.rows(rows, ["value", "traces"], fmt, st.color, header=not no_header)
