"""The memory projection in PostgreSQL: set-based upkeep inside a batch's transaction, replay,
and the digest that shows two projections are the same.

:func:`project_batch` runs in the consumer's transaction, after the batch's events are in:
one statement reads what the store held before the batch about every entry the batch
touches (their candidates, promotions, retractions, decisions of their traces, events that
reference them), the rules (:mod:`punk_records.memory`) refold each of those entries, and one
statement upserts the entries and the audit rows. When the batch's events were all new to the
store (the usual case), its entries are folded while that lookup runs (and those it extends
folded again), and what its events alone key (the entries of their candidates, the audit rows
of their events) cannot exist yet and is inserted with COPY instead, the rest upserted. A fixed
number of statements whatever the batch size; the projection's workspaces are locked (a
transaction-level advisory lock) so a replay or a redrive never interleaves with the consumer.

Bulk parameters travel as one value each that the server parses (a JSON document, or a uuid[]
in binary format that :func:`uuid_array` spells): psycopg's array dumper costs microseconds per
element, more than the statements themselves on a batch of thousands.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from typing import Any
from uuid import UUID

import psycopg
from psycopg import postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from pydantic_core import to_json

from punk_records.memory import (
    CANDIDATE,
    Action,
    Bucket,
    Change,
    Entry,
    Fact,
    Key,
    MemoryCounts,
    MemoryRules,
    Projection,
    Status,
    Touched,
    change_payload,
    flatten,
    fold_each,
    may_auto_promote,
    project,
    referenced,
)
from punk_records.memory_query import MemoryQuery, MemoryRow
from punk_records.read_store import ReadStore

# Namespace of the advisory locks that serialise a workspace's projection (two int4 keys).
_LOCK_SPACE = 0x6D656D6F  # "memo"

# An event as the rules need it: of the payload only the fields they read (an object
# ``value`` travels as ``{}``: the rules only check that it is one, and an entry's value is
# read from its event, see _VALUE), so payloads are not sent back.
_FACT_COLUMNS = """e.event_id, e.ts, e.workspace_id, e.satellite_id, e.trace_id, e.type,
    e.confidence,
    CASE WHEN e.type LIKE 'memory.%%' THEN (
        SELECT coalesce(jsonb_object_agg(k, CASE WHEN k = 'value' AND jsonb_typeof(v) = 'object'
                                                 THEN '{}'::jsonb ELSE v END), '{}'::jsonb)
        FROM jsonb_each(e.payload_json) AS p(k, v)
        WHERE k IN ('key', 'value', 'bucket', 'ttl_hours', 'entry_id', 'reason', 'refs'))
    ELSE jsonb_build_object('refs', e.payload_json -> 'refs') END"""

# What the store holds about some entries, each row tagged with its branch. 'c': the
# candidates with ids %(ids)s, and those of the traces of the batch's decisions
# (%(decided)s) that the decisions may auto-promote; 'p': the promotions/retractions naming
# them or %(changed)s; 'r': the events whose refs list them (when they may be auto-promoted)
# or %(referenced)s; 'd': the decisions of their traces (likewise) or of %(traces)s. The
# batch's own events (%(known_*)s, one hashed anti-join per branch) are excepted. Every
# branch is an index lookup by an array (primary key, events_candidate_trace_idx,
# events_memory_change_idx, events_refs_idx, events_trace_id_idx) that the planner sees as a
# parameter, (SELECT ...): its plan neither depends on the table's statistics (a stale one
# made a 10,000-row table a sequential scan) nor costs a selectivity estimate per element.
# Entry ids compared as text are sent as uuid[] all the same (16 bytes each, see uuid_array)
# and spelled by the server.
_LOAD_ENTRIES_TEMPLATE = """
WITH candidates AS MATERIALIZED (
    SELECT * FROM events e
    WHERE e.event_id = ANY((SELECT %(ids)b::uuid[])::uuid[]) AND e.type = 'memory.candidate'
    UNION ALL
    SELECT * FROM events e
    WHERE e.trace_id = ANY((SELECT %(decided)b::uuid[])::uuid[]) AND e.type = 'memory.candidate'
      AND e.confidence >= %(confidence)s
      AND e.event_id NOT IN (SELECT unnest(%(known_c)b::uuid[]))
), promotable AS (
    SELECT event_id, trace_id FROM candidates WHERE confidence >= %(confidence)s
)
SELECT 'c', {columns} FROM candidates e
UNION ALL
SELECT 'p', {columns} FROM events e
WHERE e.type IN ('memory.promoted', 'memory.retracted')
  AND lower(e.payload_json ->> 'entry_id') = ANY(
      (SELECT ARRAY(SELECT unnest(%(changed)b::uuid[])::text)
              || ARRAY(SELECT event_id::text FROM candidates))::text[])
  AND e.event_id NOT IN (SELECT unnest(%(known_p)b::uuid[]))
UNION ALL
SELECT 'r', {columns} FROM events e
WHERE e.payload_json ? 'refs'
  AND (e.payload_json -> 'refs')
      ?| (SELECT ARRAY(SELECT unnest(%(referenced)b::uuid[])::text)
                 || ARRAY(SELECT event_id::text FROM promotable))
  AND e.event_id NOT IN (SELECT unnest(%(known_r)b::uuid[]))
UNION ALL
SELECT 'd', {columns} FROM events e
WHERE e.type = 'decision.recorded'
  AND e.trace_id = ANY(
      (SELECT %(traces)b::uuid[] || ARRAY(SELECT trace_id FROM promotable))::uuid[])
  AND e.event_id NOT IN (SELECT unnest(%(known_d)b::uuid[]))
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
    "entry_id, workspace_id, key, bucket, status, confidence, trace_id, satellite_id,"
    " created_at, updated_at, expires_at, last_event_id"
)
# An entry's value: its candidate's payload.value (an object, ``{}`` when absent), read from
# the event by the readers (memory_entries.value is no longer written: migration 0005).
_VALUE = (
    "coalesce((SELECT v.payload_json -> 'value' FROM events v"
    " WHERE v.event_id = memory_entries.entry_id), '{}'::jsonb)"
)
_HISTORY_COLUMNS = (
    "entry_id, event_id, workspace_id, action, from_status, to_status, at, satellite_id, reason"
)
# One statement for the whole write. The entries are upserted (of an existing entry only what
# the rules change is updated, and only when it changed). The audit rows of the %(groups)s, the
# entries whose candidate the store held before the batch, are replaced: rows no longer
# produced go (a late event changed what an auto-promotion did; only those can go, an
# explicit change always has its row), new ones come in, changed ones are updated. Every
# audit row but the "created" ones, which memory_trail derives from the entries (migration
# 0005). Returns how many rows went, how many are new per action, and how many entries are
# new (their "created" rows): the metrics.
_WRITE = f"""
WITH entries AS (
    SELECT (r->>0)::uuid AS entry_id, r->>1 AS workspace_id, r->>2 AS key, r->>3 AS bucket,
           r->>4 AS status, (r->>5)::float8 AS confidence, (r->>6)::uuid AS trace_id,
           r->>7 AS satellite_id, (r->>8)::timestamptz AS created_at,
           (r->>9)::timestamptz AS updated_at, (r->>10)::timestamptz AS expires_at,
           (r->>11)::uuid AS last_event_id
    FROM jsonb_array_elements(%(entries)s::jsonb) AS r
), new AS (
    SELECT (r->>0)::uuid AS entry_id, (r->>1)::uuid AS event_id, r->>2 AS workspace_id,
           r->>3 AS action, r->>4 AS from_status, r->>5 AS to_status,
           (r->>6)::timestamptz AS at, r->>7 AS satellite_id, r->>8 AS reason
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
), groups AS (
    SELECT r->>0 AS workspace_id, (r->>1)::uuid AS entry_id
    FROM jsonb_array_elements(%(groups)s::jsonb) AS r
), put_entries AS (
    INSERT INTO memory_entries ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS} FROM entries
    ON CONFLICT (entry_id) DO UPDATE SET
        status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
        last_event_id = EXCLUDED.last_event_id
    WHERE (memory_entries.status, memory_entries.updated_at, memory_entries.last_event_id)
        IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.updated_at, EXCLUDED.last_event_id)
    RETURNING xmax = 0 AS fresh
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
                '{{}}'::json),
       (SELECT count(*) FROM put_entries WHERE fresh)
"""

# What a batch new to the store adds (see write()).
_COPY_ENTRIES = f"COPY memory_entries ({_ENTRY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_ENTRY_TYPES = (
    "uuid", "text", "text", "text", "text", "float8", "uuid", "text", "timestamptz",
    "timestamptz", "timestamptz", "uuid",
)  # fmt: skip
_COPY_HISTORY = f"COPY memory_history ({_HISTORY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_HISTORY_TYPES = (
    "uuid", "uuid", "text", "text", "text", "text", "timestamptz", "text", "text",
)  # fmt: skip

# One line per row, in a canonical text form, hashed in a fixed order: equal digests mean
# equal projections. Timestamps as microseconds since the epoch (the session's time zone
# does not matter), nullable text quoted.
DIGEST_SQL = f"""
SELECT encode(sha256(convert_to(coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE "C"), ''),
                                'UTF8')), 'hex'),
       count(*) FILTER (WHERE kind = 'e'), count(*) FILTER (WHERE kind = 'h')
FROM (
    SELECT 'e' AS kind, concat_ws('|', 'e', entry_id, quote_literal(key), {_VALUE}::text, bucket,
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
    FROM memory_trail WHERE workspace_id = %(ws)s
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


class UuidArray(bytes):
    """A uuid[] in PostgreSQL's binary format (see :func:`uuid_array`)."""


class _UuidArrayDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["uuid"].array_oid

    def dump(self, obj: UuidArray) -> bytes:
        return obj


psycopg.adapters.register_dumper(UuidArray, _UuidArrayDumper)

# uuid[]'s binary format: dimensions, a has-nulls flag, the element type, then per dimension
# its length and lower bound; each element is its length (16) and its bytes.
_ARRAY_HEADER = struct.Struct("!iiIii")
_EMPTY_ARRAY = struct.pack("!iiI", 0, 0, postgres.types["uuid"].oid)
_UUID_LENGTH = (16).to_bytes(4, "big")


def uuid_array(values: Iterable[UUID]) -> UuidArray:
    """``values`` as one uuid[] parameter (pass it as ``%b``). The server reads the binary
    format 16 bytes at a time; it parses the text form (a ``{...}`` literal) at 0.6 µs per
    element, 4 ms for the 7,000 ids of a 10,000-event batch's lookup."""
    data = [value.int.to_bytes(16) for value in values]  # UUID.bytes, without its Python call
    if not data:
        return UuidArray(_EMPTY_ARRAY)
    header = _ARRAY_HEADER.pack(1, 0, postgres.types["uuid"].oid, len(data), 1)
    return UuidArray(header + _UUID_LENGTH + _UUID_LENGTH.join(data))


# The enums as plain text: pydantic_core serialises a str faster than a str enum.
_TEXT: dict[StrEnum | None, str | None] = {
    None: None,
    **{member: member.value for kind in (Action, Bucket, Status) for member in kind},
}


@dataclass(slots=True)
class Groups:
    """Every event of every entry a batch touches, per (workspace, entry id), the decisions
    that may auto-promote them, per (workspace, trace), and the entries whose candidate the
    store held before the batch (only their audit rows can be withdrawn)."""

    groups: dict[Key, list[Fact]]
    decisions: dict[Key, list[Fact]]
    stored: set[Key]
    extended: set[Key] = field(default_factory=set)


def load_groups(
    conn: psycopg.Connection,
    touched: Touched,
    rules: MemoryRules,
    fresh: bool = False,
    meanwhile: Callable[[], object] | None = None,
) -> Groups:
    """Lock the workspaces ``touched`` concerns, then read what the projection of the entries
    it names depends on: one round trip (the lock and the lookup are pipelined; the lookup's
    snapshot is taken once it holds the lock). ``meanwhile`` runs while the server works on
    them, before their results are read.

    ``fresh`` says the batch's events were all new to the store: then they are taken as
    noted in ``touched`` (whose groups this extends) and only what was stored before is read,
    and only where it can matter: nothing for an entry whose id is a candidate of another
    workspace in the batch (no such entry exists here, what names it is refused either way),
    no decisions nor references for a candidate of the batch below the auto-promotion
    confidence. The groups that what was read extends (or whose candidate's trace has a
    decision read) are ``extended``. Otherwise every event is read back from the store.
    """
    if fresh:
        groups, decisions = touched.groups, touched.decisions
        batch = touched.candidates
    else:
        groups, decisions, batch = {key: [] for key in touched.groups}, {}, {}
    ids: list[UUID] = []
    changed: list[UUID] = []
    refs: list[UUID] = []
    # (lists, not sets: a repeated id costs the lookup nothing, hashing UUIDs costs Python calls)
    traces: list[UUID] = []
    for workspace, entry_id in groups:
        candidate = batch.get(entry_id.int)
        if candidate is None:
            ids.append(entry_id)
            changed.append(entry_id)
            refs.append(entry_id)
        elif candidate.workspace_id == workspace:
            changed.append(entry_id)
            if may_auto_promote(candidate, rules):
                refs.append(entry_id)
                traces.append(candidate.trace_id)
    decided = [trace for _, trace in touched.decisions]
    with conn.pipeline():
        lock_workspaces(conn, touched.workspaces)
        if not (changed or decided):
            if meanwhile is not None:
                meanwhile()
            return Groups(groups, decisions, set())
        cursor = conn.execute(
            _LOAD_ENTRIES,
            {
                "ids": uuid_array(ids),
                "decided": uuid_array(decided),
                "confidence": rules.auto_promote_confidence,
                "changed": uuid_array(changed),
                "referenced": uuid_array(refs),
                "traces": uuid_array(traces),
                **{
                    f"known_{role}": uuid_array(noted if fresh else ())
                    for role, noted in touched.noted.items()
                },
            },
            prepare=False,
        )
        if meanwhile is not None:
            meanwhile()
        found = cursor.fetchall()
    rows = [(row[0], _fact(row, 1)) for row in found]
    stored: set[Key] = set()
    for role, fact in rows:
        if role == "c":
            key = (fact.workspace_id, fact.event_id)
            if key not in groups:
                # a candidate of a decided trace: a target only in its decision's workspace
                if (key[0], fact.trace_id) not in touched.decisions or not may_auto_promote(
                    fact, rules
                ):
                    continue
                groups[key] = []
            groups[key].append(fact)
            stored.add(key)
    extended = set(stored)
    decided_before: set[Key] = set()
    for role, fact in rows:
        workspace = fact.workspace_id
        if role == "p":
            change = change_payload(fact)
            if type(change) is tuple:
                _add(groups, (workspace, UUID(change[0])), fact, extended)
        elif role == "r":
            for entry_id in referenced(fact.payload):
                _add(groups, (workspace, entry_id), fact, extended)
        elif role == "d":
            decisions.setdefault((workspace, fact.trace_id), []).append(fact)
            decided_before.add((workspace, fact.trace_id))
    if decided_before:
        extended.update(
            key
            for key, facts in groups.items()
            if any(
                f.type == CANDIDATE and (f.workspace_id, f.trace_id) in decided_before
                for f in facts
            )
        )
    return Groups(groups, decisions, stored, extended)


def _add(groups: dict[Key, list[Fact]], key: Key, fact: Fact, extended: set[Key]) -> None:
    group = groups.get(key)
    if group is not None:
        group.append(fact)
        extended.add(key)


def project_batch(
    conn: psycopg.Connection, touched: Touched, rules: MemoryRules, fresh: bool = False
) -> MemoryCounts:
    """Bring the projection up to date with a batch whose events are already inserted, in the
    caller's transaction (``fresh``: every event of the batch was new to the store). Raise
    psycopg errors (the caller's transaction then rolls back)."""
    if not touched:
        return MemoryCounts()
    if not fresh:
        loaded = load_groups(conn, touched, rules)
        folded = fold_each(loaded.groups, loaded.decisions, rules)
    else:
        # The batch's own groups are folded while the server looks up what came before;
        # only those the lookup extends are folded again.
        folded = {}

        def fold_batch() -> None:
            folded.update(fold_each(touched.groups, touched.decisions, rules))

        loaded = load_groups(conn, touched, rules, fresh, meanwhile=fold_batch)
        if loaded.extended:
            folded.update(fold_each(loaded.groups, loaded.decisions, rules, loaded.extended))
    entries, rows = flatten(folded, touched.invalid_rows)
    counts = write(conn, entries, rows, loaded.stored, touched if fresh else None)
    counts.refolded = len(loaded.groups)
    return counts


def write(
    conn: psycopg.Connection,
    entries: Sequence[Entry],
    rows: Sequence[Change],
    groups: Collection[Key],
    batch: Touched | None = None,
) -> MemoryCounts:
    """Upsert ``entries`` and ``rows``; withdraw the other audit rows of ``groups`` (except
    rows keyed by their own event, which never change). One statement. The ``created`` rows
    are not stored: memory_trail derives them from the entries (they count as new when their
    entry is).

    ``batch``: the :class:`Touched` of a batch whose events were all new to the store. The
    entries of its candidates and the audit rows keyed by its events cannot exist yet: they
    are inserted with COPY after that statement, without its conflict checks. A COPY that
    meets one anyway (only a store that lost events it had projected could hold one) is
    undone and they are upserted instead.
    """
    counts = MemoryCounts()
    new_entries: list[Entry] = []
    new_rows: list[Change] = []
    rows = [r for r in rows if r.action is not Action.CREATED]
    if batch is not None:
        # An entry's id is its candidate's event id. UUIDs as integers: hashing a UUID runs
        # Python code, hashing an int does not.
        ids = {event_id.int for noted in batch.noted.values() for event_id in noted}
        old_entries: list[Entry] = []
        old_rows: list[Change] = []
        for e in entries:
            (new_entries if e.entry_id.int in ids else old_entries).append(e)
        for r in rows:
            (new_rows if r.event_id.int in ids else old_rows).append(r)
        entries, rows = old_entries, old_rows
    if entries or rows or groups:
        counts = _upsert(conn, entries, rows, groups)
    if not (new_entries or new_rows):
        return counts
    try:
        with conn.transaction():  # a savepoint: a failed COPY leaves the transaction usable
            _copy(conn, new_entries, new_rows)
    except psycopg.errors.UniqueViolation:
        added = _upsert(conn, new_entries, new_rows, ())
    else:
        added = MemoryCounts(new_rows=dict(Counter(r.action.value for r in new_rows)))
        if new_entries:
            added.new_rows[Action.CREATED.value] = len(new_entries)
    for action, n in added.new_rows.items():
        counts.new_rows[action] = counts.new_rows.get(action, 0) + n
    return counts


def _upsert(
    conn: psycopg.Connection,
    entries: Sequence[Entry],
    rows: Sequence[Change],
    groups: Collection[Key],
) -> MemoryCounts:
    """:data:`_WRITE` of ``entries``, ``rows`` and ``groups``."""
    counts = MemoryCounts()
    result = conn.execute(
        _WRITE,
        {
            "entries": to_json(list(map(_entry_row, entries))).decode(),
            "rows": to_json(list(map(_change_row, rows))).decode(),
            "groups": to_json(list(groups)).decode(),
        },
    ).fetchone()
    assert result is not None
    counts.withdrawn, counts.new_rows = result[0], result[1]
    if result[2]:
        counts.new_rows[Action.CREATED.value] = result[2]
    return counts


def _entry_row(e: Entry) -> tuple[Any, ...]:
    """An entry's columns, in _ENTRY_COLUMNS order."""
    return (
        e.entry_id, e.workspace_id, e.key, _TEXT[e.bucket], _TEXT[e.status], e.confidence,
        e.trace_id, e.satellite_id, e.created_at, e.updated_at, e.expires_at, e.last_event_id,
    )  # fmt: skip


def _change_row(r: Change) -> tuple[Any, ...]:
    """An audit row's columns, in _HISTORY_COLUMNS order."""
    return (
        r.entry_id, r.event_id, r.workspace_id, _TEXT[r.action], _TEXT[r.from_status],
        _TEXT[r.to_status], r.at, r.satellite_id, r.reason,
    )  # fmt: skip


def _copy(conn: psycopg.Connection, entries: Sequence[Entry], rows: Sequence[Change]) -> None:
    """Insert ``entries`` and ``rows`` with COPY."""
    cursor = conn.cursor()
    if entries:
        _copy_rows(cursor, _COPY_ENTRIES, _ENTRY_TYPES, map(_entry_row, entries))
    if rows:
        _copy_rows(cursor, _COPY_HISTORY, _HISTORY_TYPES, map(_change_row, rows))


def _copy_rows(
    cursor: psycopg.Cursor[Any],
    statement: str,
    types: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        write_row = copy.write_row
        for row in rows:
            write_row(row)


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
    write(conn, projection.entries, projection.history, ())
    return projection


_TS = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
# One entry as the API returns it (timestamps in UTC whatever the session's time zone).
ENTRY_JSON = f"""json_build_object(
    'entry_id', entry_id, 'workspace_id', workspace_id, 'key', key, 'value', {_VALUE},
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
     SELECT workspace_id FROM memory_trail WHERE entry_id = %(id)s AND event_id = %(id)s)
    LIMIT 1
)
SELECT o.workspace_id,
       (SELECT {ENTRY_JSON} FROM memory_entries WHERE entry_id = %(id)s),
       (SELECT coalesce(json_agg({_CHANGE_JSON} ORDER BY h.at, h.event_id), '[]'::json)::text
        FROM memory_trail h WHERE h.entry_id = %(id)s AND h.workspace_id = o.workspace_id)
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
        "SELECT {json}, entry_id, key, bucket, status, {value}::text, confidence, expires_at"
        " FROM memory_entries WHERE {where} ORDER BY key, entry_id LIMIT {limit}"
    ).format(
        json=sql.SQL(ENTRY_JSON),
        value=sql.SQL(_VALUE),
        where=sql.SQL(" AND ").join(where),
        limit=sql.Literal(limit),
    )
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
