"""The PostgreSQL schema, as a named, ordered list of migrations.

A database records the migrations applied to it in ``tracetag_migrations``; opening one applies
the missing ones in order, in one transaction, under an advisory lock so that several
processes opening a new database at once apply each migration once. A database that has a
migration this code does not know was written by a newer tracetag and is refused.

Design (measured in ``benchmarks/postgres.py``): one row per trace with the fields filters and
orders use as columns; tags and metadata as ``jsonb`` with a GIN index (``jsonb_path_ops``:
equality and ``IN`` on any tag key use it, and a tag write rewrites one row, not one per key as
a key/value table would); spans as JSON text beside it (kept as written, so an export is the
bytes that were imported). ``version`` is the write sequence number of the last change to a
row: a batch planned on an older snapshot asks which traces changed since, as the local store's
journal answers it. The keyset indexes are in exactly the default order of a search (absent
values last, trace ids by code point with ``COLLATE "C"``), so a top-N is read from an index
whatever the database's collation. The version index is a BRIN (versions grow with the
table's order of writing; a B-tree on it cost 10% of import time), and status has none (three
values: a scan is as good). The tag index keeps PostgreSQL's default pending list: a 64 MB one
made a batch of 100,000 tag changes 18% faster, but a search right after a big import then
scanned the table, the planner costing the unmerged list.
"""

from __future__ import annotations

from typing import Any

from ..errors import StoreError
from ..filters.evaluate import NUMBER_PATTERN

__all__ = ["MIGRATIONS", "SchemaTooNew", "migrate", "pending"]

# Taken (transaction-scoped) by migrations and by every write: writers are serialised, so
# ``version`` numbers follow commit order.
MIGRATION_LOCK = 0x7472_6163_6574_6167  # "tracetag"

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_traces",
        """
        CREATE TABLE tracetag_experiments (
            experiment_id text PRIMARY KEY,
            name text NOT NULL UNIQUE,
            creation_time_ms bigint NOT NULL
        );
        INSERT INTO tracetag_experiments VALUES ('0', 'Default', 0);
        CREATE TABLE tracetag_state (
            id int PRIMARY KEY CHECK (id = 1),
            seq bigint NOT NULL
        );
        INSERT INTO tracetag_state VALUES (1, 0);
        CREATE TABLE tracetag_traces (
            trace_id text PRIMARY KEY,
            experiment_id text NOT NULL,
            timestamp_ms bigint NOT NULL,
            execution_time_ms bigint,
            status text NOT NULL,
            name text,
            client_request_id text,
            request_preview text,
            response_preview text,
            tags jsonb NOT NULL,
            metadata jsonb NOT NULL,
            version bigint NOT NULL
        );
        CREATE INDEX tracetag_traces_keyset
            ON tracetag_traces (experiment_id, timestamp_ms DESC NULLS LAST, trace_id COLLATE "C");
        CREATE INDEX tracetag_traces_time
            ON tracetag_traces (timestamp_ms DESC NULLS LAST, trace_id COLLATE "C");
        CREATE INDEX tracetag_traces_tags ON tracetag_traces USING gin (tags jsonb_path_ops);
        CREATE INDEX tracetag_traces_version ON tracetag_traces USING brin (version)
            WITH (autosummarize = on);
        CREATE TABLE tracetag_spans (
            trace_id text PRIMARY KEY REFERENCES tracetag_traces ON DELETE CASCADE,
            spans text NOT NULL
        );
        CREATE TABLE tracetag_deleted (
            trace_id text NOT NULL,
            version bigint NOT NULL
        );
        CREATE INDEX tracetag_deleted_version ON tracetag_deleted (version);
        CREATE FUNCTION tracetag_number(v text) RETURNS float8
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $fn$ SELECT CASE WHEN v ~ '"""
        + NUMBER_PATTERN
        + """' THEN v::float8 END $fn$;
        CREATE FUNCTION tracetag_ilike(v text, p text) RETURNS boolean
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $fn$ SELECT CASE WHEN octet_length(v) = char_length(v) THEN v ILIKE p END $fn$;
        CREATE FUNCTION tracetag_not_ilike(v text, p text) RETURNS boolean
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $fn$ SELECT CASE WHEN octet_length(v) = char_length(v) THEN v NOT ILIKE p END
            $fn$;
        """,
    ),
]
# NUMBER_PATTERN is written into 0001 as it was then; changing it takes a new migration that
# replaces tracetag_number (tests/test_postgres.py checks the two agree).


class SchemaTooNew(StoreError):
    pass


def _applied(conn: Any) -> list[str]:
    exists = conn.execute("SELECT to_regclass('tracetag_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    return [r[0] for r in conn.execute("SELECT name FROM tracetag_migrations ORDER BY name")]


def pending(conn: Any, where: str) -> list[str]:
    """Names of the migrations not yet applied; refuses a schema newer than this code."""
    applied = _applied(conn)
    known = [name for name, _sql in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaTooNew(
            f"{where}: the database schema is newer than this tracetag (it has migration "
            f"{unknown[-1]}); upgrade tracetag"
        )
    return [name for name in known if name not in applied]


def migrate(conn: Any, where: str) -> list[str]:
    """Apply the missing migrations (autocommit connection); returns their names."""
    if not pending(conn, where):
        return []
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tracetag_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        todo = pending(conn, where)  # again, under the lock: another process may have won
        for name, sql in MIGRATIONS:
            if name in todo:
                conn.execute(sql)
                conn.execute("INSERT INTO tracetag_migrations (name) VALUES (%s)", (name,))
                done.append(name)
    return done
