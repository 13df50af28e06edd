"""Commands for analysis and upkeep: stats, lint, experiments, store, demo, help, completion."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidInput
from .app import (
    SHELLS,
    SORTS,
    ExpOpt,
    FilterOpt,
    NoHeaderOpt,
    RowsOutput,
    TextOutput,
    _choice,
    _render,
    _state,
    app,
    complete_fields,
    exp_app,
    store_app,
)

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
    st = _state(ctx)
    result = st.client.stats(group_by or [], filter_string, experiment_id, sort)
    render = _render()
    render.stats(result, output or render.default_format(), st.color, header=not no_header)


FixOpt = Annotated[
    bool, typer.Option("--fix", help="Rename keys and normalise values (one write).")
]
FixDryRunOpt = Annotated[bool, typer.Option("--dry-run", help="With --fix: show the changes only.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="tracetag.toml or pyproject.toml with [tool.tracetag.lint].",
    ),
]
RuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rule",
        metavar="RULE",
        help="Only this rule (repeatable): what is reported and what --fix changes.",
        show_default=False,
    ),
]
DisableOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--disable", metavar="RULE", help="Skip this rule (repeatable).", show_default=False
    ),
]


@app.command()
def lint(
    ctx: typer.Context,
    filter_string: FilterOpt = None,
    experiment_id: ExpOpt = None,
    fix: FixOpt = False,
    dry_run: FixDryRunOpt = False,
    config: ConfigOpt = None,
    rule: RuleOpt = None,
    disable: DisableOpt = None,
    output: RowsOutput = None,
) -> None:
    """Check tag keys and values against the naming guidelines; exit 1 on findings.

    --fix renames keys and rewrites values in one write; it never guesses a unit and never
    overwrites a different value (such renames are reported, and the exit code is 1).

    \b
    Example: tracetag lint --fix --rule inconsistent-value --dry-run
    """
    from ..lint import check_rules, load_config

    st = _state(ctx)
    cfg = load_config(config)
    cfg.disable |= set(check_rules(disable or []))
    findings = st.client.lint(cfg, filter_string, experiment_id)
    if rule:
        wanted = set(check_rules(rule))
        findings = [f for f in findings if f.rule in wanted]
    render = _render()
    render.lint_findings(findings, output or render.default_format(), st.color)
    if fix and findings:
        report = st.client.fix_lint(findings, cfg, filter_string, experiment_id, dry_run=dry_run)
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
    _render().mapping(_state(ctx).client.info(), output or "text")


@store_app.command("check")
def store_check(ctx: typer.Context, output: TextOutput = None) -> None:
    """Check every file of the store; exit 3 if something is damaged.

    \b
    Example: tracetag store check
    """
    st = _state(ctx)
    st.creates = True  # checking a store that does not exist yet says so, it is no error
    report = st.client.check()
    _render().check_report(report, output or "text")
    if not report.ok:
        raise typer.Exit(3)


@store_app.command("copy")
def store_copy(
    source: Annotated[str, typer.Argument(help="Store to copy from.", metavar="SRC")],
    target: Annotated[str, typer.Argument(help="Store to copy into.", metavar="DST")],
    filter_string: FilterOpt = None,
    experiment_ids: Annotated[
        list[str] | None,
        typer.Option("--experiment-id", "-x", metavar="ID", help="Experiment id in SRC."),
    ] = None,
    output: TextOutput = None,
) -> None:
    """Copy traces (info, tags, metadata, spans) from one store to another.

    Either store may be a file, a postgresql:// URL or an MLflow server's http(s):// URL.
    Traces already in DST are updated, never duplicated, so running a copy again is safe.

    \b
    Example: tracetag store copy traces.json postgresql://me@db.internal/traces
    """
    from ..api import TracetagClient

    src = TracetagClient(_existing(source))
    dst = TracetagClient(target)
    with _render().progress("copying traces") as bar:
        total = src.info()["traces"] if bar is not None else 0
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if bar is not None:
                bar(done, total)

        summary = src.copy_into(dst, filter_string, experiment_ids, progress=progress)
    _render().import_summary(summary, output or "text", verb="copied")


def _existing(location: str) -> str:
    """A source store must exist: a mistyped path would otherwise copy nothing, quietly."""
    from ..backend import backend_kind
    from ..errors import StoreMissing
    from ..store import resolve_store_path

    if backend_kind(location) == "local" and not resolve_store_path(location).exists():
        raise StoreMissing(location)
    return location


@store_app.command("migrate")
def store_migrate(ctx: typer.Context) -> None:
    """Bring a database's schema up to this version of tracetag (also done on first use).

    \b
    Example: tracetag --store postgresql://me@db/traces store migrate
    """
    st = _state(ctx)
    st.creates = True
    applied = st.client.migrate()
    typer.echo(f"applied {', '.join(applied)}" if applied else "schema is up to date")


@store_app.command("repair")
def store_repair(ctx: typer.Context) -> None:
    """Rebuild a damaged store from what is readable, after backing up every file.

    \b
    Example: tracetag store repair
    """
    result = _state(ctx).client.repair()
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
    result = _state(ctx).client.compact(vacuum=vacuum)
    if "analyzed" in result:  # a database: it keeps its own files tidy
        typer.echo(f"analyzed; {result['records']} old deletion markers pruned")
        return
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
        typer.Argument(help="bash, zsh or fish.", metavar="SHELL", callback=_choice(SHELLS)),
    ],
) -> None:
    """Print the shell completion script (the files in completions/ are this output).

    \b
    Example: tracetag completion bash > ~/.local/share/bash-completion/completions/tracetag
    """
    from .complete import script

    sys.stdout.write(script(shell))
