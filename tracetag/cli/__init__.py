"""The ``tracetag`` command: parses arguments, makes one library call, renders.

Exit codes: 0 success; 1 not found or partly failed (unknown ids, lint findings); 2 bad input
(usage, filter, tag); 3 the store is unusable (not a store, damaged, locked). Errors are one
line on stderr (a filter error adds the filter and a caret), never a traceback.
Heavy modules (rich, lark, the store) are imported inside the commands that use them.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._version import __version__
from ..errors import FilterSyntaxError, InvalidInput, StoreError, TracetagError

__all__ = ["app", "main"]


def _no_python_types() -> None:
    """Help shows our metavars (TRACE_ID, KEY=VALUE), not Python types (``<str>``,
    ``<list[str]>``), which mean nothing to a person at a terminal."""
    from typer import core

    original = core._TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> Any:
        return None if self.metavar is not None else original(self, ctx)

    core._TyperParameter.display_type = display_type  # type: ignore[method-assign]


_no_python_types()


class _Group(TyperGroup):
    """Turns library errors into one line and an exit code, for every subcommand."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Usage errors in one line with a hint, as every other error (Click prints three)."""
        try:  # typer >= 0.20 carries its own copy of Click
            from typer._click import exceptions as click
        except ImportError:  # pragma: no cover - older typer
            from click import exceptions as click  # type: ignore[no-redef, import-not-found, unused-ignore]

        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.UsageError as e:
            sys.stderr.write(f"tracetag: error: {_usage_message(e)}\n")
            sys.exit(2)
        except typer.Abort:
            sys.stderr.write("tracetag: interrupted\n")
            sys.exit(130)
        except click.ClickException as e:
            sys.stderr.write(f"tracetag: error: {e.format_message()}\n")
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)

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
            # The file system said no (a full disk, a read-only folder): one line, no
            # traceback; a store error (exit 3) only when it is about the store's own files.
            where = f"{e.filename}: " if e.filename else ""
            store = str(_state(ctx).store_file()) if ctx.obj else ""
            about_store = bool(store) and str(e.filename or "").startswith(store)
            cls = StoreError if about_store else TracetagError
            _fail(cls(f"{where}{e.strerror or e}"))
        except KeyboardInterrupt:
            sys.stderr.write("tracetag: interrupted\n")
            sys.exit(130)


def _usage_message(e: Any) -> str:
    """Click's message, plus the command a person most likely meant."""
    import difflib

    message = e.format_message()
    ctx = e.ctx
    hint = ""
    if message.startswith("No such command") and ctx is not None:
        wrong = message.split("'")[1] if "'" in message else ""
        root = ctx.find_root().command
        here = ctx.command
        names: list[str] = []
        for name, cmd in root.commands.items():
            names.append(name)
            names += [f"{name} {sub}" for sub in getattr(cmd, "commands", {})]
        typed = f"{ctx.info_name} {wrong}" if here is not root else wrong
        close = difflib.get_close_matches(typed, names, n=1, cutoff=0.6)
        close = close or [n for n in names if n.endswith(f" {wrong}")][:1]
        if close:
            hint = f"; did you mean 'tracetag {close[0]}'?"
    where = ctx.command_path if ctx is not None else "tracetag"
    return f"{message.rstrip('.')}{hint} (see '{where} --help')"


def _fail(e: TracetagError) -> None:
    from .render import visible

    err = sys.stderr
    err.write(f"tracetag: error: {visible(e)}\n")
    if isinstance(e, FilterSyntaxError) and e.text:
        err.write(visible(e.caret(), newlines=True) + "\n")
    err.flush()
    sys.exit(e.exit_code)


app = typer.Typer(
    cls=_Group,
    name="tracetag",
    help="Manage, tag and search the traces of LLM and ML applications.\n\n\b\n"
    "Example: tracetag search -f \"tags.environment = 'production' AND status = 'ERROR'\"\n"
    "Filters: tracetag help filters   Formats: tracetag help formats",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
tag_app = typer.Typer(
    cls=_Group,
    help="Set, delete, list and edit the tags of traces.\n\n\b\nExamples:\n"
    "  tracetag tag set TRACE_ID reviewed=true\n"
    "  tracetag tag set --filter \"status = 'ERROR'\" needs_review=true --dry-run\n"
    "  tracetag search -f \"tags.user_id = 'user_017'\" -o ids | tracetag tag set - vip=yes",
    no_args_is_help=True,
)
tags_app = typer.Typer(
    cls=_Group,
    help="Discover the tag keys and values in use.\n\n\b\nExamples:\n"
    "  tracetag tags keys\n  tracetag tags values model_version",
    no_args_is_help=True,
)
exp_app = typer.Typer(
    cls=_Group,
    help="List and create experiments.\n\n\b\nExamples:\n"
    "  tracetag experiments list\n  tracetag experiments create chatbot",
    no_args_is_help=True,
)
store_app = typer.Typer(
    cls=_Group,
    help="Inspect, check, repair and compact the store.\n\n\b\nExamples:\n"
    "  tracetag store info\n  tracetag store check\n  tracetag store compact --vacuum",
    no_args_is_help=True,
)
app.add_typer(tag_app, name="tag")
app.add_typer(tags_app, name="tags")
app.add_typer(exp_app, name="experiments")
app.add_typer(store_app, name="store")


class State:
    def __init__(self, store: Path | None, color: bool):
        self.store_path = store
        self.color = color
        self.creates = False  # set by the commands that may create the store
        self._client: Any = None

    def store_file(self) -> Path:
        from ..store import resolve_store_path

        return resolve_store_path(self.store_path)

    @property
    def client(self) -> Any:
        """The store's client; reading a store that does not exist is an error (a mistyped
        --store would otherwise look like an empty result)."""
        if self._client is None:
            from ..api import TracetagClient
            from ..errors import StoreMissing

            path = self.store_file()
            if not self.creates and not path.exists():
                raise StoreMissing(path)
            self._client = TracetagClient(path)
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
    _show_warnings()


class _StderrWarnings(logging.Handler):
    """The library's warnings (a postponed compaction, say) as one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        from .render import visible

        sys.stderr.write(f"tracetag: warning: {visible(record.getMessage())}\n")


def _show_warnings() -> None:
    log = logging.getLogger("tracetag")
    if not any(isinstance(h, _StderrWarnings) for h in log.handlers):
        log.addHandler(_StderrWarnings(logging.WARNING))


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


# One set of format names: every listing takes table (the default on a terminal), tsv (the
# default in a pipe), csv, json and jsonl; search adds ids; show draws a table/tree or JSON;
# reports of what a command did are text or json.
LISTING = ("table", "tsv", "csv", "json", "jsonl")
SearchOutput = Annotated[str | None, _output(*LISTING, "ids")]
ShowOutput = Annotated[str | None, _output("table", "json", "tree")]
TextOutput = Annotated[str | None, _output("text", "json")]
RowsOutput = Annotated[str | None, _output(*LISTING)]
NoHeaderOpt = Annotated[
    bool, typer.Option("--no-header", help="tsv and csv: leave out the header line.")
]


SORTS = ("count", "errors", "error_rate", "mean", "p50", "p95", "p99", "max", "group")


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
        int | None,
        typer.Option(
            "--max-results",
            "-n",
            metavar="N",
            min=1,
            help="Traces per page (default: 100 on a terminal; every match with -o ids or "
            "in a pipe, so a pipeline never stops at a page).",
            show_default=False,
        ),
    ] = None,
    all_results: Annotated[
        bool, typer.Option("--all", "-a", help="Every match, no paging.")
    ] = False,
    experiment_id: ExpOpt = None,
    page_token: Annotated[
        str | None,
        typer.Option("--page-token", metavar="TOKEN", help="Token printed by the previous page."),
    ] = None,
    output: SearchOutput = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="COLS",
            help="Columns for table/tsv/csv, comma-separated: trace_id, time, name, status, "
            "duration, tags, or tags.KEY / metadata.KEY in a column of its own.",
            show_default=False,
        ),
    ] = None,
    no_header: NoHeaderOpt = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print the parsed filter and order; do not search.")
    ] = False,
) -> None:
    """Search traces with a filter, ordering and paging.

    \b
    Example: tracetag search -f "execution_time_ms > 5s" --order-by "execution_time_ms DESC"
    """
    st = _state(ctx)
    render = _render()
    if explain:
        from ..filters import parse_filter
        from ..query import parse_order_by

        render.explain(parse_filter(filter_string), parse_order_by(order_by))
        return
    from ..filters import parse_filter

    parse_filter(filter_string)  # a wrong filter is reported before anything about the store
    cols = render.parse_columns(columns)
    fmt = output or render.default_format()
    if max_results is None and not all_results and fmt == "table":
        max_results = 100  # a screenful for a person; pipes and -o ids get every match
    page = st.client.search_page(
        experiment_id,
        filter_string,
        None if all_results else max_results,
        order_by,
        page_token,
    )
    if fmt == "table" and len(page) > render.MAX_TABLE_ROWS:
        raise InvalidInput(
            f"{len(page)} traces are too many for a table; use -o tsv, -o jsonl or -n N"
        )
    render.traces(page, fmt, color=st.color, columns=cols, header=not no_header)


@app.command()
def show(
    ctx: typer.Context,
    trace_id: Annotated[
        str, typer.Argument(help="Trace id.", metavar="TRACE_ID", autocompletion=complete_trace_ids)
    ],
    output: ShowOutput = None,
) -> None:
    """Show a trace: info, tags, metadata and the span tree.

    \b
    Example: tracetag show tr-6663f3d7173cfa73b65948ca5fbc00b3 --output json
    """
    st = _state(ctx)
    trace = st.client.get_trace(trace_id)
    _render().trace_detail(trace, "json" if output == "json" else "table", color=st.color)


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

    \b
    Example: tracetag import traces.jsonl
    """
    st = _state(ctx)
    st.creates = True
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

    \b
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
    \b
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
            if sys.stdin.isatty() and sys.stderr.isatty():
                typer.echo("nothing deleted", err=True)  # declining is an answer, not an error
                return
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
    """Ids from the arguments, ``-`` reading stdin: ids separated by any white space, or the
    first column of tab-separated rows (what ``search`` prints in a pipe; its header row is
    skipped)."""
    ids: list[str] = []
    for a in args:
        if a != "-":
            ids.append(a)
            continue
        for line in sys.stdin:
            if "\t" in line:
                first = line.split("\t", 1)[0].strip()
                if first and first != "trace_id":
                    ids.append(first)
            else:
                ids.extend(line.split())
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
    with st.client.snapshot() as snap:
        tags = snap.require(trace_id)["tags"]
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
    from ..analytics import tag_keys

    st = _state(ctx)
    with st.client.snapshot() as snap:
        rows = tag_keys(snap, filter_string, experiment_id)
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
    from ..analytics import tag_values

    st = _state(ctx)
    with st.client.snapshot() as snap:
        rows = tag_values(snap, key, filter_string, experiment_id)
    render = _render()
    fmt = output or render.default_format()
    render.rows(rows, ["value", "traces"], fmt, st.color, header=not no_header)


# ---------------------------------------------------------------------------------------------
# stats / lint


@app.command()
def stats(
    ctx: typer.Context,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            "-g",
            metavar="KEY",
            help="tags.KEY, metadata.KEY, status, name or another attribute (repeatable; "
            "none: one row for all traces).",
            autocompletion=complete_fields,
            show_default=False,
        ),
    ] = None,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            metavar="COLUMN",
            help="count, errors, error_rate, mean, p50, p95, p99, max or group.",
            callback=_choice(SORTS),
        ),
    ] = "count",
    output: RowsOutput = None,
    no_header: NoHeaderOpt = False,
) -> None:
    """Count, error rate and execution time (mean, p50, p95, p99, max) per group.

    Percentiles are nearest-rank. Traces lacking a key form the (none) group.

    \b
    Example: tracetag stats --group-by tags.model_version -f "tags.environment = 'production'"
    """
    from ..analytics import group_stats

    st = _state(ctx)
    with st.client.snapshot() as snap:
        result = group_stats(snap, group_by or [], filter_string, experiment_id, sort)
    render = _render()
    render.stats(result, output or render.default_format(), st.color, header=not no_header)


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
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            metavar="RULE",
            help="Only this rule (repeatable): what is reported and what --fix changes.",
            show_default=False,
        ),
    ] = None,
    disable: Annotated[
        list[str] | None,
        typer.Option(
            "--disable", metavar="RULE", help="Skip this rule (repeatable).", show_default=False
        ),
    ] = None,
    output: RowsOutput = None,
) -> None:
    """Check tag keys and values against the naming guidelines; exit 1 on findings.

    --fix renames keys and rewrites values in one write; it never guesses a unit and never
    overwrites a different value (such renames are reported, and the exit code is 1).

    \b
    Example: tracetag lint --fix --rule inconsistent-value --dry-run
    """
    from ..lint import check_rules, fix_findings, lint_store, load_config

    st = _state(ctx)
    cfg = load_config(config)
    cfg.disable |= set(check_rules(disable or []))
    with st.client.snapshot() as snap:
        findings = lint_store(snap, cfg, filter_string, experiment_id)
    if rule:
        wanted = set(check_rules(rule))
        findings = [f for f in findings if f.rule in wanted]
    render = _render()
    render.lint_findings(findings, output or render.default_format(), st.color)
    if fix and findings:
        report = fix_findings(
            st.client, findings, cfg, filter_string, experiment_id, dry_run=dry_run
        )
        render.tag_report(report, "text", color=st.color, show_changes=True)
        if not report.ok:
            raise typer.Exit(1)
        if not dry_run:
            return
    if findings:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# experiments / store / demo / completion


@exp_app.command("list")
def experiments_list(
    ctx: typer.Context, output: RowsOutput = None, no_header: NoHeaderOpt = False
) -> None:
    """List experiments with their trace counts.

    \b
    Example: tracetag experiments list
    """
    st = _state(ctx)
    rows = st.client.list_experiments()
    render = _render()
    cols = ["experiment_id", "name", "traces"]
    render.rows(rows, cols, output or render.default_format(), st.color, header=not no_header)


@exp_app.command("create")
def experiments_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Experiment name.", metavar="NAME")],
) -> None:
    """Create an experiment (or print the id of the one with that name).

    \b
    Example: tracetag experiments create chatbot-prod
    """
    st = _state(ctx)
    st.creates = True
    print(st.client.create_experiment(name))


@store_app.command("info")
def store_info(ctx: typer.Context, output: TextOutput = None) -> None:
    """Where the store is and how big it is.

    \b
    Example: tracetag store info
    """
    from ..store.maintenance import info

    _render().mapping(info(_state(ctx).client.store), output or "text")


@store_app.command("check")
def store_check(ctx: typer.Context, output: TextOutput = None) -> None:
    """Check every file of the store; exit 3 if something is damaged.

    \b
    Example: tracetag store check
    """
    from ..store.maintenance import check

    st = _state(ctx)
    st.creates = True  # checking a store that does not exist yet says so, it is no error
    report = check(st.client.store)
    _render().check_report(report, output or "text")
    if not report.ok:
        raise typer.Exit(3)


@store_app.command("repair")
def store_repair(ctx: typer.Context) -> None:
    """Rebuild a damaged store from what is readable, after backing up every file.

    \b
    Example: tracetag store repair
    """
    from ..store.maintenance import repair

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

    \b
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

    \b
    Example: tracetag demo --traces 500 && tracetag stats --group-by tags.model_version
    """
    from ..demo import record_demo

    st = _state(ctx)
    st.creates = True
    n, experiment = record_demo(st.client, traces, seed)
    typer.echo(
        f"recorded {n} traces into experiment {experiment['experiment_id']} "
        f"({experiment['name']}) in {st.client.store.path}",
        err=True,
    )


@app.command("help")
def help_(
    ctx: typer.Context,
    topic: Annotated[
        str | None,
        typer.Argument(help="filters or formats.", metavar="TOPIC", show_default=False),
    ] = None,
) -> None:
    """Reference pages: the filter language, the output formats.

    \b
    Example: tracetag help filters
    """
    from .topics import TOPICS

    if topic is None:
        typer.echo(ctx.find_root().get_help())
        typer.echo("\nTopics: " + ", ".join(f"tracetag help {t}" for t in TOPICS))
        return
    if topic not in TOPICS:
        raise InvalidInput(f"no help topic {topic!r}; topics: {', '.join(TOPICS)}")
    sys.stdout.write(TOPICS[topic])


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

    \b
    Example: tracetag completion bash > ~/.local/share/bash-completion/completions/tracetag
    """
    from .complete import script

    sys.stdout.write(script(shell))


def main() -> None:
    # A command lives for a moment and makes no garbage cycles worth collecting; without the
    # cyclic collector, holding 100,000 search results is 2-3x faster.
    gc.disable()
    app(prog_name="tracetag")
