"""What the use cases need from the outside world, and the values they exchange with it.

``Producer`` is implemented by :class:`punk_records.producer.ProducerCache` (Kafka), ``Store`` by
:class:`punk_records.store.EventStore` (PostgreSQL); tests pass fakes. Nothing here imports a
client library.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from punk_records.acceptance import Record
from punk_records.envelope import Envelope

if TYPE_CHECKING:
    # Only the consumer's side fills it: the ingest function's cold start does not load the
    # memory rules (about 6 ms of import).
    from punk_records.memory import MemoryCounts


class StoredEvent(NamedTuple):
    """A valid envelope and the Kafka coordinates it was read from (None when not from Kafka).

    A NamedTuple, like the other per-record types: one is built for every record, and a frozen
    dataclass costs three times as much to build.

    ``payload_json`` is the payload already encoded as compact UTF-8 JSON, when the caller has
    it; otherwise the store encodes ``envelope.payload`` itself.
    """

    envelope: Envelope
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    payload_json: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that can never become an event, kept with the reason."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    error: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch write did: ``inserted`` new events, ``duplicates`` already stored."""

    inserted: int
    duplicates: int
    dead_lettered: int
    # What the batch did to the memory projection (None: not projected, e.g. a fake store).
    memory: MemoryCounts | None = None


@runtime_checkable
class Batch(Protocol):
    """A batch to store: its events, read once as they stream, then its dead letters.

    :class:`punk_records.consumer.ClassifiedBatch` is the streaming one; ``events()`` may be
    called again to replay the batch (a retry on a fresh connection).
    """

    def events(self) -> Iterator[StoredEvent]: ...

    def dead_letters(self) -> Sequence[DeadLetter]:
        """Complete only once ``events()`` has been exhausted."""
        ...


@dataclass(frozen=True, slots=True)
class FixedBatch:
    """A batch already in memory (tools, tests, benchmarks)."""

    stored: Sequence[StoredEvent] = ()
    letters: Sequence[DeadLetter] = ()

    def events(self) -> Iterator[StoredEvent]:
        return iter(self.stored)

    def dead_letters(self) -> Sequence[DeadLetter]:
        return self.letters


def as_batch(
    events: Batch | Iterable[StoredEvent], dead_letters: Sequence[DeadLetter] = ()
) -> Batch:
    """``events`` itself when it is a Batch, else a FixedBatch of them and ``dead_letters``."""
    if isinstance(events, Batch):
        return events
    return FixedBatch(list(events), dead_letters)


class Producer(Protocol):
    """What ingest needs from Kafka: produce every accepted record, or raise ProduceError
    (CircuitOpen while no broker is reachable) or RecordTooLarge (the broker refused one)."""

    def produce(self, records: Sequence[Record]) -> None: ...


class Store(Protocol):
    """What the consumer and the health check need from PostgreSQL."""

    def write(self, batch: Batch) -> WriteResult:
        """Store the batch's events, then its dead letters, in one transaction; raise
        StoreUnavailable when nothing could be committed."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        ...
