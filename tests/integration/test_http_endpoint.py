"""The local HTTP API over a real socket, in front of a recording function (no emulator)."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from local.http_endpoint import HttpEndpoint
from local.invoker import InstancePool
from tests.instances import fakes

pytestmark = pytest.mark.integration


class Echo:
    """Answers with the event it got (as the body) plus the response parts the test asks for."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self.extra = extra or {}
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "body": json.dumps(event), **self.extra}


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def endpoint(echo: Echo) -> Iterator[HttpEndpoint]:
    with HttpEndpoint(echo) as server:
        yield server


def connect(endpoint: HttpEndpoint) -> http.client.HTTPConnection:
    host, port = endpoint.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def test_given_a_chunked_upload_when_posted_then_the_function_gets_the_whole_body(
    endpoint: HttpEndpoint, echo: Echo
) -> None:
    conn = connect(endpoint)
    chunks = iter([b'{"a":', b"1}"])

    conn.request(
        "POST",
        "/events",
        body=chunks,
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    response.read()

    assert response.status == 200
    assert echo.events[0]["body"] == '{"a":1}'
    assert "transfer-encoding" not in echo.events[0]["headers"]


def test_given_a_binary_body_when_posted_then_it_arrives_base64_encoded(
    endpoint: HttpEndpoint, echo: Echo
) -> None:
    raw = bytes(range(256))
    conn = connect(endpoint)

    conn.request("POST", "/events", body=raw, headers={"Content-Type": "application/octet-stream"})
    conn.getresponse().read()

    assert echo.events[0]["isBase64Encoded"] is True
    assert base64.b64decode(echo.events[0]["body"]) == raw


def test_given_cookies_and_a_base64_body_in_the_response_then_the_client_gets_them_decoded() -> (
    None
):
    function = Echo({"cookies": ["a=1", "b=2"], "body": base64.b64encode(b"\x00\xff").decode()})
    function.extra["isBase64Encoded"] = True
    with HttpEndpoint(function) as server:
        conn = connect(server)
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read()

    assert response.getheader("apigw-requestid")
    assert [v for k, v in response.getheaders() if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert body == b"\x00\xff"


def test_given_two_instances_when_two_requests_arrive_together_then_both_run_at_once() -> None:
    # Each invocation waits for the other one: served one after the other, both would time out.
    both_running = threading.Barrier(2, timeout=5)

    def meet(event: dict[str, Any]) -> dict[str, Any]:
        both_running.wait()
        return {"statusCode": 200}

    statuses: list[int] = []

    def call(server: HttpEndpoint) -> None:
        conn = connect(server)
        conn.request("GET", "/health")
        statuses.append(conn.getresponse().status)

    pool = InstancePool(fakes(meet), 2)
    with HttpEndpoint(pool) as server:
        threads = [threading.Thread(target=call, args=(server,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    pool.close()

    assert statuses == [200, 200]


def test_given_keep_alive_when_two_requests_share_a_connection_then_both_are_answered(
    endpoint: HttpEndpoint,
) -> None:
    conn = connect(endpoint)

    answers = []
    for path in ("/health", "/nope"):
        conn.request("GET", path)
        response = conn.getresponse()
        answers.append((response.status, response.read()))

    assert answers[0][0] == 200
    assert answers[1] == (404, b'{"message":"Not Found"}')
