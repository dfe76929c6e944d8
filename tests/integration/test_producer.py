"""The Kafka producer against the real broker: key, headers, value, order and failures."""

from __future__ import annotations

import time
import uuid

import pytest

from punk_records.acceptance import accept_all
from punk_records.breaker import CircuitState
from punk_records.config import Settings
from punk_records.envelope import decode
from punk_records.errors import ProduceError, RecordTooLarge
from punk_records.producer import ProducerCache
from tests.factories import envelope
from tests.integration.kafka_util import read_topic


def settings_for(bootstrap: str, topic: str, **extra: object) -> Settings:
    return Settings.model_validate(
        {"kafka_bootstrap_servers": bootstrap, "kafka_topic": topic, **extra}
    )


def test_given_envelopes_when_produced_then_topic_holds_key_headers_and_value(kafka, topic):
    # GIVEN envelopes from two workspaces
    envelopes = [envelope(workspace_id=f"ws-{i % 2}") for i in range(10)]
    producer = ProducerCache(settings_for(kafka.bootstrap, topic))
    # WHEN produced (this returns only once every record is acknowledged)
    producer.produce(accept_all(envelopes))
    producer.reset()
    # THEN each record carries the design's key, headers and canonical value
    records = read_topic(kafka.bootstrap, topic, expected=10)
    assert len(records) == 10
    by_id = {str(e.event_id): e for e in envelopes}
    for record in records:
        env = decode(record.value)
        assert env == by_id[str(env.event_id)]
        assert record.key == env.workspace_id.encode()
        assert record.value == env.kafka_value()
        assert dict(record.headers) == dict(env.kafka_headers())
    # AND each workspace lives in one partition, in the order produced
    for ws in ("ws-0", "ws-1"):
        mine = [r for r in records if r.key == ws.encode()]
        assert len({r.partition for r in mine}) == 1
        assert [str(decode(r.value).event_id) for r in sorted(mine, key=lambda r: r.offset)] == [
            str(e.event_id) for e in envelopes if e.workspace_id == ws
        ]


def test_given_no_broker_when_producing_then_produce_error_names_every_record():
    envelopes = [envelope() for _ in range(3)]
    producer = ProducerCache(settings_for("127.0.0.1:9", "t", kafka_produce_timeout_ms=2000))
    started = time.monotonic()
    with pytest.raises(ProduceError) as caught:
        producer.produce(accept_all(envelopes))
    assert time.monotonic() - started < 10  # within the budget, not the defaults (minutes)
    assert caught.value.retriable
    assert sorted(caught.value.not_acked) == sorted(str(e.event_id) for e in envelopes)


def test_given_a_topic_whose_limit_is_below_the_record_then_refused_for_good_and_next_goes_on(
    kafka,
):
    # GIVEN a topic that takes smaller records than MAX_RECORD_BYTES allows (an MSK topic left
    # at a lower max.message.bytes)
    topic = f"small-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=1, configs={"max.message.bytes": "2048"})
    producer = ProducerCache(settings_for(kafka.bootstrap, topic))
    big, small = envelope(payload={"blob": "x" * 4_000}), envelope()
    # WHEN a record over the topic's limit is produced
    started = time.monotonic()
    with pytest.raises(RecordTooLarge) as caught:
        producer.produce(accept_all([big]))
    # THEN the answer is "never retry", at once; the circuit stays closed and the next record
    # is produced (by a fresh producer: kafka-python's idempotent one refuses every later record
    # of the partition once the broker refused one)
    assert not caught.value.retriable
    assert caught.value.refused_by_broker
    assert "max.message.bytes" in str(caught.value)
    assert time.monotonic() - started < 5
    assert producer.breaker.state is CircuitState.CLOSED
    producer.produce(accept_all([small]))
    producer.reset()
    (record,) = read_topic(kafka.bootstrap, topic, expected=1)
    assert decode(record.value).event_id == small.event_id
