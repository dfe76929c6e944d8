"""The memory projection in PostgreSQL: set-based upkeep inside a batch's transaction, replay,
and the digest that shows two projections are the same.

:func:`project_batch` runs in the consumer's transaction, after the batch's events are in:
one statement loads every event of every entry the batch touches (their candidates,
promotions, retractions, decisions of their traces, events that reference them), the rules
(:mod:`punk_records.memory`) refold each of those entries, and two statements write the
entries and the audit rows. A fixed number of statements whatever the batch size; the
projection's workspaces are locked (a transaction-level advisory lock) so a replay or a
redrive never interleaves with the consumer.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from punk_records.memory import (
    Change,
    Entry,
    Fact,
    MemoryCounts,
    MemoryRules,
    Projection,
    Status,
    Touched,
    fold_entry,
    project,
)
from punk_records.memory_query import MemoryQuery, MemoryRow
from punk_records.read_store import ReadStore

# Namespace of the advisory locks that serialise a workspace's projection (two int4 keys).
_LOCK_SPACE = 0x6D656D6F  # "memo"

_FACT_COLUMNS = """e.event_id, e.ts, e.workspace_id, e.satellite_id, e.trace_id, e.type,
    e.confidence,
    CASE WHEN e.type LIKE 'memory.%%' THEN e.payload_json
         ELSE jsonb_build_object('refs', e.payload_json -> 'refs') END"""

# Every event of every entry named by (workspace, entry_id) or reached through a decision's
# (workspace, trace_id), tagged with the entry it concerns. Each branch is an index lookup
# (primary key, events_memory_change_idx, events_trace_id_idx, events_refs_idx).
_LOAD_GROUPS = f"""
WITH targets AS (
    SELECT g.workspace_id, g.entry_id
    FROM unnest(%s::text[], %s::uuid[]) AS g(workspace_id, entry_id)
    UNION
    SELECT c.workspace_id, c.event_id
    FROM unnest(%s::text[], %s::uuid[]) AS d(workspace_id, trace_id)
    JOIN events c ON c.trace_id = d.trace_id AND c.workspace_id = d.workspace_id
    WHERE c.type = 'memory.candidate'
), candidates AS (
    SELECT t.workspace_id, t.entry_id, c.trace_id
    FROM targets t
    JOIN events c ON c.event_id = t.entry_id AND c.workspace_id = t.workspace_id
    WHERE c.type = 'memory.candidate'
), members AS (
    SELECT workspace_id, entry_id, entry_id AS event_id FROM candidates
    UNION ALL
    SELECT t.workspace_id, t.entry_id, e.event_id
    FROM targets t
    JOIN events e ON e.workspace_id = t.workspace_id
        AND lower(e.payload_json ->> 'entry_id') = t.entry_id::text
        AND e.type IN ('memory.promoted', 'memory.retracted')
    UNION ALL
    SELECT c.workspace_id, c.entry_id, e.event_id
    FROM candidates c
    JOIN events e ON e.trace_id = c.trace_id AND e.workspace_id = c.workspace_id
    WHERE e.type = 'decision.recorded'
    UNION ALL
    SELECT t.workspace_id, t.entry_id, e.event_id
    FROM targets t
    JOIN events e ON e.payload_json ? 'refs'
        AND (e.payload_json -> 'refs') ? t.entry_id::text
        AND e.workspace_id = t.workspace_id
)
SELECT m.entry_id, {_FACT_COLUMNS}
FROM members m JOIN events e ON e.event_id = m.event_id
"""

# Every event of a workspace that the projection can depend on (replay).
_LOAD_WORKSPACE = f"""
SELECT {_FACT_COLUMNS}
FROM events e
WHERE e.workspace_id = %s
  AND (e.type IN ('memory.candidate', 'memory.promoted', 'memory.retracted', 'decision.recorded')
       OR e.payload_json ? 'refs')
"""

_ENTRY_COLUMNS = (
    "entry_id, workspace_id, key, value, bucket, status, confidence, trace_id, satellite_id,"
    " created_at, updated_at, expires_at, last_event_id"
)
_UPSERT_ENTRIES = f"""
INSERT INTO memory_entries ({_ENTRY_COLUMNS})
SELECT n.entry_id, n.workspace_id, n.key, n.value::jsonb, n.bucket, n.status, n.confidence,
       n.trace_id, n.satellite_id, n.created_at, n.updated_at, n.expires_at, n.last_event_id
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[],
            %s::timestamptz[], %s::uuid[])
     AS n(entry_id, workspace_id, key, value, bucket, status, confidence, trace_id,
          satellite_id, created_at, updated_at, expires_at, last_event_id)
ON CONFLICT (entry_id) DO UPDATE SET
    status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
    last_event_id = EXCLUDED.last_event_id
WHERE (memory_entries.status, memory_entries.updated_at, memory_entries.last_event_id)
    IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.updated_at, EXCLUDED.last_event_id)
"""

_HISTORY_COLUMNS = (
    "entry_id, event_id, workspace_id, action, from_status, to_status, at, satellite_id, reason"
)
# The refolded groups' audit rows replace theirs: rows no longer produced go (a late event
# changed what a later one did), new ones come in, changed ones are updated. A row whose
# event_id is its entry_id depends on that one event alone and never changes. Returns how many
# rows are new, per action (the metrics).
_WRITE_HISTORY = f"""
WITH new AS (
    SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[],
                         %s::text[], %s::timestamptz[], %s::text[], %s::text[])
        AS n({_HISTORY_COLUMNS})
), groups AS (
    SELECT * FROM unnest(%s::text[], %s::uuid[]) AS g(workspace_id, entry_id)
), gone AS (
    DELETE FROM memory_history h USING groups g
    WHERE h.workspace_id = g.workspace_id AND h.entry_id = g.entry_id
      AND h.event_id <> h.entry_id
      AND NOT EXISTS (SELECT 1 FROM new n WHERE n.entry_id = h.entry_id
                                            AND n.event_id = h.event_id)
    RETURNING 1
), put AS (
    INSERT INTO memory_history ({_HISTORY_COLUMNS}) SELECT {_HISTORY_COLUMNS} FROM new
    ON CONFLICT (entry_id, event_id) DO UPDATE SET
        action = EXCLUDED.action, from_status = EXCLUDED.from_status,
        to_status = EXCLUDED.to_status, reason = EXCLUDED.reason
    WHERE (memory_history.action, memory_history.from_status, memory_history.to_status,
           memory_history.reason)
        IS DISTINCT FROM (EXCLUDED.action, EXCLUDED.from_status, EXCLUDED.to_status,
                          EXCLUDED.reason)
    RETURNING action, xmax = 0 AS fresh
)
SELECT (SELECT count(*) FROM gone),
       coalesce((SELECT json_object_agg(action, n)
                 FROM (SELECT action, count(*) AS n FROM put WHERE fresh GROUP BY action) s),
                '{{}}'::json)
"""

# One line per row, in a canonical text form, hashed in a fixed order: equal digests mean
# equal projections. Timestamps as microseconds since the epoch (the session's time zone
# does not matter), nullable text quoted.
DIGEST_SQL = """
SELECT encode(sha256(convert_to(coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE "C"), ''),
                                'UTF8')), 'hex'),
       count(*) FILTER (WHERE kind = 'e'), count(*) FILTER (WHERE kind = 'h')
FROM (
    SELECT 'e' AS kind, concat_ws('|', 'e', entry_id, quote_literal(key), value::text, bucket,
        status, confidence::text, trace_id, quote_literal(satellite_id),
        (extract(epoch FROM created_at) * 1000000)::bigint,
        (extract(epoch FROM updated_at) * 1000000)::bigint,
        coalesce((extract(epoch FROM expires_at) * 1000000)::bigint::text, 'never'),
        last_event_id) AS line
    FROM memory_entries WHERE workspace_id = %(ws)s
    UNION ALL
    SELECT 'h', concat_ws('|', 'h', entry_id, event_id, action, quote_nullable(from_status),
        quote_nullable(to_status), (extract(epoch FROM at) * 1000000)::bigint,
        quote_literal(satellite_id), quote_nullable(reason))
    FROM memory_history WHERE workspace_id = %(ws)s
) rows
"""


@dataclass(frozen=True, slots=True)
class Digest:
    """The digest of one workspace's projection and its size."""

    sha256: str
    entries: int
    history: int

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "entries": self.entries, "history": self.history}


def lock_workspaces(conn: psycopg.Connection, workspaces: Sequence[str]) -> None:
    """Take the projection locks of ``workspaces`` for this transaction, in sorted order (no
    deadlock between two callers)."""
    keys = sorted({_lock_key(ws) for ws in workspaces})
    if keys:
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS k",
            (_LOCK_SPACE, keys),
        )


def _lock_key(workspace: str) -> int:
    return zlib.crc32(workspace.encode()) - 2**31


def _fact(row: Sequence[Any], offset: int = 0) -> Fact:
    event_id, ts, workspace, satellite, trace, kind, confidence, payload = row[offset:]
    return Fact(
        event_id, ts.astimezone(UTC), workspace, satellite, trace, kind, confidence, payload
    )


def load_groups(conn: psycopg.Connection, touched: Touched) -> dict[tuple[str, UUID], list[Fact]]:
    """Every event of every entry ``touched`` names, per (workspace, entry_id)."""
    entries = sorted(touched.entries)
    traces = sorted(touched.traces)
    rows = conn.execute(
        _LOAD_GROUPS,
        (
            [ws for ws, _ in entries],
            [entry for _, entry in entries],
            [ws for ws, _ in traces],
            [trace for _, trace in traces],
        ),
    ).fetchall()
    groups: dict[tuple[str, UUID], list[Fact]] = {key: [] for key in entries}
    for row in rows:
        fact = _fact(row, 1)
        groups.setdefault((fact.workspace_id, row[0]), []).append(fact)
    return groups


def project_batch(conn: psycopg.Connection, touched: Touched, rules: MemoryRules) -> MemoryCounts:
    """Bring the projection up to date with a batch whose events are already inserted, in the
    caller's transaction. Raise psycopg errors (the caller's transaction then rolls back)."""
    if not touched:
        return MemoryCounts()
    lock_workspaces(conn, touched.workspaces)
    entries: list[Entry] = []
    rows: list[Change] = list(touched.invalid)
    groups = load_groups(conn, touched)
    for (workspace, entry_id), facts in groups.items():
        entry, changes = fold_entry(entry_id, workspace, facts, rules)
        if entry is not None:
            entries.append(entry)
        rows.extend(changes)
    counts = write(conn, entries, rows, list(groups))
    counts.refolded = len(groups)
    return counts


def write(
    conn: psycopg.Connection,
    entries: Sequence[Entry],
    rows: Sequence[Change],
    groups: Sequence[tuple[str, UUID]],
) -> MemoryCounts:
    """Upsert ``entries``; make the audit rows of ``groups`` exactly ``rows`` (plus rows keyed
    by their own event, which never change)."""
    if entries:
        conn.execute(_UPSERT_ENTRIES, _entry_columns(entries))
    counts = MemoryCounts()
    if rows or groups:
        result = conn.execute(
            _WRITE_HISTORY,
            (
                *_history_columns(rows),
                [ws for ws, _ in groups],
                [entry for _, entry in groups],
            ),
        ).fetchone()
        assert result is not None
        counts.withdrawn, counts.new_rows = result[0], result[1]
    return counts


def _entry_columns(entries: Sequence[Entry]) -> tuple[list[Any], ...]:
    return (
        [e.entry_id for e in entries],
        [e.workspace_id for e in entries],
        [e.key for e in entries],
        [json.dumps(e.value, separators=(",", ":"), ensure_ascii=False) for e in entries],
        [e.bucket.value for e in entries],
        [e.status.value for e in entries],
        [e.confidence for e in entries],
        [e.trace_id for e in entries],
        [e.satellite_id for e in entries],
        [e.created_at for e in entries],
        [e.updated_at for e in entries],
        [e.expires_at for e in entries],
        [e.last_event_id for e in entries],
    )


def _history_columns(rows: Sequence[Change]) -> tuple[list[Any], ...]:
    return (
        [r.entry_id for r in rows],
        [r.event_id for r in rows],
        [r.workspace_id for r in rows],
        [r.action.value for r in rows],
        [None if r.from_status is None else r.from_status.value for r in rows],
        [None if r.to_status is None else r.to_status.value for r in rows],
        [r.at for r in rows],
        [r.satellite_id for r in rows],
        [r.reason for r in rows],
    )


def digest(conn: psycopg.Connection, workspace: str) -> Digest:
    """The digest of ``workspace``'s projection as stored."""
    row = conn.execute(DIGEST_SQL, {"ws": workspace}).fetchone()
    assert row is not None
    return Digest(row[0], row[1], row[2])


def workspace_facts(conn: psycopg.Connection, workspace: str) -> list[Fact]:
    """Every event of ``workspace`` the projection can depend on."""
    return [_fact(row) for row in conn.execute(_LOAD_WORKSPACE, (workspace,))]


def rebuild(conn: psycopg.Connection, workspace: str, rules: MemoryRules) -> Projection:
    """Replace ``workspace``'s projection by :func:`~punk_records.memory.project` of its
    events, in the caller's transaction (which should hold the workspace's lock)."""
    projection = project(workspace_facts(conn, workspace), rules)
    conn.execute("DELETE FROM memory_history WHERE workspace_id = %s", (workspace,))
    conn.execute("DELETE FROM memory_entries WHERE workspace_id = %s", (workspace,))
    write(conn, projection.entries, projection.history, [])
    return projection


_TS = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# One entry as the API returns it (timestamps in UTC whatever the session's time zone).
ENTRY_JSON = f"""json_build_object(
    'entry_id', entry_id, 'workspace_id', workspace_id, 'key', key, 'value', value,
    'bucket', bucket, 'status', status, 'confidence', confidence, 'trace_id', trace_id,
    'satellite_id', satellite_id, 'created_at', {_TS.format("created_at")},
    'updated_at', {_TS.format("updated_at")},
    'expires_at', CASE WHEN expires_at IS NULL THEN NULL ELSE {_TS.format("expires_at")} END,
    'expired', coalesce(expires_at <= now(), false), 'last_event_id', last_event_id
)::text"""
_CHANGE_JSON = f"""json_build_object(
    'event_id', h.event_id, 'action', h.action, 'from_status', h.from_status,
    'to_status', h.to_status, 'at', {_TS.format("h.at")}, 'satellite_id', h.satellite_id,
    'reason', h.reason)"""
# The entry, or for an invalid candidate (no entry) its own audit row, decides the workspace;
# the audit trail shown is that workspace's.
_ENTRY_BY_ID = f"""
WITH owner AS (
    (SELECT workspace_id FROM memory_entries WHERE entry_id = %(id)s
     UNION ALL
     SELECT workspace_id FROM memory_history WHERE entry_id = %(id)s AND event_id = %(id)s)
    LIMIT 1
)
SELECT o.workspace_id,
       (SELECT {ENTRY_JSON} FROM memory_entries WHERE entry_id = %(id)s),
       (SELECT coalesce(json_agg({_CHANGE_JSON} ORDER BY h.at, h.event_id), '[]'::json)::text
        FROM memory_history h WHERE h.entry_id = %(id)s AND h.workspace_id = o.workspace_id)
FROM owner o
"""


def entries_sql(
    query: MemoryQuery, statuses: Sequence[Status], after: UUID | None, limit: int
) -> tuple[sql.Composed, list[Any]]:
    """The statement and parameters of one page of ``GET /memory`` (one range scan of
    memory_entries_workspace_key_idx)."""
    where = [sql.SQL("workspace_id = %s")]
    params: list[Any] = [query.workspace_id]
    if query.key is not None:
        escaped = query.key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(sql.SQL("key LIKE %s"))
        params.append(escaped + "%")
    if query.bucket is not None:
        where.append(sql.SQL("bucket = %s"))
        params.append(query.bucket.value)
    where.append(sql.SQL("status = ANY(%s)"))
    params.append([s.value for s in statuses])
    if not query.include_expired:
        where.append(sql.SQL("(expires_at IS NULL OR expires_at > now())"))
    if after is not None:
        where.append(
            sql.SQL(
                "(key, entry_id) > (SELECT key, entry_id FROM memory_entries WHERE entry_id = %s)"
            )
        )
        params.append(after)
    statement = sql.SQL(
        "SELECT {json}, entry_id, key, bucket, status, value::text, confidence, expires_at"
        " FROM memory_entries WHERE {where} ORDER BY key, entry_id LIMIT {limit}"
    ).format(json=sql.SQL(ENTRY_JSON), where=sql.SQL(" AND ").join(where), limit=sql.Literal(limit))
    return statement, params


class MemoryReadStore(ReadStore):
    """:class:`punk_records.memory_query.MemoryReader` on PostgreSQL (the query function's
    read-only login), with the read store's retry of a connection that died while idle."""

    def entries(
        self, query: MemoryQuery, statuses: tuple[Status, ...], after: UUID | None, limit: int
    ) -> list[MemoryRow]:
        statement, params = entries_sql(query, statuses, after, limit)

        def read(conn: psycopg.Connection) -> list[MemoryRow]:
            return [MemoryRow(*row) for row in conn.execute(statement, params).fetchall()]

        return self._run(read)

    def entry(self, entry_id: UUID) -> tuple[str, str | None, str] | None:
        def read(conn: psycopg.Connection) -> tuple[str, str | None, str] | None:
            row = conn.execute(_ENTRY_BY_ID, {"id": entry_id}).fetchone()
            return None if row is None else (row[0], row[1], row[2])

        return self._run(read)
