"""The ``tracetag`` command: parses arguments, makes one library call, renders.

Exit codes: 0 success; 1 not found or partly failed (unknown ids, lint findings); 2 bad input
(usage, filter, tag); 3 the store is unusable (not a store, damaged, locked). Errors are one
line on stderr (a filter error adds the filter and a caret), never a traceback.
Heavy modules (rich, lark, the store) are imported inside the commands that use them.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._version import __version__
from ..errors import FilterSyntaxError, InvalidInput, StoreError, TracetagError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Turns library errors into one line and an exit code, for every subcommand."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TracetagError as e:
            _fail(e)
        except BrokenPipeError:
            # A closed pipe (``| head``) is not an error of ours; keep Python quiet at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:
            # The file system said no (a full disk, a read-only folder): one line, no traceback.
            where = f"{e.filename}: " if e.filename else ""
            _fail(StoreError(f"{where}{e.strerror or e}"))
        except KeyboardInterrupt:
            sys.stderr.write("tracetag: interrupted\n")
            sys.exit(130)


def _fail(e: TracetagError) -> None:
    err = sys.stderr
    if isinstance(e, FilterSyntaxError):
        err.write(f"tracetag: error: {e}\n")
        if e.text:
            err.write(e.caret() + "\n")
    else:
        err.write(f"tracetag: error: {e}\n")
    err.flush()
    sys.exit(e.exit_code)


app = typer.Typer(
    cls=_Group,
    name="tracetag",
    help="Manage, tag and search the traces of LLM and ML applications.\n\n"
    "Example: tracetag search -f \"tags.environment = 'production' AND status = 'ERROR'\"",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
tag_app = typer.Typer(
    cls=_Group, help="Set, delete, list and edit the tags of traces.", no_args_is_help=True
)
tags_app = typer.Typer(
    cls=_Group, help="Discover the tag keys and values in use.", no_args_is_help=True
)
exp_app = typer.Typer(cls=_Group, help="List and create experiments.", no_args_is_help=True)
store_app = typer.Typer(
    cls=_Group, help="Inspect, check, repair and compact the store.", no_args_is_help=True
)
app.add_typer(tag_app, name="tag")
app.add_typer(tags_app, name="tags")
app.add_typer(exp_app, name="experiments")
app.add_typer(store_app, name="store")


class State:
    def __init__(self, store: Path | None, color: bool):
        self.store_path = store
        self.color = color
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ..api import TracetagClient

            self._client = TracetagClient(self.store_path)
        return self._client


def _state(ctx: typer.Context) -> State:
    return ctx.find_root().obj


def _version(value: bool) -> None:
    if value:
        print(f"tracetag {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            metavar="PATH",
            envvar="TRACETAG_STORE",
            help="Store file (default: $TRACETAG_STORE, else the per-user data folder).",
            show_default=False,
        ),
    ] = None,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours (NO_COLOR is honoured too).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Manage, tag and search traces."""
    ctx.obj = State(store, color=not no_color and "NO_COLOR" not in os.environ)


# ---------------------------------------------------------------------------------------------
# Completion sources (fast: they read only what they need and never print errors)


def _complete(fn: Any) -> Any:
    def wrapper(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            from . import complete

            return fn(complete, ctx, incomplete)
        except Exception:
            return []

    return wrapper


complete_trace_ids = _complete(lambda m, ctx, inc: m.trace_ids(ctx, inc))
complete_tag_keys = _complete(lambda m, ctx, inc: m.tag_keys(ctx, inc))
complete_fields = _complete(lambda m, ctx, inc: m.fields(ctx, inc))
complete_experiments = _complete(lambda m, ctx, inc: m.experiment_ids(ctx, inc))

# ---------------------------------------------------------------------------------------------
# Shared options

FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter",
        "-f",
        metavar="FILTER",
        help="Filter, e.g. \"tags.environment = 'production'\".",
        show_default=False,
    ),
]


def _experiments_by_name(ctx: typer.Context, values: list[str] | None) -> list[str] | None:
    """Let ``-x`` take an experiment's name as well as its id."""
    if not values or ctx.resilient_parsing:
        return values
    return _state(ctx).client.resolve_experiment_ids(values)


ExpOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--experiment-id",
        "-x",
        metavar="ID",
        help="Experiment id or name (repeatable; default: all).",
        autocompletion=complete_experiments,
        callback=_experiments_by_name,
        show_default=False,
    ),
]


DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Write nothing if any id is unknown or key missing.")
]


def _choice(choices: tuple[str, ...]) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _output(*choices: str) -> Any:
    return typer.Option(
        "--output",
        "-o",
        metavar="FORMAT",
        help=f"Output format: {', '.join(choices)}.",
        callback=_choice(choices),
        autocompletion=lambda: list(choices),
        show_default=False,
    )


SearchOutput = Annotated[str | None, _output("table", "tsv", "json", "jsonl", "csv", "ids")]
ShowOutput = Annotated[str | None, _output("tree", "json")]
TextOutput = Annotated[str | None, _output("text", "json")]
TableOutput = Annotated[str | None, _output("table", "json")]
KeyValueOutput = Annotated[str | None, _output("table", "json", "tsv")]
RowsOutput = Annotated[str | None, _output("table", "json", "csv", "tsv")]


def _render() -> Any:
    from . import render

    return render


# ---------------------------------------------------------------------------------------------
# search / show


@app.command()
def search(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            metavar="KEY",
            help="KEY [ASC|DESC] (repeatable), e.g. 'execution_time_ms DESC'.",
        ),
    ] = None,
    max_results: Annotated[
        int, typer.Option("--max-results", "-n", metavar="N", min=1, help="Traces per page.")
    ] = 100,
    all_results: Annotated[
        bool, typer.Option("--all", "-a", help="Every match, no paging.")
    ] = False,
    experiment_id: ExpOpt = None,
    page_token: Annotated[
        str | None,
        typer.Option("--page-token", metavar="TOKEN", help="Token printed by the previous page."),
    ] = None,
    output: SearchOutput = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print the parsed filter and order; do not search.")
    ] = False,
) -> None:
    """Search traces with a filter, ordering and paging.

    Example: tracetag search -f "execution_time_ms > 5s" --order-by "execution_time_ms DESC"
    """
    st = _state(ctx)
    render = _render()
    if explain:
        from ..filters import parse_filter
        from ..query import parse_order_by

        render.explain(parse_filter(filter_string), parse_order_by(order_by))
        return
    page = st.client.search_page(
        experiment_id,
        filter_string,
        None if all_results else max_results,
        order_by,
        page_token,
    )
    render.traces(page, output or render.default_format(), color=st.color)


@app.command()
def show(
    ctx: typer.Context,
    trace_id: Annotated[
        str, typer.Argument(help="Trace id.", metavar="TRACE_ID", autocompletion=complete_trace_ids)
    ],
    output: ShowOutput = None,
) -> None:
    """Show a trace: info, tags, metadata and the span tree.

    Example: tracetag show tr-6663f3d7173cfa73b65948ca5fbc00b3 --output json
    """
    st = _state(ctx)
    trace = st.client.get_trace(trace_id)
    _render().trace_detail(trace, output or "tree", color=st.color)


# ---------------------------------------------------------------------------------------------
# import / export


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            help="MLflow or tracetag trace JSON (array or lines); - for stdin.", metavar="FILE"
        ),
    ],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the readable traces, report the rest.")
    ] = False,
    output: TextOutput = None,
) -> None:
    """Import traces exported by MLflow (Trace.to_json, mlflow traces get) or by tracetag.

    A trace already in the store is updated, not duplicated. A bad record aborts the whole import
    (nothing is written) unless --skip-invalid.

    Example: tracetag import traces.jsonl
    """
    st = _state(ctx)
    data = _read_input(file)
    summary = st.client.import_traces(data, file, skip_invalid=skip_invalid)
    _render().import_summary(summary, output or "text")
    if summary.invalid:
        raise typer.Exit(1)


def _read_input(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as e:
        raise InvalidInput(f"{file}: cannot read ({e.strerror})") from None


@app.command()
def export(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-O", metavar="FILE", help="Write to this file instead of stdout."),
    ] = None,
) -> None:
    """Export traces (info and spans) as tracetag JSON lines, which import back identically.

    Example: tracetag export -f "tags.environment = 'production'" -O prod.jsonl
    """
    st = _state(ctx)
    if out is None:
        n = st.client.export_traces(sys.stdout.buffer, filter_string, experiment_id)
        sys.stdout.buffer.flush()
    else:
        n = _export_to_file(st.client, Path(out), filter_string, experiment_id)
    typer.echo(f"exported {n} traces", err=True)


def _export_to_file(client: Any, out: Path, filter_string: str | None, exps: Any) -> int:
    """Write beside ``out`` and rename, so a failed export never leaves half a file; the
    file is private (it holds prompts and responses) like the store."""
    from ..store import PRIVATE_FILE, create_file

    tmp = out.with_name(f".{out.name}.partial")
    try:
        fd = create_file(tmp, PRIVATE_FILE)
    except OSError as e:
        raise InvalidInput(f"{out}: cannot write ({e.strerror})") from None
    try:
        with open(fd, "wb") as fh:
            n = client.export_traces(fh, filter_string, exps)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"{out}: cannot write ({e.strerror})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


@app.command()
def delete(
    ctx: typer.Context,
    trace_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Trace ids, or - to read them from stdin.",
            metavar="TRACE_ID",
            autocompletion=complete_trace_ids,
            show_default=False,
        ),
    ] = None,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    max_traces: Annotated[
        int | None,
        typer.Option("--max-traces", metavar="N", min=1, help="Delete at most the N oldest."),
    ] = None,
    dry_run: DryRunOpt = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before deleting by filter.")
    ] = False,
    output: TextOutput = None,
) -> None:
    """Delete traces by id or by filter, in one atomic write.

    Deleting by filter asks first on a terminal and needs --yes in a script.
    Example: tracetag delete -f "timestamp_ms < now() - 30d" --dry-run
    """
    from ..terminal import ask

    st = _state(ctx)
    if (trace_ids and filter_string is not None) or (not trace_ids and filter_string is None):
        raise InvalidInput("give trace ids or --filter (one of the two)")
    if experiment_id and len(experiment_id) > 1:
        raise InvalidInput("delete takes one --experiment-id")
    exp = experiment_id[0] if experiment_id else None
    ids = _ids_from(trace_ids) if trace_ids else None

    def run(dry: bool) -> Any:
        return st.client.delete_traces(
            exp, None, max_traces, ids, filter_string=filter_string, dry_run=dry
        )

    if filter_string is not None and not dry_run and not yes:
        planned = run(True)
        if planned.deleted and not ask(f"Delete {planned.deleted} traces?", default=False):
            raise InvalidInput(
                f"not deleting {planned.deleted} traces without confirmation; add --yes"
            )
    report = run(dry_run)
    _render().delete_report(report, output or "text")
    if report.not_found:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# tag ...


def _ids_from(args: list[str]) -> list[str]:
    ids: list[str] = []
    for a in args:
        if a == "-":
            ids.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            ids.append(a)
    return ids


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
    output: KeyValueOutput = None,
) -> None:
    """List the tags of a trace.

    Example: tracetag tag list tr-6663f3d7173cfa73b65948ca5fbc00b3 --output json
    """
    st = _state(ctx)
    with st.client.snapshot() as snap:
        tags = snap.require(trace_id)["tags"]
    render = _render()
    render.key_values(tags, output or render.default_format(), color=st.color)


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
) -> None:
    """Every tag key in use, with how many traces carry it and its number of distinct values.

    Example: tracetag tags keys -f "tags.environment = 'production'"
    """
    from ..analytics import tag_keys

    st = _state(ctx)
    with st.client.snapshot() as snap:
        rows = tag_keys(snap, filter_string, experiment_id)
    render = _render()
    render.rows(rows, ["key", "traces", "values"], output or render.default_format(), st.color)


@tags_app.command("values")
def tags_values(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(help="Tag key.", metavar="KEY", autocompletion=complete_tag_keys)
    ],
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    output: RowsOutput = None,
) -> None:
    """The values of one tag key, with counts.

    Example: tracetag tags values model_version
    """
    from ..analytics import tag_values

    st = _state(ctx)
    with st.client.snapshot() as snap:
        rows = tag_values(snap, key, filter_string, experiment_id)
    render = _render()
    render.rows(rows, ["value", "traces"], output or render.default_format(), st.color)


# ---------------------------------------------------------------------------------------------
# stats / lint


@app.command()
def stats(
    ctx: typer.Context,
    group_by: Annotated[
        list[str],
        typer.Option(
            "--group-by",
            "-g",
            metavar="KEY",
            help="tags.KEY, metadata.KEY, status, name or another attribute (repeatable).",
            autocompletion=complete_fields,
        ),
    ],
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            metavar="COLUMN",
            help="count, error_rate, mean, p50, p95, p99, max or group.",
            callback=_choice(("count", "error_rate", "mean", "p50", "p95", "p99", "max", "group")),
        ),
    ] = "count",
    output: RowsOutput = None,
) -> None:
    """Count, error rate and execution time (mean, p50, p95, p99, max) per group.

    Percentiles are nearest-rank. Traces lacking a key form the (none) group.

    Example: tracetag stats --group-by tags.model_version -f "tags.environment = 'production'"
    """
    from ..analytics import group_stats

    st = _state(ctx)
    with st.client.snapshot() as snap:
        result = group_stats(snap, group_by, filter_string, experiment_id, sort)
    render = _render()
    render.stats(result, output or render.default_format(), st.color)


@app.command()
def lint(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Rename keys and normalise values (one write).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --fix: show the changes only.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="tracetag.toml or pyproject.toml with [tool.tracetag.lint].",
        ),
    ] = None,
    output: TableOutput = None,
) -> None:
    """Check tag keys and values against the naming guidelines; exit 1 on findings.

    Example: tracetag lint --fix --dry-run
    """
    from ..lint import fix_findings, lint_store, load_config

    st = _state(ctx)
    cfg = load_config(config)
    with st.client.snapshot() as snap:
        findings = lint_store(snap, cfg, filter_string, experiment_id)
    render = _render()
    render.lint_findings(findings, output or render.default_format(), st.color)
    if fix and findings:
        report = fix_findings(
            st.client, findings, cfg, filter_string, experiment_id, dry_run=dry_run
        )
        render.tag_report(report, "text", color=st.color, show_changes=True)
        if not dry_run:
            return
    if findings:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# experiments / store / demo / completion


@exp_app.command("list")
def experiments_list(ctx: typer.Context, output: RowsOutput = None) -> None:
    """List experiments with their trace counts.

    Example: tracetag experiments list
    """
    st = _state(ctx)
    rows = st.client.list_experiments()
    render = _render()
    cols = ["experiment_id", "name", "traces"]
    render.rows(rows, cols, output or render.default_format(), st.color)


@exp_app.command("create")
def experiments_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Experiment name.", metavar="NAME")],
) -> None:
    """Create an experiment (or print the id of the one with that name).

    Example: tracetag experiments create chatbot-prod
    """
    print(_state(ctx).client.create_experiment(name))


@store_app.command("info")
def store_info(ctx: typer.Context, output: TextOutput = None) -> None:
    """Where the store is and how big it is.

    Example: tracetag store info
    """
    from ..maintenance import info

    _render().mapping(info(_state(ctx).client.store), output or "text")


@store_app.command("check")
def store_check(ctx: typer.Context, output: TextOutput = None) -> None:
    """Check every file of the store; exit 3 if something is damaged.

    Example: tracetag store check
    """
    from ..maintenance import check

    report = check(_state(ctx).client.store)
    _render().check_report(report, output or "text")
    if not report.ok:
        raise typer.Exit(3)


@store_app.command("repair")
def store_repair(ctx: typer.Context) -> None:
    """Rebuild a damaged store from what is readable, after backing up every file.

    Example: tracetag store repair
    """
    from ..maintenance import repair

    result = repair(_state(ctx).client.store)
    _render().mapping(result, "text")


@store_app.command("compact")
def store_compact(
    ctx: typer.Context,
    vacuum: Annotated[
        bool,
        typer.Option("--vacuum", help="Also rewrite the span file with live spans only."),
    ] = False,
) -> None:
    """Fold the journal into the base file now (it also happens on its own).

    Example: tracetag store compact --vacuum
    """
    result = _state(ctx).client.store.compact(vacuum=vacuum)
    typer.echo(f"folded {result['records']} journal records (generation {result['generation']})")
    if "spans_bytes_after" in result:
        before, after = result["spans_bytes_before"], result["spans_bytes_after"]
        typer.echo(f"span file: {before} -> {after} bytes")


@app.command()
def demo(
    ctx: typer.Context,
    traces: Annotated[
        int, typer.Option("--traces", "-n", metavar="N", min=1, help="How many traces to record.")
    ] = 200,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Random seed, for the same data each time.")
    ] = 7,
) -> None:
    """Record realistic sample traces (through the tracing API) into the store.

    Example: tracetag demo --traces 500 && tracetag stats --group-by tags.model_version
    """
    from ..demo import record_demo

    st = _state(ctx)
    n, experiment = record_demo(st.client, traces, seed)
    typer.echo(
        f"recorded {n} traces into experiment {experiment['experiment_id']} "
        f"({experiment['name']}) in {st.client.store.path}",
        err=True,
    )


@app.command()
def completion(
    shell: Annotated[
        str,
        typer.Argument(
            help="bash, zsh or fish.", metavar="SHELL", callback=_choice(("bash", "zsh", "fish"))
        ),
    ],
) -> None:
    """Print the shell completion script (the files in completions/ are this output).

    Example: tracetag completion bash > ~/.local/share/bash-completion/completions/tracetag
    """
    from .complete import script

    sys.stdout.write(script(shell))


def main() -> None:
    # A command lives for a moment and makes no garbage cycles worth collecting; without the
    # cyclic collector, holding 100,000 search results is 2-3x faster.
    gc.disable()
    app(prog_name="tracetag")
