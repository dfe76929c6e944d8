"""Dependency health: report shape, failure reasons, deadlines, retry on a stale connection."""

from __future__ import annotations

import threading

import pytest

from punk_records.errors import ConfigurationError, StoreUnavailable
from punk_records.health import DependencyDown, HealthChecker, check_health, check_postgres


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


def test_given_a_check_still_hung_when_checked_again_then_timeout_at_once_on_the_same_pool():
    release = threading.Event()
    calls: list[str] = []

    def hung() -> None:
        calls.append("kafka")
        release.wait(30)

    checker = HealthChecker()
    try:
        first = checker.check({"kafka": hung, "postgres": ok}, timeout_s=0.2)
        second = checker.check({"kafka": hung, "postgres": ok}, timeout_s=5)
        threads = {t.name for t in threading.enumerate() if t.name.startswith("health")}
    finally:
        release.set()
        checker.close()
    assert first.dependencies["kafka"].error == "timeout"
    # The hung check is not started a second time, and the report does not wait for it.
    assert second.dependencies["kafka"].error == "timeout"
    assert second.dependencies["kafka"].latency_ms < 1_000
    assert second.dependencies["postgres"].status == "ok"
    assert calls == ["kafka"]
    assert len(threads) <= 4


def test_given_many_health_checks_when_run_on_one_checker_then_the_threads_are_reused():
    checker = HealthChecker()
    try:
        for _ in range(20):
            assert checker.check({"kafka": ok, "postgres": ok}).ok
        threads = [t for t in threading.enumerate() if t.name.startswith("health")]
    finally:
        checker.close()
    assert len(threads) <= 4


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        if self.pings <= self.failures:
            raise StoreUnavailable("PostgreSQL check failed: server closed the connection")


def test_given_a_stale_connection_when_postgres_is_checked_then_one_retry_makes_it_pass():
    store = FlakyStore(failures=1)
    check_postgres(store)
    assert store.pings == 2


def test_given_postgres_down_when_checked_then_dependency_down_after_two_tries():
    store = FlakyStore(failures=2)
    with pytest.raises(DependencyDown) as caught:
        check_postgres(store)
    assert caught.value.code == "unavailable"
    assert store.pings == 2
