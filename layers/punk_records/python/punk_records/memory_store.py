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

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from punk_records.memory import (
    CANDIDATE,
    CHANGE_TYPES,
    DECISION,
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
    refs_of,
)
from punk_records.memory_query import MemoryQuery, MemoryRow
from punk_records.read_store import ReadStore

# Namespace of the advisory locks that serialise a workspace's projection (two int4 keys).
_LOCK_SPACE = 0x6D656D6F  # "memo"

# An event as the rules need it: of the payload only the fields they read (an object
# ``value`` travels as ``{}``: the rules only check that it is one, and the entry's value is
# copied from the event by _UPSERT_ENTRIES), so a batch's payloads are not sent back.
_FACT_COLUMNS = """e.event_id, e.ts, e.workspace_id, e.satellite_id, e.trace_id, e.type,
    e.confidence,
    CASE WHEN e.type LIKE 'memory.%%' THEN (
        SELECT coalesce(jsonb_object_agg(k, CASE WHEN k = 'value' AND jsonb_typeof(v) = 'object'
                                                 THEN '{}'::jsonb ELSE v END), '{}'::jsonb)
        FROM jsonb_each(e.payload_json) AS p(k, v)
        WHERE k IN ('key', 'value', 'bucket', 'ttl_hours', 'entry_id', 'reason', 'refs'))
    ELSE jsonb_build_object('refs', e.payload_json -> 'refs') END"""

# The candidates of the traces of a batch's decisions (they may now be promoted).
_CANDIDATES_OF_TRACES = """
SELECT workspace_id, trace_id, event_id FROM events
WHERE type = 'memory.candidate' AND trace_id = ANY(%s)
"""

# Every event of the entries with these ids: their candidates, the promotions/retractions
# naming them, the events whose refs list them and the decisions of their candidates' traces,
# each row tagged with its branch. Every branch is a lookup by a constant array (primary key,
# events_memory_change_idx, events_refs_idx, events_trace_id_idx), so no plan can turn it into
# a join of the batch with the table, however stale the table's statistics are.
_LOAD_ENTRIES_TEMPLATE = """
WITH candidates AS (
    SELECT * FROM events e WHERE e.event_id = ANY(%(ids)s) AND e.type = 'memory.candidate'
)
SELECT 'c', {columns} FROM candidates e
UNION ALL
SELECT 'p', {columns} FROM events e
WHERE e.type IN ('memory.promoted', 'memory.retracted')
  AND lower(e.payload_json ->> 'entry_id') = ANY(%(texts)s)
  AND NOT e.event_id = ANY(%(known)s)
UNION ALL
SELECT 'r', {columns} FROM events e
WHERE e.payload_json ? 'refs' AND (e.payload_json -> 'refs') ?| %(texts)s
  AND NOT e.event_id = ANY(%(known)s)
UNION ALL
SELECT 'd', {columns} FROM events e
WHERE e.type = 'decision.recorded' AND e.trace_id IN (SELECT trace_id FROM candidates)
  AND NOT e.event_id = ANY(%(known)s)
UNION ALL
SELECT 'd', {columns} FROM events e
WHERE e.type = 'decision.recorded' AND e.trace_id = ANY(%(traces)s)
  AND NOT e.event_id = ANY(%(known)s)
"""

_LOAD_ENTRIES = _LOAD_ENTRIES_TEMPLATE.format(columns=_FACT_COLUMNS)

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
SELECT n.entry_id, n.workspace_id, n.key, coalesce(e.payload_json -> 'value', '{{}}'::jsonb),
       n.bucket, n.status, n.confidence, n.trace_id, n.satellite_id, n.created_at,
       n.updated_at, n.expires_at, n.last_event_id
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],
            %s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
            %s::uuid[])
     AS n(entry_id, workspace_id, key, bucket, status, confidence, trace_id, satellite_id,
          created_at, updated_at, expires_at, last_event_id)
JOIN events e ON e.event_id = n.entry_id
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


def load_groups(
    conn: psycopg.Connection, touched: Touched, fresh: bool = False
) -> dict[tuple[str, UUID], list[Fact]]:
    """Every event of every entry ``touched`` names, per (workspace, entry_id): two lookups
    (one when the batch holds no decision). ``fresh`` says the batch's events were all new
    to the store: then they are taken as noted in ``touched``, and only the events stored
    before are read."""
    targets = set(touched.entries)
    if touched.traces:
        traces = sorted({trace for _, trace in touched.traces})
        for workspace, trace, entry_id in conn.execute(
            _CANDIDATES_OF_TRACES, (traces,), prepare=False
        ):
            if (workspace, trace) in touched.traces:
                targets.add((workspace, entry_id))
    groups: dict[tuple[str, UUID], list[Fact]] = {key: [] for key in sorted(targets)}
    if not groups:
        return groups
    ids = sorted({entry_id for _, entry_id in groups})
    known = touched.facts if fresh else {}
    facts = [(role, fact) for fact in known.values() for role in _roles(fact)]
    rows = conn.execute(
        _LOAD_ENTRIES,
        {
            "ids": [entry_id for entry_id in ids if entry_id not in known],
            "texts": [str(entry_id) for entry_id in ids],
            "traces": sorted({fact.trace_id for fact in known.values() if fact.type == CANDIDATE}),
            "known": list(known),
        },
        prepare=False,
    ).fetchall()
    facts += [(row[0], _fact(row, 1)) for row in rows]
    traces_of: dict[tuple[str, UUID], list[UUID]] = {}
    decisions: list[Fact] = []
    for kind, fact in facts:
        workspace = fact.workspace_id
        if kind == "c":
            _add(groups, (workspace, fact.event_id), fact)
            traces_of.setdefault((workspace, fact.trace_id), []).append(fact.event_id)
        elif kind == "p":
            entry_id = _entry_id(str(fact.payload.get("entry_id", "")).lower())
            if entry_id is not None:
                _add(groups, (workspace, entry_id), fact)
        elif kind == "r":
            for ref in refs_of(fact.payload):
                entry_id = _entry_id(ref)
                if entry_id is not None:
                    _add(groups, (workspace, entry_id), fact)
        else:
            decisions.append(fact)
    for fact in decisions:
        for entry_id in traces_of.get((fact.workspace_id, fact.trace_id), ()):
            _add(groups, (fact.workspace_id, entry_id), fact)
    return groups


def _roles(fact: Fact) -> list[str]:
    """The branches of _LOAD_ENTRIES that would return ``fact``."""
    roles = []
    if fact.type == CANDIDATE:
        roles.append("c")
    elif fact.type in CHANGE_TYPES:
        roles.append("p")
    elif fact.type == DECISION:
        roles.append("d")
    if "refs" in fact.payload:
        roles.append("r")
    return roles


def _entry_id(text: str) -> UUID | None:
    """The entry id ``text`` names exactly (canonical lower-case form), else None."""
    try:
        entry_id = UUID(text)
    except ValueError:
        return None
    return entry_id if str(entry_id) == text else None


def _add(groups: dict[tuple[str, UUID], list[Fact]], key: tuple[str, UUID], fact: Fact) -> None:
    group = groups.get(key)
    if group is not None:
        group.append(fact)


def project_batch(
    conn: psycopg.Connection, touched: Touched, rules: MemoryRules, fresh: bool = False
) -> MemoryCounts:
    """Bring the projection up to date with a batch whose events are already inserted, in the
    caller's transaction (``fresh``: every event of the batch was new to the store). Raise
    psycopg errors (the caller's transaction then rolls back)."""
    if not touched:
        return MemoryCounts()
    lock_workspaces(conn, touched.workspaces)
    entries: list[Entry] = []
    rows: list[Change] = list(touched.invalid)
    groups = load_groups(conn, touched, fresh)
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
