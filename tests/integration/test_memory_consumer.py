"""Edges of the memory projector through the consumer into the real PostgreSQL: payloads that
name no usable entry, entries named across workspaces, redelivery, what a batch reports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from local.postgres_service import Postgres
from punk_records.consumer import KafkaRecord, consume
from punk_records.memory_store import ENTRY_JSON
from punk_records.store import EventStore
from tests.factories import event_dict

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres: Postgres, db: psycopg.Connection) -> Iterator[EventStore]:
    events = EventStore(lambda: postgres.dsn)
    yield events
    events.reset()


def event(kind: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return event_dict(type=kind, payload=payload, **fields)


def deliver(store: EventStore, events: list[dict[str, Any]], first_offset: int = 0) -> Any:
    records = [
        KafkaRecord("memory-edges", 0, first_offset + i, b"k", json.dumps(e).encode())
        for i, e in enumerate(events)
    ]
    return consume(records, store)


def history(db: psycopg.Connection) -> set[tuple[str, str, str, str | None]]:
    rows = db.execute("SELECT entry_id, event_id, action, from_status FROM memory_trail")
    return {(str(e), str(v), a, f) for e, v, a, f in rows.fetchall()}


def test_given_an_entry_id_with_a_trailing_newline_then_the_batch_is_stored_with_an_invalid_row(
    store: EventStore, db: psycopg.Connection
) -> None:
    target = str(uuid.uuid4())
    bad = event("memory.promoted", {"entry_id": f"{target}\n"})
    refs = event("finding.logged", {"refs": [f"{target}\n"]})

    outcome = deliver(store, [bad, refs])

    assert outcome.inserted == 2
    assert history(db) == {(bad["event_id"], bad["event_id"], "invalid", None)}


@pytest.mark.parametrize("candidate_first", [True, False])
def test_given_a_promotion_of_an_invalid_candidate_then_one_invalid_and_one_refused_row(
    store: EventStore, db: psycopg.Connection, candidate_first: bool
) -> None:
    candidate = event("memory.candidate", {"bucket": "attic"}, ts="2026-11-26T06:00:00Z")
    promotion = event(
        "memory.promoted", {"entry_id": candidate["event_id"]}, ts="2026-11-26T07:00:00Z"
    )
    order = [candidate, promotion] if candidate_first else [promotion, candidate]

    deliver(store, order[:1])
    deliver(store, order[1:], first_offset=1)
    deliver(store, order, first_offset=2)  # redelivered together: nothing changes

    cid, pid = candidate["event_id"], promotion["event_id"]
    assert history(db) == {(cid, cid, "invalid", None), (cid, pid, "refused", None)}
    assert db.execute("SELECT count(*) FROM memory_entries").fetchone() == (0,)


def test_given_a_candidate_promoted_from_another_workspace_then_refused_and_the_entry_unchanged(
    store: EventStore, db: psycopg.Connection
) -> None:
    candidate = event("memory.candidate", {"key": "k"}, workspace_id="ws-alpha")
    naming = {"entry_id": candidate["event_id"]}
    elsewhere = event("memory.promoted", naming, ts="2026-11-26T09:00:00Z", workspace_id="ws-b")
    here = event("memory.promoted", naming, ts="2026-11-26T09:00:00Z", workspace_id="ws-alpha")

    deliver(store, [candidate, elsewhere, here])

    cid = candidate["event_id"]
    assert history(db) == {
        (cid, cid, "created", None),
        (cid, elsewhere["event_id"], "refused", None),
        (cid, here["event_id"], "promoted", "candidate"),
    }
    assert db.execute("SELECT status FROM memory_entries").fetchall() == [("promoted",)]


def test_given_invalid_payloads_then_each_is_counted_once_even_when_redelivered(
    store: EventStore, db: psycopg.Connection
) -> None:
    batch = [
        event("memory.candidate", {"summary": "no key"}),
        event("memory.retracted", {"summary": "no entry_id"}),
        event("memory.promoted", {"entry_id": "not-a-uuid"}),
    ]

    first = deliver(store, batch)
    again = deliver(store, batch, first_offset=3)

    assert first.memory.metrics()["MemoryPayloadsInvalid"] == 3
    assert again.memory.metrics()["MemoryPayloadsInvalid"] == 0
    reasons = db.execute("SELECT reason FROM memory_trail ORDER BY reason").fetchall()
    assert [r[0] for r in reasons] == [
        "invalid payload: entry_id: Field required",
        "invalid payload: entry_id: entry_id must be a UUID like 0f8e6a5c-1d2b-4c3a-9e8f-"
        "7a6b5c4d3e2f",
        "invalid payload: key: Field required",
    ]


def test_given_events_lost_after_their_projection_when_delivered_again_then_it_is_kept_as_is(
    store: EventStore, db: psycopg.Connection
) -> None:
    # A batch new to the store COPies its entries and audit rows, which cannot exist yet
    # unless the store lost events it had projected: then they are upserted instead.
    candidate = event("memory.candidate", {"key": "k"}, ts="2026-11-26T06:00:00Z")
    promotion = event(
        "memory.promoted", {"entry_id": candidate["event_id"]}, ts="2026-11-26T07:00:00Z"
    )
    deliver(store, [candidate, promotion])
    before = history(db)
    db.execute("DELETE FROM events")

    again = deliver(store, [candidate, promotion], first_offset=2)

    assert again.inserted == 2
    assert again.memory.metrics()["MemoryEntriesCreated"] == 0
    assert history(db) == before
    assert db.execute("SELECT status FROM memory_entries").fetchall() == [("promoted",)]


@pytest.mark.parametrize("earlier", ["decision", "references", "promotion"])
def test_given_events_stored_before_a_late_candidate_then_its_new_batch_applies_them(
    store: EventStore, db: psycopg.Connection, earlier: str
) -> None:
    # A batch new to the store is folded while the earlier events are looked up; the
    # entries those events concern are folded again with them.
    trace = str(uuid.uuid4())
    candidate = event(
        "memory.candidate", {"key": "k"}, ts="2026-11-26T06:00:00Z", trace_id=trace,
        confidence=0.9,
    )  # fmt: skip
    cid = candidate["event_id"]
    stored = {
        "decision": [event("decision.recorded", {}, ts="2026-11-26T07:00:00Z", trace_id=trace)],
        "references": [
            event("finding.logged", {"refs": [cid]}, ts=f"2026-11-26T0{hour}:00:00Z")
            for hour in (7, 8)
        ],
        "promotion": [event("memory.promoted", {"entry_id": cid}, ts="2026-11-26T07:00:00Z")],
    }[earlier]
    deliver(store, stored)

    deliver(store, [candidate], first_offset=len(stored))

    trigger = stored[-1]["event_id"]
    assert (cid, trigger, "promoted", "candidate") in history(db)
    assert db.execute("SELECT status, last_event_id::text FROM memory_entries").fetchall() == [
        ("promoted", trigger)
    ]


def test_given_created_rows_an_older_consumer_stored_then_the_trail_shows_each_once(
    store: EventStore, db: psycopg.Connection
) -> None:
    # GIVEN an entry and its promotion, then the "created" row that code from before
    # migration 0005 also stored in memory_history (as it may during a deploy)
    candidate = event(
        "memory.candidate", {"key": "k", "value": {"owner": "ana"}}, ts="2026-11-26T06:00:00Z"
    )
    promotion = event(
        "memory.promoted", {"entry_id": candidate["event_id"]}, ts="2026-11-26T07:00:00Z"
    )
    counted = deliver(store, [candidate, promotion]).memory.metrics()
    before = db.execute("SELECT * FROM memory_trail ORDER BY at, event_id").fetchall()
    db.execute(
        "INSERT INTO memory_history (entry_id, event_id, workspace_id, action, from_status,"
        " to_status, at, satellite_id, reason)"
        " SELECT entry_id, entry_id, workspace_id, 'created', NULL, 'candidate', created_at,"
        " satellite_id, NULL FROM memory_entries"
    )
    # THEN the trail is unchanged: one created row (derived from the entry), one promotion;
    # the entry's value is its candidate's
    assert db.execute("SELECT * FROM memory_trail ORDER BY at, event_id").fetchall() == before
    assert [row[3] for row in before] == ["created", "promoted"]
    assert counted["MemoryEntriesCreated"] == 1
    assert counted["MemoryEntriesPromoted"] == 1
    entry = store.connection().execute("SELECT " + ENTRY_JSON + " FROM memory_entries").fetchone()
    assert entry is not None
    assert json.loads(entry[0])["value"] == {"owner": "ana"}
