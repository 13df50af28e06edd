"""The ``tracetag`` application: its groups, its one-line errors, the state a command gets, and
the options several commands share. The commands live in ``traces``, ``tagging`` and ``admin``.

Each command parses arguments, makes one library call, renders.

Exit codes: 0 success; 1 not found or partly failed (unknown ids, lint findings); 2 bad input
(usage, filter, tag); 3 the store is unusable (not a store, damaged, locked). Errors are one
line on stderr (a filter error adds the filter and a caret), never a traceback.
Heavy modules (rich, lark, the store) are imported inside the commands that use them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .._version import __version__
from ..errors import FilterSyntaxError, StoreError, TracetagError
from ..formats import LABEL_MODES
from .convert import plain_conversion

__all__ = ["app"]


def _no_python_types() -> None:
    """Help shows our metavars (TRACE_ID, KEY=VALUE), not Python types (``<str>``,
    ``<list[str]>``), which mean nothing to a person at a terminal."""
    from typer import core

    original = core._TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> Any:
        return None if self.metavar is not None else original(self, ctx)

    core._TyperParameter.display_type = display_type  # type: ignore[method-assign]


_no_python_types()
plain_conversion()


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
            store = str(_state(ctx).store_file() or "") if ctx.obj else ""
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
    def __init__(self, store: str | None, color: bool):
        self.store_path = store or None
        self.color = color
        self.creates = False  # set by the commands that may create the store
        self._client: Any = None

    def is_database(self) -> bool:
        from ..backend import backend_kind

        return backend_kind(self.store_path) != "local"

    def store_file(self) -> Path | None:
        """The local store's file (None for a database)."""
        if self.is_database():
            return None
        from ..store import resolve_store_path

        return resolve_store_path(self.store_path)

    @property
    def client(self) -> Any:
        """The store's client; reading a store that does not exist is an error (a mistyped
        --store would otherwise look like an empty result)."""
        if self._client is None:
            from ..api import TracetagClient
            from ..errors import StoreMissing
            from ..runtime import chosen_store

            path = self.store_file()
            if path is None:
                self._client = TracetagClient(chosen_store(self.store_path))
                return self._client
            if not self.creates and not path.exists():
                raise StoreMissing(path)
            self._client = TracetagClient(path)
        return self._client


def long_lived() -> None:
    """For a command that runs until stopped (a server, the UI): its garbage cycles must be
    collected (``main`` turns the collector off, for commands that live a moment); but a
    request or a page makes thousands of short-lived objects, and with the default threshold
    the collector would scan the heap many times over. What exists at start never becomes
    garbage."""
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    gc.enable()


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
        str | None,
        typer.Option(
            "--store",
            metavar="PATH|URL",
            envvar="TRACETAG_STORE",
            help="Store file, a postgresql://user@host/db URL or an MLflow server's "
            "http(s)://host:port (default: $TRACETAG_STORE, then $MLFLOW_TRACKING_URI if it is "
            "http, else a file in the per-user data folder).",
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


LabelsOpt = Annotated[
    str,
    typer.Option(
        "--labels",
        metavar="MODE",
        help="OTLP label lists (langfuse.trace.tags, tag.tags): tag (LABEL=true), joined "
        "(labels=a,b) or ignore.",
        callback=_choice(LABEL_MODES),
    ),
]


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


# The same lists as analytics.SORTS and the completion scripts' shells (a test holds them
# equal): the CLI defines them here so that starting it imports no analytics code.
SORTS = ("count", "errors", "error_rate", "mean", "p50", "p95", "p99", "max", "group")
SHELLS = ("bash", "zsh", "fish")


def _render() -> Any:
    from . import render

    return render


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
