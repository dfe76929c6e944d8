"""The consumer domain: poison classification, redaction, batch outcome (no database)."""

from __future__ import annotations

import gc
import json

import pytest

from punk_records.acceptance import DEFAULT_LIMITS, Limits
from punk_records.consumer import (
    BatchOutcome,
    ClassifiedBatch,
    KafkaRecord,
    OffsetRange,
    classify,
    consume,
)
from punk_records.errors import InvalidEnvelope, StoreUnavailable
from punk_records.ports import Batch, DeadLetter, StoredEvent, WriteResult
from tests.factories import envelope, event_dict


class FakeStore:
    """In-memory Store: dedupes by event_id and by Kafka coordinates like the real one."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: dict[str, StoredEvent] = {}
        self.letters: dict[tuple[str, int, int], DeadLetter] = {}
        self.writes = 0

    def write(self, batch: Batch) -> WriteResult:
        self.writes += 1
        if self.fail:
            raise StoreUnavailable("batch write failed: connection refused")
        inserted = dead = received = 0
        for item in batch.events():  # before the dead letters, as the real store does
            received += 1
            key = str(item.envelope.event_id)
            if key not in self.events:
                self.events[key] = item
                inserted += 1
        for letter in batch.dead_letters():
            coords = (letter.topic, letter.partition, letter.offset)
            if coords not in self.letters:
                self.letters[coords] = letter
                dead += 1
        return WriteResult(inserted, received - inserted, dead)

    def ping(self) -> None:
        if self.fail:
            raise StoreUnavailable("PostgreSQL check failed: connection refused")


def kafka_record(
    value: bytes | None, partition: int = 0, offset: int = 0, topic: str = "t"
) -> KafkaRecord:
    return KafkaRecord(topic, partition, offset, b"ws-alpha", value)


def value_of(**overrides: object) -> bytes:
    return json.dumps(event_dict(**overrides)).encode()


def poison_reason(value: bytes | None, limits: Limits = DEFAULT_LIMITS) -> str:
    store = FakeStore()
    consume([kafka_record(value)], store, limits)
    (letter,) = store.letters.values()
    return letter.error


def test_given_valid_record_when_classified_then_envelope_is_normalised():
    stored = classify(kafka_record(value_of(ts="2026-11-26T08:00:00+02:00"), 3, 14, "a-b"))
    assert stored.envelope.ts.isoformat() == "2026-11-26T06:00:00+00:00"
    assert (stored.topic, stored.partition, stored.offset) == ("a-b", 3, 14)


def test_given_payload_with_secret_when_classified_then_payload_is_redacted():
    raw = value_of(payload={"summary": "leak", "password": "hunter2-not-real"})
    stored = classify(kafka_record(raw))
    assert stored.envelope.payload["summary"] == "leak"
    assert "hunter2" not in json.dumps(stored.envelope.payload)
    assert json.loads(stored.payload_json) == stored.envelope.payload


@pytest.mark.parametrize(
    ("value", "starts"),
    [
        (None, "record has no value"),
        (b"\xff\xfe\x00", "value is not UTF-8: invalid byte at position 0"),
        (b'{"a": "caf\xe9"}', "value is not UTF-8: invalid byte at position 10"),
        (b"", "value is not JSON: "),
        (b"{not json", "value is not JSON: "),
        (b"[1, 2]", "not a valid envelope: Input should be an object"),
        (b'"a string"', "not a valid envelope: Input should be an object"),
        (value_of(severity="catastrophic"), "not a valid envelope: severity: "),
        # Valid ISO-8601, but before year 1 in UTC: refused, not a batch that fails every retry.
        (value_of(ts="0001-01-01T00:00:00+14:00"), "not a valid envelope: ts: ts is outside"),
        (value_of(schema_version=2), "not a valid envelope: schema_version: "),
        (
            value_of(payload={"x": "NUL \u0000 inside"}),
            "not a valid envelope: payload: contains a NUL",
        ),
        (value_of(satellite_id="sat\u00001"), "not a valid envelope: satellite_id: contains a NUL"),
        (
            value_of(payload={"x": 1.5}).replace(b"1.5", b"NaN"),
            "not a valid envelope: payload: holds NaN",
        ),
        (
            value_of(payload={"x": [2.5]}).replace(b"2.5", b"-Infinity"),
            "not a valid envelope: payload: holds NaN",
        ),
    ],
)
def test_given_poison_value_when_consumed_then_dead_lettered_with_readable_reason(value, starts):
    assert poison_reason(value).startswith(starts)


def test_given_payload_over_the_limit_when_consumed_then_dead_lettered_as_too_large():
    reason = poison_reason(value_of(payload={"blob": "x" * 2_000}), Limits(1_024, 8_192))
    assert reason.startswith("not a valid envelope: payload: ")
    assert "the limit is 1024" in reason


def test_given_record_over_the_limit_when_consumed_then_dead_lettered_naming_the_limit():
    reason = poison_reason(value_of(payload={"blob": "x" * 2_000}), Limits(4_096, 2_048))
    assert "the limit is 2048 (MAX_RECORD_BYTES)" in reason


def test_given_escaped_backslash_u0000_text_when_classified_then_not_poison():
    # The JSON text \\u0000 is a backslash followed by "u0000", which PostgreSQL stores fine.
    stored = classify(kafka_record(value_of(payload={"path": "C:\\u0000", "n": "NaN"})))
    assert stored.envelope.payload == {"path": "C:\\u0000", "n": "NaN"}


def test_given_many_validation_errors_when_dead_lettered_then_reason_names_the_first_three():
    raw = json.dumps({"event_id": "nope", "type": "x", "severity": "y", "extra": 1}).encode()
    reason = poison_reason(raw)
    assert reason.startswith("not a valid envelope: event_id: Input should be a valid UUID")
    assert reason.count(": ") >= 3
    assert "more)" in reason
    assert "nope" not in reason  # the record's content is never quoted


def test_given_invalid_envelope_error_then_invalid_envelope_is_raised_by_classify():
    with pytest.raises(InvalidEnvelope):
        classify(kafka_record(b"{}"))


def test_given_mixed_batch_when_consumed_then_good_stored_and_poison_dead_lettered_in_one_write():
    # GIVEN two valid records, one duplicate of them and two poison records over two partitions
    first, second = value_of(), value_of()
    batch = [
        kafka_record(first, 0, 10),
        kafka_record(b"\xff", 0, 11),
        kafka_record(second, 1, 5),
        kafka_record(first, 1, 6),
        kafka_record(None, 1, 7),
    ]
    store = FakeStore()
    # WHEN consumed
    outcome = consume(batch, store)
    # THEN one write stored both events once and both poison records with their coordinates
    assert store.writes == 1
    assert (outcome.received, outcome.inserted, outcome.duplicates) == (5, 2, 1)
    assert (outcome.poison, outcome.dead_lettered) == (2, 2)
    assert sorted(store.letters) == [("t", 0, 11), ("t", 1, 7)]
    assert store.letters[("t", 0, 11)].value == b"\xff"
    assert store.letters[("t", 0, 11)].key == b"ws-alpha"
    assert outcome.partitions == {"t-0": OffsetRange(10, 11, 2), "t-1": OffsetRange(5, 7, 3)}
    assert [p["offset"] for p in outcome.poison_sample] == [11, 7]
    assert outcome.poison_sample[0]["partition"] == "t-0"


def test_given_a_token_as_satellite_id_when_consumed_then_dead_lettered_without_the_token():
    # GIVEN a record produced straight to Kafka whose satellite_id is a credential
    token = "xoxb-" + "2841-9917-" + "Kq8vLm3TnR7wXp2Kc9Hd"
    record = KafkaRecord("t", 0, 3, token.encode(), value_of(satellite_id=token))
    store = FakeStore()
    # WHEN consumed
    outcome = consume([record], store)
    # THEN it is a dead letter naming the field, and neither its value nor key keeps the token
    assert (outcome.inserted, outcome.dead_lettered) == (0, 1)
    (letter,) = store.letters.values()
    assert letter.error.startswith("not a valid envelope: satellite_id: looks like a credential")
    assert token.encode() not in letter.value + letter.key
    assert b"[REDACTED:slack_token]" in letter.value


def test_given_same_batch_twice_when_consumed_then_second_time_only_duplicates():
    batch = [kafka_record(value_of(), 0, i) for i in range(3)] + [kafka_record(b"x", 0, 3)]
    store = FakeStore()
    consume(batch, store)
    again = consume(batch, store)
    assert (again.inserted, again.duplicates, again.poison, again.dead_lettered) == (0, 3, 1, 0)


def test_given_valid_record_when_consumed_then_coordinates_are_kept():
    store = FakeStore()
    consume([kafka_record(value_of(), partition=2, offset=99, topic="a-b-c")], store)
    (stored,) = store.events.values()
    assert (stored.topic, stored.partition, stored.offset) == ("a-b-c", 2, 99)


def test_given_empty_batch_when_consumed_then_store_untouched():
    store = FakeStore(fail=True)
    outcome = consume([], store)
    assert (outcome.received, store.writes, outcome.partitions) == (0, 0, {})


def test_given_store_unavailable_when_consumed_then_error_propagates():
    with pytest.raises(StoreUnavailable) as caught:
        consume([kafka_record(value_of())], FakeStore(fail=True))
    assert caught.value.retriable


def test_given_outcome_when_summarised_then_fields_are_plain_json():
    outcome = BatchOutcome(
        received=3,
        inserted=1,
        duplicates=1,
        poison=1,
        dead_lettered=1,
        partitions={"t-0": OffsetRange(4, 6, 3)},
        poison_sample=[{"partition": "t-0", "offset": 5, "reason": "record has no value"}],
        elapsed_ms=1.23456,
    )
    summary = json.loads(json.dumps(outcome.summary()))
    assert summary["partitions"] == {"t-0": {"first": 4, "last": 6, "count": 3}}
    assert (summary["received"], summary["elapsed_ms"]) == (3, 1.235)


def test_given_envelope_from_factory_when_written_as_kafka_value_then_round_trips():
    env = envelope()
    stored = classify(kafka_record(env.kafka_value()))
    assert stored.envelope == env
    assert json.loads(stored.payload_json) == env.payload


def test_given_batch_when_consumed_then_garbage_collector_is_left_as_found():
    # GIVEN the collector enabled WHEN a batch is consumed, even one failing unexpectedly
    assert gc.isenabled()
    consume([kafka_record(value_of()), kafka_record(b"x", offset=1)], FakeStore())
    assert gc.isenabled()
    with pytest.raises(AttributeError):
        consume([kafka_record(value_of()), "not a record"], FakeStore())
    # THEN it is enabled again; and a caller that disabled it keeps it disabled
    assert gc.isenabled()
    gc.disable()
    try:
        consume([kafka_record(value_of())], FakeStore())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_given_a_batch_with_poison_when_events_are_half_read_then_dead_letters_are_refused():
    batch = ClassifiedBatch([kafka_record(b"x", offset=0), kafka_record(value_of(), offset=1)])
    events = batch.events()
    next(events)
    with pytest.raises(RuntimeError, match="every event"):
        batch.dead_letters()
    assert next(events, None) is None
    assert [letter.offset for letter in batch.dead_letters()] == [0]


def test_given_a_half_read_batch_when_events_are_read_again_then_replayed_then_continued():
    records = [kafka_record(value_of(), offset=i) for i in range(4)]
    decoded: list[int] = []

    def counted():
        for record in records:
            decoded.append(record.offset)
            yield record

    batch = ClassifiedBatch(counted())
    first = batch.events()
    assert [next(first).offset, next(first).offset] == [0, 1]
    # WHEN a retry reads the batch again THEN every event comes, each record decoded once
    assert [e.offset for e in batch.events()] == [0, 1, 2, 3]
    assert decoded == [0, 1, 2, 3]
    assert batch.dead_letters() == []
