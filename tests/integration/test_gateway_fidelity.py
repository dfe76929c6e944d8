"""The local HTTP API answers what API Gateway answers at its own limits, over a real socket."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.http_endpoint import LISTEN_BACKLOG, HttpEndpoint
from local.invoker import InstancePool
from tests.instances import FakeInstance, fakes

pytestmark = pytest.mark.integration

MB = 1024 * 1024


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 202, "body": "{}"}


@pytest.fixture
def function() -> Recorder:
    return Recorder()


@pytest.fixture
def endpoint(function: Recorder) -> Iterator[HttpEndpoint]:
    with HttpEndpoint(function, idle_timeout_s=1.0, read_timeout_s=1.0) as server:
        yield server


def address(endpoint: HttpEndpoint) -> tuple[str, int]:
    host, port = endpoint.url.removeprefix("http://").split(":")
    return host, int(port)


def send(endpoint: HttpEndpoint, method: str, path: str, body: bytes = b"", **headers: str):
    conn = http.client.HTTPConnection(*address(endpoint), timeout=30)
    conn.request(method, path, body, {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize(
    ("size", "message"),
    [(7 * MB, "Request Too Long"), (int(9.9 * MB), "Request Too Long")],
)
def test_given_a_body_between_6_and_10_mb_then_413_request_too_long_and_no_invocation(
    endpoint: HttpEndpoint, function: Recorder, size: int, message: str
) -> None:
    status, body = send(endpoint, "POST", "/events", b"x" * size)

    assert (status, json.loads(body)) == (413, {"message": message})
    assert function.events == []


def test_given_a_body_over_10_mb_then_413_at_once_and_no_invocation(
    endpoint: HttpEndpoint, function: Recorder
) -> None:
    # Refused on its Content-Length, before the body is read.
    with socket.create_connection(address(endpoint), timeout=10) as sock:
        sock.sendall(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {10 * MB + 1}\r\n\r\n".encode()
        )
        answer = sock.recv(4096)

    assert answer.startswith(b"HTTP/1.1 413")
    assert function.events == []


def test_given_a_body_just_under_6_mb_of_event_then_the_function_gets_it(
    endpoint: HttpEndpoint, function: Recorder
) -> None:
    status, _ = send(endpoint, "POST", "/events", b"x" * (5 * MB))

    assert status == 202
    assert len(function.events) == 1


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "DELETE"])
def test_given_an_unrouted_method_then_api_gateways_404(endpoint: HttpEndpoint, method: str):
    status, body = send(endpoint, method, "/events")

    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_given_invalid_utf8_in_a_json_body_then_the_function_gets_the_exact_bytes(
    endpoint: HttpEndpoint, function: Recorder
) -> None:
    raw = b'{"payload": {"note": "caf\xe9"}}'

    send(endpoint, "POST", "/events", raw)

    (event,) = function.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_given_a_content_length_larger_than_the_body_then_400_after_the_read_timeout(
    endpoint: HttpEndpoint, function: Recorder
) -> None:
    with socket.create_connection(address(endpoint), timeout=10) as sock:
        sock.sendall(
            b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{}"
        )
        started = time.monotonic()
        answer = sock.recv(4096)

    assert answer.startswith(b"HTTP/1.1 400")
    assert time.monotonic() - started < 9, "bounded by the read timeout, not the client's"
    assert function.events == []


def test_given_an_idle_connection_then_the_endpoint_closes_it(endpoint: HttpEndpoint) -> None:
    with socket.create_connection(address(endpoint), timeout=10) as sock:
        started = time.monotonic()
        closed = sock.recv(1) == b""

    assert closed
    assert time.monotonic() - started < 9


def test_given_200_slow_connections_at_once_then_none_is_reset(
    endpoint: HttpEndpoint,
) -> None:
    assert LISTEN_BACKLOG >= 200
    socks = [socket.create_connection(address(endpoint), timeout=10) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = [sock.recv(64) for sock in socks]
    finally:
        for sock in socks:
            sock.close()

    assert all(a.startswith(b"HTTP/1.1 ") for a in answers)


def test_given_an_instance_killed_mid_load_then_that_request_gets_500_and_the_next_is_served():
    instances: list[FakeInstance] = []

    def start(number: int) -> FakeInstance:
        instances.append(fakes(lambda _e: {"statusCode": 202, "body": "{}"})(number))
        return instances[-1]

    pool = InstancePool(start, 1, check_interval_s=60)
    with HttpEndpoint(pool) as server:
        instances[0].crash()
        first = send(server, "POST", "/events", b"{}")
        second = send(server, "POST", "/events", b"{}")
    pool.close()

    assert first == (500, b'{"message":"Internal Server Error"}')
    assert second[0] == 202
    assert pool.restarts == 1
