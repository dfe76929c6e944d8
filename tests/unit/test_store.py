"""EventStore's retry, without a database: a failed first attempt must resend every event."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from punk_records import store as store_module
from punk_records.errors import StoreUnavailable
from punk_records.store import DeadLetter, EventStore, StoredEvent, WriteResult
from tests.factories import envelope


class Connection:
    closed = broken = False

    def close(self) -> None:
        self.closed = True


def test_given_a_write_that_fails_half_way_when_retried_then_every_event_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a first attempt that reads two events of an iterator, then loses the connection
    attempts: list[list[StoredEvent]] = []

    def write_batch(
        conn: Connection, events: Iterable[StoredEvent], dead_letters: Sequence[DeadLetter] = ()
    ) -> WriteResult:
        source = iter(events)
        if not attempts:
            attempts.append([next(source), next(source)])
            raise StoreUnavailable("batch write failed: connection lost")
        attempts.append(list(source))
        return WriteResult(len(attempts[-1]), 0, 0)

    monkeypatch.setattr(store_module, "write_batch", write_batch)
    monkeypatch.setattr(store_module, "connect", lambda *_args: Connection())
    batch = [StoredEvent(envelope(), "t", 0, i) for i in range(5)]

    # WHEN the store writes the events as a one-shot iterator
    result = EventStore(lambda: "postgresql://unused").write(iter(batch))

    # THEN the second attempt got all five, in order
    assert attempts[1] == batch
    assert result.inserted == 5
