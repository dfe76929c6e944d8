"""The local Kafka event source mapping against the real broker, with a recording function."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from local.esm import EsmConfig, KafkaEventSourceMapping
from local.invoker import FunctionError
from local.kafka_service import Kafka

pytestmark = pytest.mark.integration

DEADLINE_S = 20


class RecordingFunction:
    """A stand-in consumer: records every event, answers with ``respond(event, call_no)``."""

    def __init__(self, respond: Callable[[dict, int], Any] | None = None) -> None:
        self.events: list[dict] = []
        self._respond = respond or (lambda _event, _n: None)
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> Any:
        with self._lock:
            self.events.append(event)
            call_no = len(self.events)
        return self._respond(event, call_no)

    def records(self, since: int = 0) -> list[dict]:
        return [r for e in self.events[since:] for part in e["records"].values() for r in part]

    def values(self, since: int = 0) -> list[bytes]:
        return [base64.b64decode(r["value"]) for r in self.records(since)]


def produce(kafka: Kafka, topic: str, partition: int, values: list[bytes], **kwargs: Any) -> None:
    with KafkaProducer(bootstrap_servers=kafka.bootstrap) as producer:
        for value in values:
            producer.send(topic, value=value, partition=partition, **kwargs)
        producer.flush(timeout=10)


def committed(kafka: Kafka, group: str) -> dict[int, int]:
    with KafkaAdminClient(bootstrap_servers=kafka.bootstrap) as admin:
        offsets = admin.list_group_offsets(group).get(group, {})
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running(kafka: Kafka, topic: str, function: RecordingFunction, **overrides: Any) -> Iterator:
    config = EsmConfig(
        bootstrap_servers=kafka.bootstrap,
        topic=topic,
        group_id=overrides.pop("group_id", f"group-{topic}"),
        window_ms=overrides.pop("window_ms", 100),
        retry_initial_s=0.05,
        retry_max_s=0.2,
        **overrides,
    )
    mapping = KafkaEventSourceMapping(config, function)
    stop = threading.Event()
    thread = threading.Thread(target=mapping.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield mapping
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the mapping did not stop"


def test_given_records_on_three_partitions_when_polled_then_each_delivered_once_in_order(
    kafka: Kafka, topic: str
) -> None:
    for partition in range(3):
        produce(kafka, topic, partition, [f"p{partition}-{i}".encode() for i in range(20)])
    function = RecordingFunction()

    with running(kafka, topic, function):
        wait_until(lambda: len(function.records()) >= 60, "60 records")
        wait_until(lambda: committed(kafka, f"group-{topic}") == {0: 20, 1: 20, 2: 20}, "commit")

    values = function.values()
    assert sorted(values) == sorted(f"p{p}-{i}".encode() for p in range(3) for i in range(20))
    for partition in range(3):
        mine = [v for v in values if v.startswith(f"p{partition}-".encode())]
        assert mine == [f"p{partition}-{i}".encode() for i in range(20)]


def test_given_a_record_when_delivered_then_the_event_has_the_self_managed_kafka_shape(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 1, [b'{"a":1}'], key=b"ws-1", headers=[("event_id", b"e1")])
    function = RecordingFunction()

    with running(kafka, topic, function):
        wait_until(lambda: function.events, "one event")

    event = function.events[0]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == kafka.bootstrap
    assert list(event["records"]) == [f"{topic}-1"]
    (record,) = event["records"][f"{topic}-1"]
    assert record["topic"] == topic
    assert record["partition"] == 1
    assert record["offset"] == 0
    assert isinstance(record["timestamp"], int)
    assert record["timestamp"] > 1_600_000_000_000  # milliseconds
    assert record["timestampType"] == "CREATE_TIME"
    assert base64.b64decode(record["key"]) == b"ws-1"
    assert base64.b64decode(record["value"]) == b'{"a":1}'
    assert record["headers"] == [{"event_id": [101, 49]}]


def test_given_more_records_than_the_batch_size_when_polled_then_no_batch_exceeds_it(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 0, [str(i).encode() for i in range(25)])
    function = RecordingFunction()

    with running(kafka, topic, function, batch_size=10):
        wait_until(lambda: len(function.records()) >= 25, "25 records")

    sizes = [sum(len(p) for p in e["records"].values()) for e in function.events]
    assert max(sizes) <= 10
    assert function.values() == [str(i).encode() for i in range(25)]


def test_given_records_adding_up_to_more_than_6_mb_when_polled_then_batches_stay_under_it(
    kafka: Kafka, topic: str
) -> None:
    values = [bytes([n]) * 900_000 for n in range(7)]
    produce(kafka, topic, 0, values)
    function = RecordingFunction()

    with running(kafka, topic, function, window_ms=1000):
        wait_until(lambda: len(function.records()) >= 7, "7 records")

    assert len(function.events) >= 2
    assert all(len(json.dumps(e)) <= 6 * 1024 * 1024 for e in function.events)
    assert function.values() == values


def test_given_a_function_error_when_delivered_then_the_same_batch_is_retried_uncommitted(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 0, [b"a", b"b", b"c"])
    group = f"group-{topic}"
    seen_commits: list[dict[int, int]] = []

    def fail_twice(_event: dict, call_no: int) -> None:
        if call_no <= 2:
            seen_commits.append(committed(kafka, group))
            raise FunctionError("database unavailable")

    function = RecordingFunction(fail_twice)
    with running(kafka, topic, function, group_id=group):
        wait_until(lambda: committed(kafka, group) == {0: 3}, "commit after the retry")

    assert seen_commits == [{}, {}]
    assert len(function.events) == 3
    assert function.events[0] == function.events[1] == function.events[2]


def test_given_a_partial_batch_response_when_delivered_then_commit_stops_before_the_failure(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 0, [str(i).encode() for i in range(5)])
    produce(kafka, topic, 1, [b"x", b"y"])
    group = f"group-{topic}"
    commits_at_retry: list[dict[int, int]] = []

    def fail_p0_offset_2_once(event: dict, call_no: int) -> dict | None:
        if call_no == 1:
            failure = {"itemIdentifier": {"partition": f"{topic}-0", "offset": 2}}
            return {"batchItemFailures": [failure]}
        commits_at_retry.append(committed(kafka, group))
        return None

    function = RecordingFunction(fail_p0_offset_2_once)
    with running(kafka, topic, function, group_id=group, window_ms=500):
        wait_until(lambda: committed(kafka, group) == {0: 5, 1: 2}, "final commit")

    first = [r for part in function.events[0]["records"].values() for r in part]
    assert len(first) == 7, "the first batch held every record"
    assert commits_at_retry[0] == {0: 2, 1: 2}
    redelivered = [(r["partition"], r["offset"]) for r in function.records(since=1)]
    assert redelivered == [(0, 2), (0, 3), (0, 4)]


def test_given_a_partial_response_naming_an_unknown_record_then_the_whole_batch_is_retried(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 2, [b"a", b"b"])

    def bogus_then_ok(_event: dict, call_no: int) -> dict | None:
        if call_no == 1:
            return {"batchItemFailures": [{"itemIdentifier": {"partition": "nope-9", "offset": 1}}]}
        return None

    function = RecordingFunction(bogus_then_ok)
    with running(kafka, topic, function):
        wait_until(lambda: committed(kafka, f"group-{topic}") == {2: 2}, "commit")

    assert function.events[0] == function.events[1]


def test_given_a_mapping_stopped_mid_retry_when_restarted_then_unacknowledged_records_return(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 0, [b"first"])
    group = f"group-{topic}"
    always_failing = RecordingFunction(lambda _e, _n: (_ for _ in ()).throw(FunctionError("down")))
    with running(kafka, topic, always_failing, group_id=group):
        wait_until(lambda: len(always_failing.events) >= 2, "a retry")
    produce(kafka, topic, 0, [b"second"])
    function = RecordingFunction()

    with running(kafka, topic, function, group_id=group):
        wait_until(lambda: committed(kafka, group) == {0: 2}, "commit after restart")

    assert function.values() == [b"first", b"second"]


def test_given_starting_position_latest_when_a_new_group_starts_then_old_records_are_skipped(
    kafka: Kafka, topic: str
) -> None:
    produce(kafka, topic, 0, [b"old"])
    function = RecordingFunction()
    marker = uuid.uuid4().hex.encode()

    with running(kafka, topic, function, starting_position="LATEST") as mapping:
        wait_until(mapping.assigned.is_set, "partition assignment")
        time.sleep(0.5)  # let the new group settle on the log end before producing
        produce(kafka, topic, 0, [marker])
        wait_until(lambda: function.records(), "the new record")

    assert function.values() == [marker]
