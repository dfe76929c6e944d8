"""The local event source mapping's event building and partial batch response handling."""

from __future__ import annotations

import base64

import pytest
from kafka.consumer.fetcher import ConsumerRecord

from local.esm import InvalidBatchResponse, build_event, describe, failed_offsets, rewind


def kafka_record(
    value: bytes | None = b"{}",
    partition: int = 0,
    offset: int = 0,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    topic: str = "punk-records.events.v1",
    timestamp_type: int = 0,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic,
        partition,
        0,
        offset,
        1795672801234,
        timestamp_type,
        key,
        value,
        headers or [],
        None,
        len(key) if key else -1,
        len(value) if value else -1,
        -1,
    )


def test_given_records_of_two_partitions_when_built_then_grouped_by_topic_partition() -> None:
    records = [kafka_record(partition=0, offset=7), kafka_record(partition=2, offset=3)]

    event = build_event(records, "127.0.0.1:9092,127.0.0.1:9093")

    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == "127.0.0.1:9092,127.0.0.1:9093"
    assert "eventSourceArn" not in event
    assert list(event["records"]) == ["punk-records.events.v1-0", "punk-records.events.v1-2"]


def test_given_a_record_when_built_then_fields_match_the_lambda_kafka_event() -> None:
    record = kafka_record(
        b'{"a":1}', partition=1, offset=5, key=b"ws-1", headers=[("type", b"ab")], timestamp_type=1
    )

    (entry,) = build_event([record], "b:1")["records"]["punk-records.events.v1-1"]

    assert entry == {
        "topic": "punk-records.events.v1",
        "partition": 1,
        "offset": 5,
        "timestamp": 1795672801234,
        "timestampType": "LOG_APPEND_TIME",
        "key": base64.b64encode(b"ws-1").decode(),
        "value": base64.b64encode(b'{"a":1}').decode(),
        "headers": [{"type": [97, 98]}],
    }


def test_given_a_record_without_key_when_built_then_key_is_null() -> None:
    (entry,) = build_event([kafka_record(key=None)], "b:1")["records"]["punk-records.events.v1-0"]

    assert entry["key"] is None


def test_given_records_of_one_partition_when_built_then_offset_order_is_kept() -> None:
    records = [kafka_record(offset=n) for n in (3, 4, 5)]

    entries = build_event(records, "b:1")["records"]["punk-records.events.v1-0"]

    assert [e["offset"] for e in entries] == [3, 4, 5]


@pytest.mark.parametrize("result", [None, {}, [], {"batchItemFailures": []}, {"other": 1}, "ok"])
def test_given_an_empty_response_when_interpreted_then_the_whole_batch_succeeded(
    result: object,
) -> None:
    assert failed_offsets(result, [kafka_record()]) == {}


def test_given_failures_when_interpreted_then_the_lowest_failed_offset_per_partition_wins() -> None:
    records = [kafka_record(partition=p, offset=o) for p in (0, 1) for o in (10, 11, 12)]
    failures = [
        {"itemIdentifier": {"partition": "punk-records.events.v1-0", "offset": 12}},
        {"itemIdentifier": {"partition": "punk-records.events.v1-0", "offset": 11}},
        {"itemIdentifier": {"partition": "punk-records.events.v1-1", "offset": 10}},
    ]

    failed = failed_offsets({"batchItemFailures": failures}, records)

    assert failed == {("punk-records.events.v1", 0): 11, ("punk-records.events.v1", 1): 10}


@pytest.mark.parametrize(
    "failure",
    [
        {"itemIdentifier": {"partition": "punk-records.events.v1-0", "offset": 99}},
        {"itemIdentifier": {"partition": "punk-records.events.v1-7", "offset": 0}},
        {"itemIdentifier": {"partition": 0, "offset": 0}},
        {"itemIdentifier": None},
        {"itemIdentifier": "punk-records.events.v1-0"},
        "junk",
    ],
)
def test_given_an_identifier_not_in_the_batch_when_interpreted_then_the_batch_is_invalid(
    failure: object,
) -> None:
    with pytest.raises(InvalidBatchResponse):
        failed_offsets({"batchItemFailures": [failure]}, [kafka_record(offset=0)])


def test_given_a_batch_when_described_then_offset_ranges_per_partition_are_listed() -> None:
    records = [kafka_record(partition=0, offset=o) for o in (4, 5, 6)] + [
        kafka_record(partition=2, offset=9)
    ]

    assert describe(records) == "punk-records.events.v1-0:4..6,punk-records.events.v1-2:9..9"


class RebalancedConsumer:
    """What ``rewind`` needs of a KafkaConsumer: its assignment, and seeks recorded."""

    def __init__(self, assigned: set) -> None:
        self.assigned = assigned
        self.seeks: dict = {}

    def assignment(self) -> set:
        return self.assigned

    def seek(self, tp, offset: int) -> None:
        self.seeks[tp] = offset


def test_given_a_dropped_batch_when_rewound_then_partitions_still_ours_are_read_again() -> None:
    # The broker restarted, the group lost and regained the same partitions: the consumer's
    # positions are past the dropped batch, whose records would otherwise never be delivered.
    from kafka.structs import TopicPartition

    batch = [kafka_record(partition=p, offset=o) for p in (0, 1) for o in (7, 8)]
    batch.append(kafka_record(partition=2, offset=3))
    topic = "punk-records.events.v1"
    consumer = RebalancedConsumer({TopicPartition(topic, 0), TopicPartition(topic, 2)})

    rewind(consumer, batch)

    assert consumer.seeks == {TopicPartition(topic, 0): 7, TopicPartition(topic, 2): 3}


def test_given_the_consumer_fails_when_polling_then_the_mapping_reconnects_instead_of_dying():
    # A broker restart can end a consumer with a fatal KafkaError (fenced static member, lost
    # coordinator); Lambda's pollers carry on, and so must this one.
    import threading

    from kafka.errors import KafkaError

    from local.esm import EsmConfig, KafkaEventSourceMapping

    stop = threading.Event()

    class Consumer:
        def __init__(self, fail: bool) -> None:
            self.fail = fail
            self.closed = False

        def subscribe(self, topics: list[str], listener: object) -> None:
            return None

        def poll(self, timeout_ms: int, max_records: int) -> dict:
            if self.fail:
                raise KafkaError("fenced")
            stop.set()
            return {}

        def close(self, autocommit: bool) -> None:
            self.closed = True

    consumers: list[Consumer] = []

    def factory(_config: EsmConfig) -> Consumer:
        consumers.append(Consumer(fail=not consumers))
        return consumers[-1]

    config = EsmConfig("b:1", "t", retry_initial_s=0.01)
    KafkaEventSourceMapping(config, lambda _e: None, factory).run(stop)

    assert len(consumers) == 2
    assert all(c.closed for c in consumers)


def test_given_no_broker_when_the_consumer_is_built_then_the_mapping_retries_instead_of_dying():
    # With the broker down, KafkaConsumer's constructor raises KafkaTimeoutError ("Unable to
    # bootstrap"); the poller must wait and build a new one, as it does for a failed poll.
    import threading

    from kafka.errors import KafkaTimeoutError

    from local.esm import EsmConfig, KafkaEventSourceMapping

    stop = threading.Event()
    attempts: list[int] = []

    class Consumer:
        def subscribe(self, topics: list[str], listener: object) -> None:
            return None

        def poll(self, timeout_ms: int, max_records: int) -> dict:
            stop.set()
            return {}

        def close(self, autocommit: bool) -> None:
            return None

    def factory(_config: EsmConfig) -> Consumer:
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaTimeoutError("Unable to bootstrap from [('b', 1, <AddressFamily: 0>)]")
        return Consumer()

    config = EsmConfig("b:1", "t", retry_initial_s=0.01)
    KafkaEventSourceMapping(config, lambda _e: None, factory).run(stop)

    assert len(attempts) == 3
