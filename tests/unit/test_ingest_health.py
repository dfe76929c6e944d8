"""Dependency health: report shape, failure reasons, deadlines, retry on a stale connection."""

from __future__ import annotations

import threading

import pytest
from kafka.errors import KafkaTimeoutError

import punk_records.health
from punk_records.config import Settings
from punk_records.errors import ConfigurationError, StoreUnavailable
from punk_records.health import DependencyDown, KafkaProbe, check_health, check_postgres


def ok() -> None:
    return None


def failing(exc: Exception):
    def check() -> None:
        raise exc

    return check


def test_given_every_check_passes_when_checked_then_ok_with_latency_per_dependency():
    report = check_health({"kafka": ok, "postgres": ok})
    assert report.ok
    assert report.failing == []
    assert {name: dep.status for name, dep in report.dependencies.items()} == {
        "kafka": "ok",
        "postgres": "ok",
    }
    assert all(dep.latency_ms >= 0 and dep.error is None for dep in report.dependencies.values())


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (DependencyDown("topic_not_found"), "topic_not_found"),
        (ConfigurationError("environment variable DATABASE_URL is required"), "not_configured"),
        (RuntimeError("host db-7.internal refused"), "unavailable"),
    ],
)
def test_given_a_failing_check_when_checked_then_it_is_named_with_a_reason_code_only(exc, code):
    report = check_health({"kafka": ok, "postgres": failing(exc)})
    assert not report.ok
    assert report.failing == ["postgres"]
    assert report.dependencies["postgres"].error == code
    assert "db-7" not in report.model_dump_json()
    assert "DATABASE_URL" not in report.model_dump_json()


def test_given_a_hung_check_when_checked_then_timeout_is_reported_before_it_finishes():
    release = threading.Event()
    finished = threading.Event()

    def hung() -> None:
        release.wait(30)
        finished.set()

    try:
        report = check_health({"kafka": hung, "postgres": ok}, timeout_s=0.2)
        hung_when_reported = not finished.is_set()
    finally:
        release.set()
    assert hung_when_reported
    assert report.failing == ["kafka"]
    assert report.dependencies["kafka"].error == "timeout"
    assert report.dependencies["postgres"].status == "ok"


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.pings <= self.failures:
            raise StoreUnavailable("PostgreSQL check failed: server closed the connection")


def test_given_a_stale_connection_when_postgres_is_checked_then_one_retry_makes_it_pass(
    monkeypatch,
):
    store = FlakyStore(failures=1)
    monkeypatch.setattr(punk_records.health, "get_store", lambda: store)
    check_postgres()
    assert store.pings == 2


def test_given_postgres_down_when_checked_then_dependency_down_after_two_tries(monkeypatch):
    store = FlakyStore(failures=2)
    monkeypatch.setattr(punk_records.health, "get_store", lambda: store)
    with pytest.raises(DependencyDown) as caught:
        check_postgres()
    assert caught.value.code == "unavailable"
    assert store.pings == 2


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
