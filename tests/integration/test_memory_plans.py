"""The projector's lookups and the memory list are index scans on a populated table: a batch
never costs a scan of the whole event log (EXPLAIN on the real PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from punk_records.memory import Status
from punk_records.memory_query import MemoryQuery
from punk_records.memory_store import _LOAD_ENTRIES, entries_sql, uuid_array

pytestmark = pytest.mark.integration

_POPULATE = """
INSERT INTO events (event_id, ts, workspace_id, satellite_id, trace_id, type, severity,
                    confidence, payload_json)
SELECT gen_random_uuid(), now() - make_interval(secs => i), 'ws-' || (i % 40), 'sat-1',
       gen_random_uuid(),
       (ARRAY['finding.logged', 'decision.recorded', 'task.created', 'memory.candidate',
              'memory.promoted'])[1 + i % 5],
       'low', 0.5,
       CASE i % 5
           WHEN 3 THEN jsonb_build_object('key', 'k' || i)
           WHEN 4 THEN jsonb_build_object('entry_id', gen_random_uuid()::text)
           ELSE CASE WHEN i % 97 = 0 THEN jsonb_build_object('refs', jsonb_build_array(
                    gen_random_uuid()::text)) ELSE '{"summary": "x"}'::jsonb END
       END
FROM generate_series(1, 60000) AS i
"""
_ENTRIES = """
INSERT INTO memory_entries (entry_id, workspace_id, key, bucket, status, confidence,
    trace_id, satellite_id, created_at, updated_at, expires_at, last_event_id)
SELECT gen_random_uuid(), 'ws-' || (i % 40), 'key/' || i, 'workspace', 'promoted', 0.9,
       gen_random_uuid(), 'sat-1', now(), now(), NULL, gen_random_uuid()
FROM generate_series(1, 40000) AS i
"""


@pytest.fixture(scope="module")
def populated(postgres: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, dead_letters, memory_entries, memory_history")
        conn.execute(_POPULATE)
        conn.execute(_ENTRIES)
        conn.execute("ANALYZE events")
        conn.execute("ANALYZE memory_entries")
        yield conn
        conn.execute("TRUNCATE events, dead_letters, memory_entries, memory_history")


def plan(conn: psycopg.Connection, statement: str | sql.Composable, params: Any) -> str:
    body = sql.SQL(statement) if isinstance(statement, str) else statement
    row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + body, params, prepare=False).fetchone()
    assert row is not None
    return json.dumps(row[0])


def test_given_a_batch_of_targets_then_loading_their_events_uses_indexes(populated):
    ids = [uuid.uuid4() for _ in range(200)]
    document = plan(
        populated,
        _LOAD_ENTRIES,
        {
            "ids": uuid_array(ids),
            "decided": uuid_array(uuid.uuid4() for _ in range(300)),
            "confidence": 0.75,
            "changed": uuid_array(ids),
            "referenced": uuid_array(ids[:50]),
            "traces": uuid_array(uuid.uuid4() for _ in range(50)),
            **{f"known_{role}": uuid_array(uuid.uuid4() for _ in range(500)) for role in "cprd"},
        },
    )
    assert '"Seq Scan"' not in document
    for index in ("events_pkey", "events_memory_change_idx", "events_refs_idx",
                  "events_trace_id_idx", "events_candidate_trace_idx"):  # fmt: skip
        assert index in document


@pytest.mark.parametrize(
    "filters",
    [{}, {"key": "key/12"}, {"bucket": "workspace", "include_expired": True}],
)
def test_given_a_memory_page_then_it_is_one_range_scan_of_the_key_index(populated, filters):
    query = MemoryQuery(workspace_id="ws-7", **filters)
    statement, params = entries_sql(query, (Status.CANDIDATE, Status.PROMOTED), None, 101)
    document = plan(populated, statement, params)
    assert '"Seq Scan"' not in document
    assert "memory_entries_workspace_key_idx" in document


@pytest.mark.parametrize("size", [0, 1, 3, 7_000])
def test_given_uuids_then_the_server_reads_the_binary_array_as_they_are(db, size):
    ids = [uuid.uuid4() for _ in range(size)]
    row = db.execute(
        "SELECT %(ids)b::uuid[], cardinality(%(ids)b::uuid[])", {"ids": uuid_array(ids)}
    ).fetchone()
    assert row == (ids, size)
