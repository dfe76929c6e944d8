"""Property: the memory projection is a pure function of a workspace's events.

Random sequences of memory and other events go through the real consumer into the real
PostgreSQL, in random orders and random batch splits, with redeliveries. Afterwards the live
projection must equal (1) the replayed projection (same digest, computed by PostgreSQL) and
(2) a plain in-memory fold written here, independently of ``punk_records.memory``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from punk_records.consumer import KafkaRecord, consume
from punk_records.memory import MemoryRules
from punk_records.memory_store import digest, lock_workspaces, rebuild
from punk_records.store import EventStore

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 1, tzinfo=UTC)
WORKSPACES = ("ws-p", "ws-q")
TRACES = tuple(uuid.UUID(int=i + 1) for i in range(2))
# Offsets that put events on, before and after every boundary: TTLs of 1 and 24 hours, the
# 7-day window, and equal timestamps (ties broken by event_id).
HOURS = (0, 0, 1, 23, 24, 25, 167, 168, 169)
CANDIDATE_PAYLOADS: tuple[dict[str, Any], ...] = (
    {"key": "deploy/cadence"},
    {"key": "owner", "value": {"team": "storage"}, "bucket": "global"},
    {"key": "tmp", "bucket": "ephemeral"},
    {"key": "tmp-1h", "bucket": "ephemeral", "ttl_hours": 1},
    {"key": "tmp-max", "bucket": "ephemeral", "ttl_hours": 720, "value": {"n": 1}},
    {"key": "ws", "bucket": "workspace", "note": "extra fields are ignored"},
    # invalid ones
    {},
    {"key": ""},
    {"key": "   "},
    {"key": "k" * 257},
    {"key": 5},
    {"key": "k", "bucket": "workspace", "ttl_hours": 5},
    {"key": "k", "bucket": "ephemeral", "ttl_hours": 721},
    {"key": "k", "bucket": "ephemeral", "ttl_hours": 0},
    {"key": "k", "value": [1, 2]},
    {"key": "k", "value": None},
    {"key": "k", "bucket": "attic"},
)


@st.composite
def universes(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = [
        uuid.UUID(int=n)
        for n in draw(st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=22, unique=True))
    ]
    events: list[dict[str, Any]] = []
    candidates: list[str] = []
    for event_id in ids:
        kind = draw(
            st.sampled_from(
                ["memory.candidate"] * 4
                + ["memory.promoted"] * 2
                + ["memory.retracted", "decision.recorded", "decision.recorded", "finding.logged"]
            )
        )
        payload: dict[str, Any]
        if kind == "memory.candidate":
            payload = dict(draw(st.sampled_from(CANDIDATE_PAYLOADS)))
            candidates.append(str(event_id))
        elif kind in ("memory.promoted", "memory.retracted"):
            target = draw(
                st.one_of(
                    st.sampled_from(candidates) if candidates else st.nothing(),
                    st.sampled_from(candidates).map(str.upper) if candidates else st.nothing(),
                    st.just(str(uuid.UUID(int=7))),
                    st.just("not-a-uuid"),
                    st.just(12),
                )
            )
            payload = {"entry_id": target}
            reason = draw(st.sampled_from([None, "checked by a human", 5, "r" * 1001, "absent"]))
            if reason != "absent":
                payload["reason"] = reason
        else:
            payload = {"summary": "something happened"}
        refs: list[str] = draw(
            st.lists(st.sampled_from([*candidates, "not-a-uuid"]), max_size=3)
            if candidates
            else st.just([])
        )
        if refs or draw(st.integers(0, 3)) == 0:
            payload["refs"] = refs
        events.append(
            {
                "event_id": str(event_id),
                "schema_version": 1,
                "ts": (BASE + timedelta(hours=draw(st.sampled_from(HOURS)))).isoformat(),
                "workspace_id": draw(st.sampled_from(WORKSPACES)),
                "satellite_id": draw(st.sampled_from(["sat-a", "sat-b"])),
                "trace_id": str(draw(st.sampled_from(TRACES))),
                "type": kind,
                "severity": "low",
                "confidence": draw(st.sampled_from([0.5, 0.74, 0.75, 0.9])),
                "payload": payload,
            }
        )
    return events


@st.composite
def deliveries(draw: st.DrawFn, events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The events in a random order, some twice, cut into random batches."""
    order = draw(st.permutations(events))
    again = draw(st.lists(st.sampled_from(events), max_size=4)) if events else []
    stream = list(order) + again
    positions = sorted(draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4)))
    batches, start = [], 0
    for cut in [*positions, len(stream)]:
        if cut > start:
            batches.append(stream[start:cut])
            start = cut
    return batches


def records(batch: list[dict[str, Any]], first_offset: int) -> Iterator[KafkaRecord]:
    for i, event in enumerate(batch):
        yield KafkaRecord(
            topic="memory-property",
            partition=0,
            offset=first_offset + i,
            key=event["workspace_id"].encode(),
            value=json.dumps(event).encode(),
        )


# ---- the reference fold: the rules of docs/memory.md, written out plainly -------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _valid_candidate(p: dict[str, Any]) -> dict[str, Any] | None:
    key = p.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= 256 or not key.strip():
        return None
    value = p.get("value", {})
    bucket = p.get("bucket", "workspace")
    if not isinstance(value, dict) or bucket not in ("global", "workspace", "ephemeral"):
        return None
    ttl = p.get("ttl_hours")
    if ttl is not None and (type(ttl) is not int or not 1 <= ttl <= 720):
        return None
    if bucket != "ephemeral" and ttl is not None:
        return None
    if bucket == "ephemeral" and ttl is None:
        ttl = 24
    return {"key": key, "value": value, "bucket": bucket, "ttl": ttl}


def _valid_change(p: dict[str, Any]) -> str | None:
    target, reason = p.get("entry_id"), p.get("reason")
    if not isinstance(target, str) or not _UUID.match(target):
        return None
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        return None
    return target.lower()


def reference(events: list[dict[str, Any]], workspace: str) -> tuple[set[Any], set[Any]]:
    """(entries, audit rows) of ``workspace``, folding its events once in (ts, event_id) order."""
    unique = {e["event_id"]: e for e in events if e["workspace_id"] == workspace}
    ordered = sorted(
        unique.values(), key=lambda e: (datetime.fromisoformat(e["ts"]), uuid.UUID(e["event_id"]))
    )
    entries: dict[str, dict[str, Any]] = {}
    rows: list[tuple[Any, ...]] = []

    def row(entry_id: str, e: dict[str, Any], action: str, old: Any, new: Any) -> None:
        at = datetime.fromisoformat(e["ts"])
        rows.append((entry_id, e["event_id"], action, old, new, at, e["satellite_id"]))

    for e in ordered:
        ts, eid, p = datetime.fromisoformat(e["ts"]), e["event_id"], e["payload"]
        done_for: set[str] = set()
        if e["type"] == "memory.candidate":
            valid = _valid_candidate(p)
            if valid is None:
                row(eid, e, "invalid", None, None)
            else:
                entries[eid] = {
                    **valid, "status": "candidate", "ts": ts, "pos": (ts, uuid.UUID(eid)),
                    "conf": e["confidence"], "trace": e["trace_id"], "sat": e["satellite_id"],
                    "updated": ts, "last": eid, "fired": False, "refs": set(),
                    "expires": ts + timedelta(hours=valid["ttl"]) if valid["ttl"] else None,
                }  # fmt: skip
                row(eid, e, "created", None, "candidate")
        # (a candidate's refs count towards other entries' auto-promotion too)
        elif e["type"] in ("memory.promoted", "memory.retracted"):
            target = _valid_change(p)
            if target is None:
                row(eid, e, "invalid", None, None)
            else:
                done_for.add(target)
                entry = entries.get(target)
                status = entry["status"] if entry else None
                expires = entry["expires"] if entry else None
                expired = expires is not None and ts >= expires
                if entry is None or status == "retracted":
                    row(target, e, "refused", status, status)
                elif e["type"] == "memory.retracted":
                    row(target, e, "retracted", status, "retracted")
                    entry.update(status="retracted", updated=ts, last=eid)
                elif status == "promoted" or expired:
                    row(target, e, "refused", status, status)
                else:
                    row(target, e, "promoted", status, "promoted")
                    entry.update(status="promoted", updated=ts, last=eid)
        refs = p.get("refs") if isinstance(p.get("refs"), list) else []
        for entry_id, entry in entries.items():
            if entry["fired"] or entry["conf"] < 0.75:
                continue
            if (ts, uuid.UUID(eid)) <= entry["pos"] or ts > entry["ts"] + timedelta(days=7):
                continue
            trigger = e["type"] == "decision.recorded" and e["trace_id"] == entry["trace"]
            if not trigger and entry_id in refs:
                entry["refs"].add(eid)
                trigger = len(entry["refs"]) >= 2
            if not trigger:
                continue
            entry["fired"] = True
            if entry["status"] != "candidate" or entry_id in done_for:
                continue
            if entry["expires"] is not None and ts >= entry["expires"]:
                row(entry_id, e, "refused", "candidate", "candidate")
            else:
                row(entry_id, e, "promoted", "candidate", "promoted")
                entry.update(status="promoted", updated=ts, last=eid)
    got_entries = {
        (k, v["key"], json.dumps(v["value"], sort_keys=True), v["bucket"], v["status"],
         v["conf"], v["ts"], v["updated"], v["expires"],
         v["last"])
        for k, v in entries.items()
    }  # fmt: skip
    return got_entries, set(rows)


def stored(conn: psycopg.Connection, workspace: str) -> tuple[set[Any], set[Any]]:
    entries = {
        (str(r[0]), r[1], json.dumps(r[2], sort_keys=True), r[3], r[4], r[5], r[6], r[7], r[8],
         str(r[9]))
        for r in conn.execute(
            "SELECT entry_id, key,"
            " coalesce((SELECT payload_json -> 'value' FROM events WHERE event_id = entry_id),"
            " '{}'), bucket, status, confidence, created_at, updated_at, expires_at,"
            " last_event_id FROM memory_entries WHERE workspace_id = %s",
            (workspace,),
        )
    }  # fmt: skip
    rows = {
        (str(r[0]), str(r[1]), r[2], r[3], r[4], r[5], r[6])
        for r in conn.execute(
            "SELECT entry_id, event_id, action, from_status, to_status, at, satellite_id"
            " FROM memory_trail WHERE workspace_id = %s",
            (workspace,),
        )
    }
    return entries, rows


@pytest.fixture
def memory_db(postgres: Any) -> Iterator[tuple[psycopg.Connection, EventStore]]:
    store = EventStore(lambda: postgres.dsn)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        yield conn, store
    store.reset()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_live_projection_equals_replay_and_reference_fold(
    memory_db: tuple[psycopg.Connection, EventStore], data: st.DataObject
) -> None:
    conn, store = memory_db
    conn.execute("TRUNCATE events, dead_letters, memory_entries, memory_history")
    events = data.draw(universes(), label="events")
    batches = data.draw(deliveries(events), label="batches")

    # GIVEN the events delivered by the consumer in random order, batches and redeliveries
    offset = 0
    for batch in batches:
        consume(records(batch, offset), store)
        offset += len(batch)

    for workspace in WORKSPACES:
        # THEN the live projection is the reference fold of the events in (ts, event_id) order
        live = stored(conn, workspace)
        expected = reference(events, workspace)
        assert live[0] == expected[0]
        assert live[1] == expected[1]
        # AND replaying the workspace from its events rebuilds it byte for byte
        before = digest(conn, workspace)
        with conn.transaction():
            lock_workspaces(conn, [workspace])
            rebuild(conn, workspace, MemoryRules())
        assert digest(conn, workspace) == before
