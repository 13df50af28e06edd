"""A read view of a PostgreSQL store: one connection in a ``REPEATABLE READ`` transaction, so it
sees one committed state of the database, whatever writers do meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import TraceNotFound
from ..filters.ast import has_span_conditions
from . import aggregate
from .sql import compile_sql, order_sql

if TYPE_CHECKING:
    from . import PgStore

__all__ = ["COLUMNS", "PgView", "doc_of", "spans_of"]

COLUMNS = (
    "trace_id, experiment_id, name, timestamp_ms, execution_time_ms, status, tags::text, "
    "metadata::text, request_preview, response_preview, client_request_id"
)
_FETCH = 2000  # rows per round trip of a server-side cursor


def doc_of(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ``COLUMNS`` as the info document (``TraceInfo.to_dict``'s keys and order)."""
    loads = orjson.loads
    return {
        "trace_id": row[0],
        "experiment_id": row[1],
        "name": row[2],
        "timestamp_ms": row[3],
        "execution_time_ms": row[4],
        "status": row[5],
        "tags": loads(row[6]),
        "metadata": loads(row[7]),
        "request_preview": row[8],
        "response_preview": row[9],
        "client_request_id": row[10],
    }


class PgView:
    """What one moment of the database holds. ``seq`` is the last write it includes."""

    def __init__(self, store: PgStore, conn: Any, *, own: bool = True):
        self.store = store
        self.conn = conn
        self._own = own  # a view inside a write transaction borrows that transaction
        self._cursors = 0
        self._row_spans: tuple[str | None, str | None] = (None, None)
        if own:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.seq: int = conn.execute("SELECT seq FROM tracetag_state").fetchone()[0]

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        if self._own:
            self.store.release(conn, rollback=True)

    def __enter__(self) -> PgView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of a query through a server-side cursor: a million matches are never all in
        memory at once."""
        self._cursors += 1
        with self.conn.cursor(name=f"tracetag_{self._cursors}") as cur:
            cur.itersize = _FETCH
            cur.execute(sql, list(params))
            yield from cur

    # -- ReadView ----------------------------------------------------------------------------

    def select_raw(
        self,
        predicate: Callable[[dict[str, Any]], bool | None],
        required: list[bytes] | None = None,
        experiment_ids: set[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        node: Any = None,
        now: int | None = None,
        order: list[Any] | None = None,
        limit: int | None = None,
        after: tuple[Any, ...] | None = None,
        fields: tuple[str, ...] | None = None,
    ) -> Iterator[tuple[dict[str, Any], bytes | None]]:
        """The matches of ``predicate``. With ``node`` (the filter it was compiled from) the
        database selects them (or a superset, which the predicate cuts down); with ``order``
        and ``limit`` they come in that order and stop after ``limit`` matches past ``after``."""
        where = compile_sql(node, now or 0) if node is not None else None
        sql, params, ordered = _query(where, experiment_ids, order, limit, after)
        # Span conditions: each trace's spans come in the same row, for the SQL's word test
        # and the predicate (no query per trace).
        with_spans = node is not None and has_span_conditions(node)
        if with_spans:
            sql = sql.replace(
                "FROM tracetag_traces",
                ", sp.spans FROM tracetag_traces LEFT JOIN tracetag_spans sp USING (trace_id)",
                1,
            )
        # A tag plan over rows the SQL selects exactly reads their ids and tags only (a
        # hundred thousand rows of every column cost it a second).
        light = fields == ("tags",) and not with_spans and (where is None or where.exact)
        if light:
            sql = sql.replace(f"SELECT {COLUMNS} ", "SELECT trace_id, tags::text ", 1)
        found = 0
        total = 0
        if progress is not None:
            total = self.conn.execute("SELECT count(*) FROM tracetag_traces").fetchone()[0]
            progress(0, total)
        for n, row in enumerate(self._rows(sql, params), 1):
            if progress is not None and n % 1000 == 0:
                progress(n, total)
            doc = {"trace_id": row[0], "tags": orjson.loads(row[1])} if light else doc_of(row)
            if with_spans:
                self._row_spans = (doc["trace_id"], row[-1])
            # Where the SQL is exact it has decided already; elsewhere the predicate judges.
            if (where is not None and where.exact) or predicate(doc) is True:
                yield doc, None
                found += 1
                if ordered and found >= (limit or 0):
                    return

    def iter_docs(self) -> Iterator[dict[str, Any]]:
        for row in self._rows(f"SELECT {COLUMNS} FROM tracetag_traces"):
            yield doc_of(row)

    def get(self, trace_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {COLUMNS} FROM tracetag_traces WHERE trace_id = %s", (trace_id,)
        ).fetchone()
        return None if row is None else doc_of(row)

    def get_many(self, trace_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(trace_ids))
        rows = self._rows(
            f"SELECT {COLUMNS} FROM tracetag_traces WHERE trace_id = ANY(%s::text[])", [ids]
        )
        return {row[0]: doc_of(row) for row in rows}

    def require(self, trace_id: str) -> dict[str, Any]:
        doc = self.get(trace_id)
        if doc is None:
            raise TraceNotFound(trace_id)
        return doc

    def experiments(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT experiment_id, name, creation_time_ms FROM tracetag_experiments"
        ).fetchall()
        exps = [{"experiment_id": e, "name": n, "creation_time_ms": t} for e, n, t in rows]
        return sorted(exps, key=lambda e: (len(e["experiment_id"]), e["experiment_id"]))

    def spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        tid, text = self._row_spans
        if tid == doc["trace_id"]:  # read with the row a filter is looking at
            return [] if text is None else list(orjson.loads(text))
        return spans_of(self.conn, doc["trace_id"])

    # -- what the database computes itself (tracetag.analytics asks for these) ------------------

    def group_rows(self, *args: Any) -> list[dict[str, Any]] | None:
        return aggregate.group_rows(self, *args)

    def tag_key_rows(self, *args: Any) -> list[tuple[str, int, int]] | None:
        return aggregate.tag_key_rows(self, *args)

    def tag_value_rows(self, *args: Any) -> list[tuple[str, int]] | None:
        return aggregate.tag_value_rows(self, *args)

    def trace_counts(self) -> dict[str, int]:
        return aggregate.trace_counts(self)

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        rows = self.conn.execute(
            'SELECT trace_id FROM tracetag_traces WHERE trace_id COLLATE "C" >= %s '
            'AND starts_with(trace_id, %s) ORDER BY trace_id COLLATE "C" LIMIT %s',
            (prefix, prefix, limit),
        )
        return [r[0] for r in rows]

    def recent_tag_keys(self, traces: int) -> list[str]:
        """The tag keys of the ``traces`` most recent traces."""
        rows = self.conn.execute(
            "SELECT DISTINCT jsonb_object_keys(tags) FROM (SELECT tags FROM tracetag_traces "
            "ORDER BY timestamp_ms DESC LIMIT %s) AS recent",
            (traces,),
        )
        return [r[0] for r in rows]


def spans_of(conn: Any, trace_id: str) -> list[dict[str, Any]]:
    """A trace's spans (none when it has no spans row)."""
    row = conn.execute("SELECT spans FROM tracetag_spans WHERE trace_id = %s", (trace_id,))
    found = row.fetchone()
    return [] if found is None else list(orjson.loads(found[0]))


def _query(
    where: Any,
    experiment_ids: set[str] | None,
    order: list[Any] | None,
    limit: int | None,
    after: tuple[Any, ...] | None,
) -> tuple[str, list[Any], bool]:
    """(SQL, parameters, whether it is in ``order``) selecting the rows of a search: the
    compiled filter, the experiments, and with an order and a limit the keyset position,
    ORDER BY and (when the filter is exact, so every row is a match) LIMIT."""
    parts = [where.sql] if where else []
    params: list[Any] = list(where.params) if where else []
    if experiment_ids is not None:
        parts.append("experiment_id = ANY(%s::text[])")
        params.append(sorted(experiment_ids))
    ordered = order_sql(order) if order and limit is not None else None
    suffix = ""
    if ordered is not None:
        exprs, key_params = ordered
        if after is not None:
            cond, cond_params = _after(exprs, key_params, order or [], after)
            parts.append(cond)
            params += cond_params
        suffix = " ORDER BY " + ", ".join(
            f"{e} {'DESC' if k.desc else 'ASC'} NULLS LAST"
            for e, k in zip(exprs, order or [], strict=True)
        )
        params += key_params
        if where is None or where.exact:
            suffix += f" LIMIT {int(limit or 0)}"
    sql = f"SELECT {COLUMNS} FROM tracetag_traces"
    if parts:
        sql += " WHERE " + " AND ".join(parts)
    return sql + suffix, params, ordered is not None


def _after(
    exprs: list[str], key_params: list[Any], keys: list[Any], after: tuple[Any, ...]
) -> tuple[str, list[Any]]:
    """Rows strictly after the sort key ``after`` in the order of ``keys`` (absent values
    last in both directions), as the expanded form of a row comparison."""
    # Each expression may hold parameters (a tag key): split them out per expression.
    per_expr: list[list[Any]] = []
    i = 0
    for e in exprs:
        n = e.count("%s")
        per_expr.append(key_params[i : i + n])
        i += n
    ors: list[str] = []
    params: list[Any] = []
    for pos in range(len(exprs)):
        ands: list[str] = []
        p: list[Any] = []
        for j in range(pos):  # equal on every earlier key
            if after[j] is None:
                ands.append(f"{exprs[j]} IS NULL")
                p += per_expr[j]
            else:
                ands.append(f"{exprs[j]} = %s")
                p += [*per_expr[j], after[j]]
        value, desc = after[pos], keys[pos].desc
        if value is None:
            continue  # nothing sorts after an absent value on this key
        op = "<" if desc else ">"
        ands.append(f"({exprs[pos]} {op} %s OR {exprs[pos]} IS NULL)")
        p += [*per_expr[pos], value, *per_expr[pos]]
        ors.append("(" + " AND ".join(ands) + ")")
        params += p
    return ("(" + " OR ".join(ors) + ")" if ors else "FALSE"), params
