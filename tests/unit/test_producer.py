"""The Kafka adapter without a broker: security options, acknowledgements, the cached
producer's life cycle and the health probe (with the broker: tests/integration/)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from punk_records import producer as producer_module
from punk_records.acceptance import accept_all
from punk_records.breaker import CircuitBreaker, CircuitState
from punk_records.config import Settings
from punk_records.errors import CircuitOpen, ProduceError, RecordTooLarge
from punk_records.health import DependencyDown
from punk_records.producer import KafkaProbe, ProducerCache, produce, security_options
from tests.factories import envelope


class Future:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.timeouts: list[float] = []

    def get(self, timeout: float) -> object:
        self.timeouts.append(timeout)
        if self.error is not None:
            raise self.error
        return object()


class FakeKafkaProducer:
    """Answers each send with the next of ``outcomes``: a Future, or an error raised by send."""

    def __init__(self, outcomes: Sequence[Future | Exception] = ()) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.closed = False

    def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((topic, value, key, headers))
        outcome = self.outcomes.pop(0) if self.outcomes else Future()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self, timeout: float) -> None:
        self.closed = True


def test_given_every_record_acknowledged_when_produced_then_each_is_sent_with_key_and_headers():
    envelopes = [envelope(workspace_id="ws-a"), envelope(workspace_id="ws-b")]
    kafka = FakeKafkaProducer()
    produce(kafka, "topic-1", accept_all(envelopes), timeout_s=5)
    assert [(topic, key) for topic, _, key, _ in kafka.sent] == [
        ("topic-1", b"ws-a"),
        ("topic-1", b"ws-b"),
    ]
    assert [value for _, value, _, _ in kafka.sent] == [e.kafka_value() for e in envelopes]


def test_given_one_record_not_acknowledged_when_produced_then_produce_error_names_only_it():
    envelopes = [envelope() for _ in range(3)]
    kafka = FakeKafkaProducer([Future(), Future(KafkaTimeoutError("no ack")), Future()])
    with pytest.raises(ProduceError) as caught:
        produce(kafka, "t", accept_all(envelopes), timeout_s=5)
    assert caught.value.not_acked == [str(envelopes[1].event_id)]
    assert "1 of 3" in str(caught.value)
    assert "KafkaTimeoutError" in str(caught.value)
    assert caught.value.retriable


def test_given_send_fails_when_produced_then_that_record_and_every_later_one_are_not_acked():
    envelopes = [envelope() for _ in range(4)]
    kafka = FakeKafkaProducer([Future(), KafkaError("buffer full")])
    with pytest.raises(ProduceError) as caught:
        produce(kafka, "t", accept_all(envelopes), timeout_s=5)
    assert caught.value.not_acked == [str(e.event_id) for e in envelopes[1:]]
    assert len(kafka.sent) == 2  # nothing more is sent once one send failed


def test_given_a_time_budget_when_waiting_for_acks_then_no_wait_exceeds_what_is_left():
    futures = [Future() for _ in range(3)]
    produce(FakeKafkaProducer(futures), "t", accept_all([envelope() for _ in range(3)]), 2)
    waits = [f.timeouts[0] for f in futures]
    assert all(0 <= w <= 2 for w in waits)
    assert waits == sorted(waits, reverse=True)


def settings(**values: object) -> Settings:
    return Settings.model_validate({"kafka_bootstrap_servers": "127.0.0.1:9", **values})


def test_given_the_auth_modes_when_security_options_are_built_then_each_gets_its_protocol(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(
        producer_module,
        "read_json_secret",
        lambda arn: {"username": "u", "password": "p"} if arn == "arn:scram" else {},
    )
    assert security_options(settings()) == {"security_protocol": "PLAINTEXT"}
    assert security_options(settings(kafka_tls=True)) == {"security_protocol": "SSL"}
    scram = security_options(settings(kafka_auth_mode="scram", kafka_scram_secret_arn="arn:scram"))
    assert scram == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    iam = security_options(settings(kafka_auth_mode="iam"))
    assert (iam["security_protocol"], iam["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")


def test_given_scram_without_its_secret_arn_when_options_are_built_then_the_variable_is_named():
    with pytest.raises(Exception, match="KAFKA_SCRAM_SECRET_ARN"):
        security_options(settings(kafka_auth_mode="scram"))


def test_given_a_cache_when_used_twice_then_one_producer_and_a_failure_replaces_it(
    monkeypatch: pytest.MonkeyPatch,
):
    created: list[FakeKafkaProducer] = [
        FakeKafkaProducer([Future(KafkaTimeoutError("no ack"))]),
        FakeKafkaProducer(),
    ]
    made = iter(created)
    monkeypatch.setattr(producer_module, "create_producer", lambda _settings: next(made))
    # (a breaker whose probe always finds a broker, at once)
    cache = ProducerCache(settings(), CircuitBreaker(lambda: True, probe_interval_s=0))
    with pytest.raises(ProduceError):
        cache.produce(accept_all([envelope()]))
    # THEN the failed producer is closed and the next produce uses a fresh one
    assert created[0].closed
    cache.produce(accept_all([envelope()]))
    cache.produce(accept_all([envelope()]))
    assert len(created[1].sent) == 2


def test_given_no_broker_when_the_producer_is_created_then_every_event_is_not_acked(
    monkeypatch: pytest.MonkeyPatch,
):
    def unreachable(_settings: Settings) -> FakeKafkaProducer:
        raise ProduceError("cannot connect to Kafka: KafkaConnectionError", not_acked=[])

    monkeypatch.setattr(producer_module, "create_producer", unreachable)
    envelopes = [envelope(), envelope()]
    with pytest.raises(ProduceError) as caught:
        ProducerCache(settings()).produce(accept_all(envelopes))
    assert caught.value.not_acked == [str(e.event_id) for e in envelopes]


def test_given_an_unreachable_bootstrap_when_creating_then_produce_error_not_a_kafka_error(
    monkeypatch: pytest.MonkeyPatch,
):
    def refuse(**_options: object) -> None:
        raise KafkaConnectionError("no broker")

    monkeypatch.setattr(producer_module, "KafkaProducer", refuse)
    with pytest.raises(ProduceError, match="KafkaConnectionError"):
        producer_module.create_producer(settings())


def test_given_a_failed_produce_then_the_next_is_refused_at_once_without_touching_kafka(
    monkeypatch: pytest.MonkeyPatch,
):
    made: list[FakeKafkaProducer] = []

    def create(_settings: Settings) -> FakeKafkaProducer:
        made.append(FakeKafkaProducer([Future(KafkaTimeoutError("no ack"))]))
        return made[-1]

    monkeypatch.setattr(producer_module, "create_producer", create)
    probes: list[str] = []

    def probe() -> bool:
        probes.append("probe")
        return False

    cache = ProducerCache(settings(), CircuitBreaker(probe, 60))
    with pytest.raises(ProduceError):
        cache.produce(accept_all([envelope()]))

    events = [envelope(), envelope()]
    with pytest.raises(CircuitOpen) as caught:
        cache.produce(accept_all(events))

    assert caught.value.retriable
    assert caught.value.code == "kafka_unreachable"
    assert caught.value.status == 503
    assert len(made) == 1  # no new producer, no send, no probe before the interval
    assert probes == []
    assert cache.breaker.state is CircuitState.OPEN


def test_given_a_record_refused_by_the_clients_own_check_then_record_too_large_and_kept(
    monkeypatch: pytest.MonkeyPatch,
):
    kafka = FakeKafkaProducer([MessageSizeTooLargeError("over max_request_size")])
    monkeypatch.setattr(producer_module, "create_producer", lambda _settings: kafka)
    cache = ProducerCache(settings())

    with pytest.raises(RecordTooLarge) as caught:
        cache.produce(accept_all([envelope()]))

    assert (caught.value.status, caught.value.code) == (413, "record_too_large")
    assert not caught.value.retriable
    assert not caught.value.refused_by_broker
    assert not kafka.closed
    assert cache.get() is kafka
    assert cache.breaker.state is CircuitState.CLOSED


def test_given_a_record_refused_by_the_broker_then_record_too_large_and_a_fresh_producer(
    monkeypatch: pytest.MonkeyPatch,
):
    made = [FakeKafkaProducer([Future(MessageSizeTooLargeError())]), FakeKafkaProducer()]
    producers = iter(made)
    monkeypatch.setattr(producer_module, "create_producer", lambda _settings: next(producers))
    cache = ProducerCache(settings())

    with pytest.raises(RecordTooLarge) as caught:
        cache.produce(accept_all([envelope()]))
    cache.produce(accept_all([envelope()]))

    assert caught.value.refused_by_broker
    assert "max.message.bytes" in str(caught.value)
    assert made[0].closed
    assert len(made[1].sent) == 1
    assert cache.breaker.state is CircuitState.CLOSED


def test_given_max_record_bytes_then_the_producer_is_built_with_it(
    monkeypatch: pytest.MonkeyPatch,
):
    options: dict[str, object] = {}
    monkeypatch.setattr(producer_module, "KafkaProducer", lambda **kw: options.update(kw))

    producer_module.create_producer(settings(max_record_bytes=4_096))

    assert options["max_request_size"] == 4_096
    assert options["batch_size"] == 4_096


# ---------------------------------------------------------------------------- the health probe


class FakeAdmin:
    def __init__(self, topics: list[dict] | Exception) -> None:
        self.topics = topics
        self.closed = False

    def describe_topics(self, names: list[str]) -> list[dict]:
        if isinstance(self.topics, Exception):
            raise self.topics
        return self.topics

    def close(self) -> None:
        self.closed = True


def probe_with(admin: FakeAdmin) -> KafkaProbe:
    """A probe whose cached metadata client is ``admin``."""
    probe = KafkaProbe(Settings(kafka_bootstrap_servers="127.0.0.1:9", kafka_topic="t"))
    probe._admin = admin
    return probe


def test_given_the_topic_has_partitions_when_kafka_is_checked_then_it_passes():
    admin = FakeAdmin([{"name": "t", "error_code": 0, "partitions": [{"partition_index": 0}]}])
    probe_with(admin).check()


@pytest.mark.parametrize(
    "topics",
    [[{"name": "t", "error_code": 3, "partitions": []}], [], [{"name": "other", "error_code": 0}]],
)
def test_given_the_topic_is_missing_when_kafka_is_checked_then_topic_not_found(topics):
    with pytest.raises(DependencyDown) as caught:
        probe_with(FakeAdmin(topics)).check()
    assert caught.value.code == "topic_not_found"


def test_given_kafka_times_out_when_checked_then_unreachable_and_the_client_is_dropped():
    admin = FakeAdmin(KafkaTimeoutError("no broker"))
    probe = probe_with(admin)
    with pytest.raises(DependencyDown) as caught:
        probe.check()
    assert caught.value.code == "unreachable"
    assert admin.closed
    assert probe._admin is None


def test_given_a_kafka_check_holding_the_client_when_probed_again_then_timeout_not_a_queue():
    probe = KafkaProbe(Settings(kafka_bootstrap_servers="127.0.0.1:9", kafka_topic="t"), 0.1)
    probe._lock.acquire()  # a previous check that never returned
    try:
        with pytest.raises(DependencyDown) as caught:
            probe.check()
    finally:
        probe._lock.release()
    assert caught.value.code == "timeout"
