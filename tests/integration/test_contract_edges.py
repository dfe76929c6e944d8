"""The edges of the ingest contract through the whole local stack, as a client meets them."""

from __future__ import annotations

import gzip
import http.client
import json
from typing import Any

import pytest

from local.stack import TOPIC, Stack
from tests.integration.load import event

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture
def stack(local_stack: Stack) -> Stack:
    return local_stack


def post(stack: Stack, body: bytes, **headers: str) -> tuple[int, Any]:
    host, port = stack.api_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(
        "POST",
        "/events",
        body,
        {
            "Authorization": f"Bearer {stack.token()}",
            "Content-Type": "application/json",
            **{name.replace("_", "-"): value for name, value in headers.items()},
        },
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_given_the_stack_then_its_topic_takes_records_up_to_max_record_bytes(stack: Stack):
    assert stack.kafka.topic_configs(TOPIC)["max.message.bytes"] == "1048576"


def test_given_a_key_twice_in_one_object_then_400_and_nothing_produced(stack: Stack) -> None:
    one = event("ws-edges")
    text = json.dumps(one)
    body = text[:-1] + f', "event_id": "{one["event_id"]}"}}'

    status, answer = post(stack, body.encode())

    assert (status, answer["error"]) == (400, "malformed_json")
    assert "same key twice" in answer["message"]


def test_given_a_gzip_body_then_415_naming_the_encoding(stack: Stack) -> None:
    body = gzip.compress(json.dumps(event("ws-edges")).encode())

    status, answer = post(stack, body, Content_Encoding="gzip")

    assert (status, answer["error"]) == (415, "unsupported_media_type")
    assert "gzip" in answer["message"]


def test_given_invalid_utf8_inside_a_json_string_then_400(stack: Stack) -> None:
    one = event("ws-edges")
    one["payload"] = {"note": "PLACEHOLDER"}
    body = json.dumps(one).encode().replace(b"PLACEHOLDER", b"caf\xe9")

    status, answer = post(stack, body)

    assert (status, answer["error"]) == (400, "malformed_json")
    assert "UTF-8" in answer["message"]


def test_given_a_7_mb_body_then_api_gateways_413_request_too_long(stack: Stack) -> None:
    status, answer = post(stack, b"[" + b" " * (7 * MB) + b"]")

    assert (status, answer) == (413, {"message": "Request Too Long"})


def test_given_trace_then_api_gateways_404(stack: Stack) -> None:
    host, port = stack.api_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("TRACE", "/events")
    response = conn.getresponse()

    assert (response.status, json.loads(response.read())) == (404, {"message": "Not Found"})
