"""The producer's circuit breaker: refuse at once while open, probe once per interval."""

from __future__ import annotations

import pytest

from punk_records.breaker import CircuitBreaker, CircuitState
from punk_records.errors import CircuitOpen, ProduceError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(reachable: list[bool], clock: Clock, changes: list | None = None) -> CircuitBreaker:
    def probe() -> bool:
        return reachable.pop(0)

    def on_change(old, new) -> None:
        if changes is not None:
            changes.append((old.value, new.value))

    return CircuitBreaker(probe, probe_interval_s=1.0, clock=clock, on_change=on_change)


def test_given_a_closed_circuit_then_calls_go_ahead_without_a_probe() -> None:
    cb = breaker([], Clock())

    cb.before_call()

    assert cb.state is CircuitState.CLOSED


def test_given_a_failure_then_the_next_call_is_refused_at_once_as_retriable() -> None:
    clock = Clock()
    cb = breaker([], clock)
    cb.record_failure()
    clock.now += 0.4

    with pytest.raises(CircuitOpen) as caught:
        cb.before_call()

    assert isinstance(caught.value, ProduceError)
    assert caught.value.retriable
    assert caught.value.retry_after_s == pytest.approx(0.6)
    assert cb.state is CircuitState.OPEN


def test_given_an_open_circuit_when_the_probe_fails_then_it_stays_open() -> None:
    clock = Clock()
    reachable = [False]
    cb = breaker(reachable, clock)
    cb.record_failure()
    clock.now += 1.0

    with pytest.raises(CircuitOpen):
        cb.before_call()
    with pytest.raises(CircuitOpen):  # no second probe within the next interval
        cb.before_call()

    assert reachable == []
    assert cb.state is CircuitState.OPEN


def test_given_an_open_circuit_when_the_probe_reaches_a_broker_then_the_call_goes_ahead() -> None:
    clock = Clock()
    changes: list = []
    cb = breaker([True], clock, changes)
    cb.record_failure()
    clock.now += 1.0

    cb.before_call()

    assert cb.state is CircuitState.CLOSED
    assert changes == [("closed", "open"), ("open", "probing"), ("probing", "closed")]


def test_given_a_probe_that_raises_then_it_counts_as_unreachable() -> None:
    clock = Clock()

    def probe() -> bool:
        raise OSError("no route")

    cb = CircuitBreaker(probe, probe_interval_s=1.0, clock=clock)
    cb.record_failure()
    clock.now += 2

    with pytest.raises(CircuitOpen):
        cb.before_call()
    assert cb.state is CircuitState.OPEN


def test_given_a_success_after_a_failure_then_the_circuit_closes() -> None:
    cb = breaker([], Clock())
    cb.record_failure()

    cb.record_success()

    cb.before_call()
    assert cb.state is CircuitState.CLOSED


def test_given_an_open_circuit_then_health_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from punk_records.bootstrap import Container

    container = Container({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    monkeypatch.setattr(container, "health_checks", lambda: {"kafka": lambda: None})
    assert container.health().producer_circuit == "closed"

    container.producer().breaker.record_failure()

    report = container.health()
    assert report.producer_circuit == "open"
    assert report.ok  # the circuit informs; the dependency checks decide the status
