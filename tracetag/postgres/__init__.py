"""PostgreSQL as a tracetag backend: ``--store postgresql://user@host/db``.

Several machines record, search and tag in one database; tracetag needs no server of its own.
Every write is one transaction that first takes the write sequence (``tracetag_state``, a row
lock): writers are serialised for the time of their statements, and each row they touch carries
the sequence number, so a batch planned on an older view asks exactly which traces changed
since (as the local store's journal answers it). Filters are compiled to SQL
(:mod:`tracetag.postgres.sql`); the schema and its migrations are in
:mod:`tracetag.postgres.schema`. Requires the ``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..errors import StoreError
from ..locations import is_postgres_url, safe_url
from ..schema import check_trace, encode_spans, next_experiment_id
from .schema import MIGRATIONS, migrate
from .view import PgView, spans_of

if TYPE_CHECKING:
    from ..backend import Merge

__all__ = ["PgStore", "is_postgres_url", "safe_url"]


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A connection inherited from the parent is the parent's session: closing it here (the
    # garbage collector will) would end that session for the parent. Point the child's copy
    # of each socket at /dev/null first, so the goodbye goes nowhere.
    devnull = os.open(os.devnull, os.O_RDWR)
    for conn in list(_LIVE):
        with contextlib.suppress(Exception):
            os.dup2(devnull, conn.pgconn.socket)
    os.close(devnull)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PgStore:
    """A trace store in a PostgreSQL database (see :mod:`tracetag.backend`)."""

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "PostgreSQL stores need psycopg: pip install 'tracetag[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.path = safe_url(url)
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._checked = False
        self._applied: list[str] = []  # migrations this object applied on first use
        self.writes = 0  # transactions committed through this object (tests count them)

    def __repr__(self) -> str:
        return f"PgStore({self.path!r})"

    def close(self) -> None:
        """Close the idle connections (a view or write in progress keeps its own)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> Any:
        psycopg = self._psycopg
        dsn = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise StoreError(f"{self.path}: cannot connect: {_reason(e, self.url)}") from None
        except psycopg.ProgrammingError as e:  # a malformed URL
            raise StoreError(f"{self.path}: not a PostgreSQL URL: {_reason(e, self.url)}") from None
        _LIVE.add(conn)
        if not self._checked:
            self._check_schema(conn)
        return conn

    def _check_schema(self, conn: Any) -> None:
        """Migrations are applied on first use (a newer schema is refused by ``migrate``)."""
        self._applied += migrate(conn, self.path)
        self._checked = True

    def acquire(self) -> Any:
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours
            self._idle, self._pid = [], os.getpid()
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        return self._connect()

    def release(self, conn: Any, rollback: bool = False) -> None:
        if conn.closed or os.getpid() != self._pid:
            return
        try:
            if rollback or conn.info.transaction_status != 0:  # 0: idle, no transaction
                conn.rollback()
        except self._psycopg.Error:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self.acquire()
        try:
            yield conn
        except self._psycopg.Error as e:
            # Whatever the database refused (a lost connection, a constraint): one line naming
            # the store, never a driver traceback; a broken connection is not reused.
            if isinstance(e, self._psycopg.OperationalError):
                conn.close()
            raise StoreError(f"{self.path}: {_reason(e, self.url)}") from None
        finally:
            self.release(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[Any, int]]:
        """A write transaction holding the write sequence: (connection, this write's number)."""
        with self._connection() as conn, conn.transaction():
            seq = conn.execute(
                "UPDATE tracetag_state SET seq = seq + 1 WHERE id = 1 RETURNING seq"
            ).fetchone()[0]
            yield conn, seq
        self.writes += 1

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> PgView:
        conn = self.acquire()
        try:
            return PgView(self, conn)
        except self._psycopg.Error as e:
            self.release(conn, rollback=True)
            raise StoreError(f"{self.path}: {_reason(e, self.url)}") from None

    def read_spans(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        with self._connection() as conn:
            return spans_of(conn, doc["trace_id"])

    # -- writing -----------------------------------------------------------------------------

    def apply(self, conn: Any, seq: int, record: dict[str, Any]) -> None:
        """One write record (docs/backends.md) as SQL, inside the caller's transaction."""
        op = record.get("op")
        if op == "batch":
            for sub in record["ops"]:
                self.apply(conn, seq, sub)
        elif op == "put":
            self._put(conn, seq, [(record["doc"], None)])
        elif op == "tag":
            conn.execute(
                "UPDATE tracetag_traces SET tags = (tags || %s::jsonb) - %s::text[], "
                "version = %s WHERE trace_id = ANY(%s::text[])",
                (
                    orjson.dumps(record.get("set") or {}).decode(),
                    list(record.get("del") or []),
                    seq,
                    list(record["ids"]),
                ),
            )
        elif op == "del":
            ids = list(record["ids"])
            conn.execute("DELETE FROM tracetag_traces WHERE trace_id = ANY(%s::text[])", (ids,))
            conn.execute("INSERT INTO tracetag_deleted SELECT unnest(%s::text[]), %s", (ids, seq))
        elif op == "exp":
            d = record["doc"]
            conn.execute(
                "INSERT INTO tracetag_experiments VALUES (%s, %s, %s) "
                "ON CONFLICT (experiment_id) DO NOTHING",
                (d["experiment_id"], d["name"], d.get("creation_time_ms") or 0),
            )
        else:
            raise ValueError(f"unknown operation {op!r}")

    def _put(
        self, conn: Any, seq: int, items: Sequence[tuple[dict[str, Any], bytes | None]]
    ) -> None:
        """Insert or replace traces (and their spans, given as JSON bytes): the ones already
        here are deleted first, then all are streamed in with COPY, a few round trips for a
        batch of thousands."""
        ids = [doc["trace_id"] for doc, _spans in items]
        keep_spans: dict[str, str | None] = {
            doc["trace_id"]: None for doc, spans in items if spans is None
        }
        if keep_spans:  # a put without spans keeps the spans stored before
            rows = conn.execute(
                "SELECT trace_id, spans FROM tracetag_spans WHERE trace_id = ANY(%s)",
                (list(keep_spans),),
            )
            keep_spans.update({tid: text for tid, text in rows})
        conn.execute("DELETE FROM tracetag_traces WHERE trace_id = ANY(%s::text[])", (ids,))
        cur = conn.cursor()
        with cur.copy(f"COPY tracetag_traces ({_TRACE_COLUMNS}) FROM STDIN") as copy:
            for doc, _spans in items:
                copy.write_row(_row(doc, seq))
        with cur.copy("COPY tracetag_spans (trace_id, spans) FROM STDIN") as copy:
            for doc, spans in items:
                tid = doc["trace_id"]
                text = spans.decode() if spans is not None else keep_spans.get(tid)
                if text is not None:
                    copy.write_row((tid, text))

    def put_traces(
        self,
        items: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        extra_ops: Iterable[dict[str, Any]] = (),
        *,
        count_replaced: bool = True,
        merge: Merge | None = None,
    ) -> tuple[int, int]:
        if not items and not extra_ops:
            return 0, 0
        for doc, spans in items:
            check_trace(doc, spans, encode=False)
        # Encoded once, before the write: the encoding is the check that spans are JSON.
        encoded = [(doc, encode_spans(doc["trace_id"], spans, False)) for doc, spans in items]
        replaced = 0
        with self._writing() as (conn, seq):
            for op in extra_ops:
                self.apply(conn, seq, op)
            if count_replaced and encoded:
                ids = [doc["trace_id"] for doc, _s in encoded]
                replaced = conn.execute(
                    "SELECT count(*) FROM tracetag_traces WHERE trace_id = ANY(%s::text[])",
                    (ids,),
                ).fetchone()[0]
            if merge is not None and encoded:
                encoded = self._merged(conn, encoded, merge)
            if encoded:
                self._put(conn, seq, encoded)
        return len(items) - replaced, replaced

    def _merged(
        self, conn: Any, encoded: list[tuple[dict[str, Any], bytes]], merge: Merge
    ) -> list[tuple[dict[str, Any], bytes]]:
        """``encoded`` with each trace already stored merged into (under the write sequence,
        so no other write comes between the read and the write)."""
        view = PgView(self, conn, own=False)
        found = view.get_many(doc["trace_id"] for doc, _b in encoded)
        out = []
        for doc, data in encoded:
            old = found.get(doc["trace_id"])
            if old is not None:
                new_doc, spans = merge(old, view.spans(old), doc, orjson.loads(data))
                check_trace(new_doc, spans, encode=False)
                doc, data = new_doc, encode_spans(doc["trace_id"], spans, False)
            out.append((doc, data))
        return out

    def write_planned(
        self,
        plan: Callable[[Any], Any],
        refresh: Callable[[Any, Any, set[str]], Any],
        record_of: Callable[[Any], dict[str, Any] | None],
        attempts: int = 3,
        progress: Callable[[int, int], None] | None = None,  # one write: nothing to report
    ) -> Any:
        """Plan on a view without blocking writers; under the write sequence, plan again the
        traces changed since that view, then apply the record."""
        with self.snapshot() as view:
            result = plan(view)
            since = view.seq
        record = record_of(result)
        if record is None and not _changed_any(self, since):
            return result
        with self._writing() as (conn, seq):
            changed: set[str] = set()
            if seq != since + 1:  # another write committed after the view: which traces?
                rows = conn.execute(
                    "SELECT trace_id FROM tracetag_traces WHERE version > %s "
                    "UNION SELECT trace_id FROM tracetag_deleted WHERE version > %s",
                    (since, since),
                )
                changed = {r[0] for r in rows}
            if changed:
                result = refresh(PgView(self, conn, own=False), result, changed)
                record = record_of(result)
            if record is not None:
                self.apply(conn, seq, record)
        return result

    def create_experiment(self, name: str) -> str:
        with self._writing() as (conn, seq):
            row = conn.execute(
                "SELECT experiment_id FROM tracetag_experiments WHERE name = %s", (name,)
            ).fetchone()
            if row is not None:
                return str(row[0])
            ids = conn.execute("SELECT experiment_id FROM tracetag_experiments")
            new_id = next_experiment_id(r[0] for r in ids)
            now = int(time.time() * 1000)
            self.apply(
                conn,
                seq,
                {
                    "op": "exp",
                    "doc": {"experiment_id": new_id, "name": name, "creation_time_ms": now},
                },
            )
            return new_id

    def explain(self, node: Any, order: Any = None, paged: bool = True) -> list[str]:
        """What the server evaluates of ``node`` (the order and paging it plans itself)."""
        from .sql import compile_sql

        if node is None:
            return ["plan: PostgreSQL reads the keyset index"]
        if compile_sql(node, 0).exact:
            return ["plan: PostgreSQL evaluates the whole filter (parameterised SQL)"]
        return [
            "plan: PostgreSQL narrows the candidates, tracetag decides",
            "      (span fields, RE2 patterns and non-ASCII ILIKE are tracetag's to judge)",
        ]

    # -- upkeep ------------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """The migrations applied now (or on this object's first connection)."""
        with self._connection() as conn:
            done, self._applied = self._applied + migrate(conn, self.path), []
            return done

    def info(self) -> dict[str, Any]:
        with self._connection() as conn:
            traces = conn.execute("SELECT count(*) FROM tracetag_traces").fetchone()[0]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            seq = conn.execute("SELECT seq FROM tracetag_state").fetchone()[0]
            server = conn.execute("SHOW server_version").fetchone()[0]
        return {
            "store": self.path,
            "backend": "postgresql",
            "server_version": server,
            "schema": MIGRATIONS[-1][0],
            "traces": traces,
            "writes": seq,
            "database_bytes": size,
        }

    def check(self) -> Any:
        from ..store.maintenance import CheckReport

        report = CheckReport()
        with self._connection() as conn:
            report.facts["store"] = self.path
            report.facts["schema"] = MIGRATIONS[-1][0]
            report.facts["traces"] = conn.execute(
                "SELECT count(*) FROM tracetag_traces"
            ).fetchone()[0]
            missing = conn.execute(
                "SELECT count(*) FROM tracetag_traces t WHERE NOT EXISTS "
                "(SELECT 1 FROM tracetag_spans s WHERE s.trace_id = t.trace_id)"
            ).fetchone()[0]
            unknown = conn.execute(
                "SELECT count(*) FROM tracetag_traces t WHERE NOT EXISTS (SELECT 1 FROM "
                "tracetag_experiments e WHERE e.experiment_id = t.experiment_id)"
            ).fetchone()[0]
        if missing:
            report.warnings.append(f"{missing} traces have no spans")
        if unknown:
            report.errors.append(f"{unknown} traces belong to no known experiment")
        return report

    def repair(self) -> dict[str, Any]:
        raise StoreError(
            f"{self.path}: a PostgreSQL store is kept consistent by the database; "
            "use PostgreSQL's own tools (pg_dump, pg_amcheck) for damage"
        )

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        """Forget deletions older than every open view and let PostgreSQL tidy up."""
        with self._connection() as conn:
            seq = conn.execute("SELECT seq FROM tracetag_state").fetchone()[0]
            # Views live for one command; a write that planned an hour ago has long finished.
            pruned = conn.execute(
                "DELETE FROM tracetag_deleted WHERE version < %s", (max(0, seq - 100_000),)
            ).rowcount
            conn.execute("VACUUM (ANALYZE) tracetag_traces" if vacuum else "ANALYZE")
            # The version index answers "changed since" only over summarised ranges.
            conn.execute("SELECT brin_summarize_new_values('tracetag_traces_version')")
        return {"records": pruned, "generation": seq, "analyzed": 1}


def _changed_any(store: PgStore, since: int) -> bool:
    with store._connection() as conn:
        return bool(conn.execute("SELECT seq FROM tracetag_state").fetchone()[0] != since)


_TRACE_COLUMNS = (
    "trace_id, experiment_id, name, timestamp_ms, execution_time_ms, status, tags, metadata, "
    "request_preview, response_preview, client_request_id, version"
)


def _row(doc: dict[str, Any], seq: int) -> tuple[Any, ...]:
    return (
        doc["trace_id"],
        str(doc.get("experiment_id", "0")),
        doc.get("name"),
        int(doc.get("timestamp_ms") or 0),
        doc.get("execution_time_ms"),
        doc.get("status") or "OK",
        orjson.dumps(doc.get("tags") or {}).decode(),
        orjson.dumps(doc.get("metadata") or {}).decode(),
        doc.get("request_preview"),
        doc.get("response_preview"),
        doc.get("client_request_id"),
        seq,
    )


def _reason(e: Exception, url: str) -> str:
    """The driver's message on one line, without the password."""
    text = " ".join(str(e).split())
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    return text.removeprefix("connection failed: ")
