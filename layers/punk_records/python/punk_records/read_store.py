"""The read API's PostgreSQL adapter: keyset-paged SELECTs on a read-only connection.

Every statement is one index range scan (migration 0002 adds the indexes; a test runs
``EXPLAIN`` on each shape). Events are rendered to JSON by PostgreSQL itself
(``json_build_object`` over the stored ``jsonb``), so a page travels as text and the function
only splices it into the response: no payload is decoded and re-encoded in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

import psycopg
from psycopg import sql

from punk_records.errors import ConfigurationError, StoreUnavailable
from punk_records.query import DeadLetterQuery, DeadLetterRow, EventQuery, EventRow

# The group role the query function's login role belongs to (migration 0002): SELECT only.
READER_ROLE = "punk_records_reader"

# One event as the API returns it. ``ts``/``received_at`` in UTC with microseconds, whatever
# the session's time zone.
EVENT_JSON = """json_build_object(
    'event_id', event_id,
    'ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'workspace_id', workspace_id,
    'satellite_id', satellite_id,
    'trace_id', trace_id,
    'type', type,
    'severity', severity,
    'confidence', confidence,
    'payload', payload_json,
    'kafka', CASE WHEN kafka_topic IS NULL THEN NULL ELSE json_build_object(
        'topic', kafka_topic, 'partition', kafka_partition, 'offset', kafka_offset) END,
    'received_at', to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
)::text"""

_T = TypeVar("_T")


class Connections(Protocol):
    """A cached connection that is replaced when broken (``punk_records.store.EventStore``)."""

    def connection(self) -> psycopg.Connection: ...

    def reset(self) -> None: ...


def events_sql(
    query: EventQuery, after: tuple[datetime, UUID] | None, limit: int
) -> tuple[str, list[Any]]:
    """The statement and parameters of one page of ``GET /events`` (also used by EXPLAIN
    tests and the benchmark's bare-SQL baseline).

    The text is made of fixed fragments only (every value is a parameter), so each filter
    shape is one statement text: psycopg converts it once and PostgreSQL prepares it.
    """
    where = ["workspace_id = %s"]
    params: list[Any] = [query.workspace_id]
    if len(query.type) == 1:
        where.append("type = %s")
        params.append(query.type[0].value)
    elif query.type:
        where.append("type = ANY(%s)")
        params.append([t.value for t in query.type])
    if query.satellite_id is not None:
        where.append("satellite_id = %s")
        params.append(query.satellite_id)
    if query.trace_id is not None:
        where.append("trace_id = %s")
        params.append(query.trace_id)
    if query.severity is not None:
        where.append("severity = %s")
        params.append(query.severity.value)
    if query.since is not None:
        where.append("ts >= %s")
        params.append(query.since)
    if query.until is not None:
        where.append("ts < %s")
        params.append(query.until)
    if after is not None:
        where.append("(ts, event_id) > (%s, %s)")
        params.extend(after)
    # The limit is part of the text: a literal lets the planner pick the ordered index scan
    # that stops after one page, where a parameter would leave it guessing.
    statement = (
        f"SELECT {EVENT_JSON}, ts, event_id FROM events WHERE {' AND '.join(where)}"
        f" ORDER BY ts, event_id LIMIT {int(limit)}"
    )
    return statement, params


EVENT_BY_ID_SQL = f"SELECT workspace_id, {EVENT_JSON} FROM events WHERE event_id = %s"


def dead_letters_sql(
    query: DeadLetterQuery,
    keys: frozenset[bytes] | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The statement and parameters of one page of ``GET /dead-letters`` (fixed fragments,
    as :func:`events_sql`)."""
    where: list[str] = []
    params: list[Any] = []
    if query.topic is not None:
        where.append("kafka_topic = %s")
        params.append(query.topic)
    if query.since is not None:
        where.append("received_at >= %s")
        params.append(query.since)
    if after is not None:
        where.append("(received_at, id) > (%s, %s)")
        params.extend(after)
    if keys is not None:
        where.append("raw_key = ANY(%s)")
        params.append(sorted(keys))
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    statement = (
        "SELECT id, kafka_topic, kafka_partition, kafka_offset, error, received_at,"
        f" raw_value, raw_key FROM dead_letters {condition}ORDER BY received_at, id"
        f" LIMIT {int(limit)}"
    )
    return statement, params


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ReadStore:
    """:class:`punk_records.query.Reader` on PostgreSQL. Reads are idempotent, so a
    connection that died while the container was idle is replaced and the read tried once
    more; a second failure raises StoreUnavailable."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def _run(self, read: Callable[[psycopg.Connection], _T]) -> _T:
        for attempt in (1, 2):
            try:
                return read(self._connections.connection())
            except (psycopg.OperationalError, psycopg.errors.QueryCanceled) as exc:
                self._connections.reset()
                if attempt == 2 or isinstance(exc, psycopg.errors.QueryCanceled):
                    raise StoreUnavailable(f"read failed: {_reason(exc)}") from exc
        raise AssertionError("unreachable")

    def events(
        self, query: EventQuery, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[EventRow]:
        statement, params = events_sql(query, after, limit)

        def read(conn: psycopg.Connection) -> list[EventRow]:
            return cast(list[EventRow], conn.execute(statement, params).fetchall())

        return self._run(read)

    def event(self, event_id: UUID) -> tuple[str, str] | None:
        def read(conn: psycopg.Connection) -> tuple[str, str] | None:
            row = conn.execute(EVENT_BY_ID_SQL, (event_id,)).fetchone()
            return None if row is None else (row[0], row[1])

        return self._run(read)

    def dead_letters(
        self,
        query: DeadLetterQuery,
        keys: frozenset[bytes] | None,
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[DeadLetterRow]:
        statement, params = dead_letters_sql(query, keys, after, limit)

        def read(conn: psycopg.Connection) -> list[DeadLetterRow]:
            rows = conn.execute(statement, params).fetchall()
            return [DeadLetterRow(*row) for row in rows]

        return self._run(read)


def grant_reader_login(conn: psycopg.Connection, username: str, password: str | None) -> None:
    """Create or update the query function's login role as a member of the read-only group
    role, with ``password`` (None: no password, for IAM database authentication, where the
    ``rds_iam`` grant is given separately). Idempotent; run by the migrate step."""
    role = sql.Identifier(username)
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        # Plain (unprepared) statement: a password cannot be a bind parameter here.
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                verb, role, sql.Literal(password)
            )
        )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER_ROLE), role))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '5s'").format(role))


def provision_reader_login(conn: psycopg.Connection, secret: Mapping[str, Any]) -> str:
    """:func:`grant_reader_login` for the login of an RDS-style secret (``username``,
    ``password``); return the username. Raise ConfigurationError when the secret has none."""
    username = secret.get("username")
    password = secret.get("password")
    if not isinstance(username, str) or not username:
        raise ConfigurationError("the query database secret lacks a 'username'")
    if password is not None and not isinstance(password, str):
        raise ConfigurationError("the query database secret's 'password' must be a string")
    grant_reader_login(conn, username, password or None)
    return username
