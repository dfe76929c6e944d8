"""EventStore's retry, without a database: a failed first attempt must resend every event."""

from __future__ import annotations

import pytest

from punk_records import store as store_module
from punk_records.consumer import ClassifiedBatch, KafkaRecord
from punk_records.errors import StoreUnavailable
from punk_records.ports import Batch, StoredEvent, WriteResult
from punk_records.store import EventStore
from tests.factories import envelope


class Connection:
    closed = broken = False

    def close(self) -> None:
        self.closed = True


def test_given_a_write_that_fails_half_way_when_retried_then_every_event_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a first attempt that reads two events of a streaming batch, then loses the connection
    attempts: list[list[StoredEvent]] = []

    def write_batch(conn: Connection, batch: Batch, *_rest: object) -> WriteResult:
        source = batch.events()
        if not attempts:
            attempts.append([next(source), next(source)])
            raise StoreUnavailable("batch write failed: connection lost")
        attempts.append(list(source))
        return WriteResult(len(attempts[-1]), 0, len(batch.dead_letters()))

    monkeypatch.setattr(store_module, "write_batch", write_batch)
    monkeypatch.setattr(store_module, "connect", lambda *_args: Connection())
    envelopes = [envelope() for _ in range(5)]
    records = (KafkaRecord("t", 0, i, None, env.kafka_value()) for i, env in enumerate(envelopes))
    records_and_poison = [*records, KafkaRecord("t", 0, 5, None, b"{")]

    # WHEN the store writes the batch, which classifies its records as they are read
    result = EventStore(lambda: "postgresql://unused").write(ClassifiedBatch(records_and_poison))

    # THEN the second attempt got all five events, in order, and the dead letter after them
    assert [stored.envelope for stored in attempts[1]] == envelopes
    assert (result.inserted, result.dead_lettered) == (5, 1)


def test_given_plain_events_when_written_then_they_are_one_replayable_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[StoredEvent]] = []

    def write_batch(conn: Connection, batch: Batch, *_rest: object) -> WriteResult:
        seen.append(list(batch.events()))
        if len(seen) == 1:
            raise StoreUnavailable("batch write failed: connection lost")
        return WriteResult(len(seen[-1]), 0, 0)

    monkeypatch.setattr(store_module, "write_batch", write_batch)
    monkeypatch.setattr(store_module, "connect", lambda *_args: Connection())
    events = [StoredEvent(envelope(), "t", 0, i) for i in range(3)]
    EventStore(lambda: "postgresql://unused").write(iter(events))
    assert seen == [events, events]
