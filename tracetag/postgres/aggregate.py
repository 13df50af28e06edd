"""Aggregates computed by the database (``GROUP BY``, ``percentile_disc``) instead of pulling
every row: ``stats``, ``tags keys``, ``tags values`` and the experiment list. Each answers
exactly what :mod:`tracetag.analytics` computes from documents, or returns None (a span field,
a filter SQL cannot decide exactly) and the caller falls back to reading documents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .sql import _Compiler, compile_sql

if TYPE_CHECKING:
    from ..filters import ast as A
    from .view import PgView

__all__ = ["group_rows", "tag_key_rows", "tag_value_rows", "trace_counts"]

from ..grouping import NONE_GROUP


def _where(node: A.Node | None, now: int, experiment_ids: Iterable[str] | None) -> Any:
    """(WHERE text, parameters), or None when the filter is not exact in SQL."""
    compiled = compile_sql(node, now)
    if not compiled.exact:
        return None
    sql, params = compiled.sql, list(compiled.params)
    if experiment_ids is not None:
        sql += " AND experiment_id = ANY(%s::text[])"
        params.append(sorted(str(e) for e in experiment_ids))
    return sql, params


def group_rows(
    view: PgView,
    fields: list[A.Field],
    node: A.Node | None,
    now: int,
    experiment_ids: Iterable[str] | None,
) -> list[dict[str, Any]] | None:
    """Per group: count, errors, error rate, mean and nearest-rank percentiles of
    ``execution_time_ms`` (percentile_disc is nearest-rank: the first value whose cumulative
    share reaches p)."""
    where = _where(node, now, experiment_ids)
    if where is None or any(f.kind == "span" for f in fields):
        return None
    c = _Compiler(now)
    exprs = []
    for f in fields:
        text = c.text_of(f)
        if text is None:
            return None
        exprs.append(f"COALESCE({text}, {c.bind(NONE_GROUP)})")
    keys = ", ".join(f"{e} AS g{i}" for i, e in enumerate(exprs))
    d = "execution_time_ms"
    pct = "percentile_disc({}) WITHIN GROUP (ORDER BY execution_time_ms)"
    sql = (
        f"SELECT {keys}, count(*), count(*) FILTER (WHERE status = 'ERROR'), "
        f"sum({d})::float8 / nullif(count({d}), 0), "
        f"{pct.format(0.5)}, {pct.format(0.95)}, {pct.format(0.99)}, max({d}) "
        f"FROM tracetag_traces WHERE {where[0]} "
        f"GROUP BY {', '.join(f'g{i}' for i in range(len(exprs)))}"
    )
    rows = []
    n = len(exprs)
    for r in view.conn.execute(sql, [*c.params, *where[1]]):
        count, errors = r[n], r[n + 1]
        rows.append(
            {
                "group": list(r[:n]),
                "count": count,
                "errors": errors,
                "error_rate": errors / count,
                "mean_ms": r[n + 2],
                "p50_ms": r[n + 3],
                "p95_ms": r[n + 4],
                "p99_ms": r[n + 5],
                "max_ms": r[n + 6],
            }
        )
    return rows


def tag_key_rows(
    view: PgView, node: A.Node | None, now: int, experiment_ids: Iterable[str] | None
) -> list[tuple[str, int, int]] | None:
    """(key, traces carrying it, distinct values) for every tag key."""
    where = _where(node, now, experiment_ids)
    if where is None:
        return None
    sql = (
        "SELECT e.key, count(*), count(DISTINCT e.value) FROM tracetag_traces, "
        f"jsonb_each_text(tags) AS e WHERE {where[0]} GROUP BY e.key"
    )
    return [(k, n, v) for k, n, v in view.conn.execute(sql, where[1])]


def tag_value_rows(
    view: PgView, key: str, node: A.Node | None, now: int, experiment_ids: Iterable[str] | None
) -> list[tuple[str, int]] | None:
    """(value, traces) for each value of tag ``key``."""
    where = _where(node, now, experiment_ids)
    if where is None:
        return None
    sql = (
        "SELECT tags ->> %s AS v, count(*) FROM tracetag_traces "
        f"WHERE tags ? %s AND {where[0]} GROUP BY v"
    )
    return [(v, n) for v, n in view.conn.execute(sql, [key, key, *where[1]])]


def trace_counts(view: PgView) -> dict[str, int]:
    """Traces per experiment."""
    rows = view.conn.execute(
        "SELECT experiment_id, count(*) FROM tracetag_traces GROUP BY experiment_id"
    )
    return {e: n for e, n in rows}
