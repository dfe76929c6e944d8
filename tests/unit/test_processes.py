"""local.processes without services: stopping everything, ports."""

from __future__ import annotations

import pytest

from local.processes import ServiceError, free_ports, port_in_use, stop_all


def test_given_a_first_stop_that_fails_when_stopping_all_then_the_next_still_runs():
    stopped: list[str] = []

    def kafka() -> None:
        raise ServiceError("Kafka (pid 7) still alive 10s after SIGKILL")

    stops = [("Kafka", kafka), ("PostgreSQL", lambda: stopped.append("postgres"))]
    with pytest.raises(ServiceError) as caught:
        stop_all(stops)
    assert stopped == ["postgres"]
    assert "Kafka: Kafka (pid 7) still alive" in str(caught.value)


def test_given_every_stop_succeeds_when_stopping_all_then_nothing_is_raised():
    stopped: list[str] = []
    stop_all([("a", lambda: stopped.append("a")), ("b", lambda: stopped.append("b"))])
    assert stopped == ["a", "b"]


def test_given_a_request_for_ports_then_they_are_distinct_and_free():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    assert not any(port_in_use(port) for port in ports)
