"""The local HTTP API: request → payload format 2.0 event, function result → HTTP response."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from local.http_endpoint import (
    ROUTE_KEYS,
    ApiInfo,
    build_event,
    dispatch,
    handle_request,
    is_text_content_type,
    match_route,
    response_from_result,
)
from local.invoker import FunctionError
from local.template import http_routes, load_template

NOW = datetime(2026, 11, 26, 6, 0, 1, 234000, tzinfo=UTC)


def event_for(
    method: str = "POST",
    target: str = "/events",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    **kwargs: Any,
) -> dict[str, Any]:
    return build_event(
        method=method,
        target=target,
        headers=headers if headers is not None else [("Host", "127.0.0.1:3000")],
        body=body,
        source_ip="127.0.0.1",
        route_key=kwargs.pop("route_key", f"{method} {target.split('?')[0]}"),
        server_port=3000,
        request_id=kwargs.pop("request_id", "BitA2hMuNjMEPFQ="),
        now=NOW,
        **kwargs,
    )


class Recorder:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._result = result
        self._error = error

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if self._error is not None:
            raise self._error
        return self._result


def request(invoke: Any, method: str, target: str, body: bytes = b"", **kwargs: Any) -> Any:
    return handle_request(
        invoke,
        method=method,
        target=target,
        headers=kwargs.pop("headers", [("Content-Type", "application/json")]),
        body=body,
        source_ip="10.1.2.3",
        server_port=3000,
        **kwargs,
    )


# ---------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/events", "POST /events"),
        ("post", "/events", "POST /events"),
        ("GET", "/health", "GET /health"),
        ("GET", "/events", "GET /events"),
        ("GET", "/events/3f1c", "GET /events/{event_id}"),
        ("GET", "/events/", None),
        ("GET", "/events/a/b", None),
        ("GET", "/dead-letters", "GET /dead-letters"),
        ("PUT", "/events", None),
        ("POST", "/events/", None),
        ("POST", "/Events", None),
        ("DELETE", "/health", None),
    ],
)
def test_given_the_template_routes_when_matching_then_only_exact_method_and_path_match(
    method: str, path: str, expected: str | None
) -> None:
    assert match_route(method, path) == expected


def test_given_the_template_then_the_endpoint_knows_exactly_its_http_api_routes() -> None:
    assert set(ROUTE_KEYS) == set(http_routes(load_template()))


def test_given_a_route_with_a_parameter_when_requested_then_the_event_carries_it() -> None:
    event = build_event(
        method="GET", target="/events/abc%2Fd?x=1", headers=[], body=b"", source_ip="127.0.0.1",
        route_key="GET /events/{event_id}", server_port=3000,
    )  # fmt: skip
    assert event["pathParameters"] == {"event_id": "abc/d"}
    assert event["routeKey"] == "GET /events/{event_id}"
    plain = build_event(
        method="GET", target="/events", headers=[], body=b"", source_ip="127.0.0.1",
        route_key="GET /events", server_port=3000,
    )  # fmt: skip
    assert "pathParameters" not in plain


def test_given_routes_of_two_functions_when_dispatched_then_each_reaches_its_own() -> None:
    ingest, query = Recorder({"statusCode": 202}), Recorder({"statusCode": 200})
    invoke = dispatch({"POST /events": ingest, "GET /events": query})
    invoke({"routeKey": "GET /events"})
    invoke({"routeKey": "POST /events"})
    assert len(query.events) == 1
    assert len(ingest.events) == 1


def test_given_an_unknown_route_when_requested_then_404_not_found_and_no_invocation() -> None:
    function = Recorder({"statusCode": 200})

    response = request(function, "GET", "/nope?x=1")

    assert response.status == 404
    assert json.loads(response.body) == {"message": "Not Found"}
    assert response.header("content-type") == "application/json"
    assert function.events == []


def test_given_a_known_route_when_requested_then_the_event_reaches_the_function() -> None:
    function = Recorder({"statusCode": 202, "body": "{}"})

    response = request(function, "POST", "/events", b"{}")

    assert response.status == 202
    (event,) = function.events
    assert event["routeKey"] == "POST /events"
    assert event["requestContext"]["http"]["sourceIp"] == "10.1.2.3"
    assert response.header("apigw-requestid") == event["requestContext"]["requestId"]


def test_given_a_function_error_when_requested_then_500_internal_server_error() -> None:
    response = request(Recorder(error=FunctionError("boom")), "GET", "/health")

    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}


def test_given_a_body_over_10_mb_when_requested_then_413_and_no_invocation() -> None:
    function = Recorder({"statusCode": 202})

    response = request(function, "POST", "/events", b"x" * (10 * 1024 * 1024 + 1))

    assert response.status == 413
    assert json.loads(response.body) == {"message": "Request Entity Too Large"}
    assert function.events == []


# ---------------------------------------------------------------------------- event shape


def test_given_a_post_when_built_then_the_event_has_every_payload_2_0_field() -> None:
    event = event_for(
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "curl/8.5.0"),
            ("Content-Type", "application/json"),
            ("Content-Length", "2"),
            ("Authorization", "Bearer t0ken"),
        ],
        body=b"{}",
    )

    assert event == {
        "version": "2.0",
        "routeKey": "POST /events",
        "rawPath": "/events",
        "rawQueryString": "",
        "headers": {
            "host": "127.0.0.1:3000",
            "user-agent": "curl/8.5.0",
            "content-type": "application/json",
            "content-length": "2",
            "authorization": "Bearer t0ken",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-port": "3000",
            "x-forwarded-proto": "http",
            "x-amzn-trace-id": event["headers"]["x-amzn-trace-id"],
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "punklocal1",
            "domainName": "127.0.0.1",
            "domainPrefix": "127",
            "http": {
                "method": "POST",
                "path": "/events",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "BitA2hMuNjMEPFQ=",
            "routeKey": "POST /events",
            "stage": "$default",
            "time": "26/Nov/2026:06:00:01 +0000",
            "timeEpoch": 1795672801234,
        },
        "body": "{}",
        "isBase64Encoded": False,
    }
    assert event["headers"]["x-amzn-trace-id"].startswith("Root=1-")


def test_given_a_get_without_body_or_query_when_built_then_optional_keys_are_absent() -> None:
    event = event_for("GET", "/health")

    for absent in ("body", "cookies", "queryStringParameters", "pathParameters", "stageVariables"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


def test_given_repeated_headers_when_built_then_names_are_lowercased_and_values_comma_joined() -> (
    None
):
    event = event_for(headers=[("X-Tag", "a"), ("x-tag", "b"), ("X-TAG", "c")])

    assert event["headers"]["x-tag"] == "a,b,c"


def test_given_a_query_string_when_built_then_raw_kept_and_repeated_keys_comma_joined() -> None:
    event = event_for("GET", "/health?verbose=1&tag=a&tag=b%20c&empty=", route_key="GET /health")

    assert event["rawPath"] == "/health"
    assert event["rawQueryString"] == "verbose=1&tag=a&tag=b%20c&empty="
    assert event["queryStringParameters"] == {"verbose": "1", "tag": "a,b c", "empty": ""}


def test_given_cookie_headers_when_built_then_each_cookie_is_listed_and_the_header_removed() -> (
    None
):
    event = event_for(headers=[("Cookie", "a=1; b=2"), ("Cookie", "c=3")])

    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_given_a_client_x_forwarded_for_when_built_then_the_source_ip_is_appended() -> None:
    event = event_for(headers=[("X-Forwarded-For", "203.0.113.9")])

    assert event["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


def test_given_hop_by_hop_headers_when_built_then_they_do_not_reach_the_function() -> None:
    event = event_for(headers=[("Connection", "keep-alive"), ("Expect", "100-continue")])

    assert "connection" not in event["headers"]
    assert "expect" not in event["headers"]


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("text/plain", True),
        ("text/csv; charset=latin-1", True),
        ("application/xml", True),
        ("application/javascript", True),
        ("application/octet-stream", False),
        ("application/x-www-form-urlencoded", False),
        ("image/png", False),
        ("", False),
        (None, False),
    ],
)
def test_given_a_content_type_when_classified_then_only_text_types_pass_as_text(
    content_type: str | None, text: bool
) -> None:
    assert is_text_content_type(content_type) is text


def test_given_a_binary_body_when_built_then_it_is_base64_encoded_and_flagged() -> None:
    raw = bytes(range(256))

    event = event_for(headers=[("Content-Type", "application/octet-stream")], body=raw)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_given_a_body_without_content_type_when_built_then_it_is_base64_encoded() -> None:
    event = event_for(headers=[], body=b'{"a":1}')

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b'{"a":1}'


def test_given_custom_api_info_when_built_then_the_request_context_carries_it() -> None:
    event = event_for(api=ApiInfo(account_id="000000000000", api_id="abc", stage="dev"))

    context = event["requestContext"]
    assert (context["accountId"], context["apiId"], context["stage"]) == (
        "000000000000",
        "abc",
        "dev",
    )


def test_given_two_requests_when_built_without_an_id_then_request_ids_differ() -> None:
    first = event_for(request_id=None)
    second = event_for(request_id=None)

    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]


# ---------------------------------------------------------------------------- response mapping


def test_given_a_full_response_when_mapped_then_status_headers_and_body_are_used() -> None:
    response = response_from_result(
        {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json", "Retry-After": 5},
            "body": '{"accepted":1}',
            "isBase64Encoded": False,
        }
    )

    assert response.status == 202
    assert response.header("content-type") == "application/json"
    assert response.header("retry-after") == "5"
    assert response.body == b'{"accepted":1}'


def test_given_cookies_in_the_response_when_mapped_then_each_becomes_a_set_cookie_header() -> None:
    response = response_from_result({"statusCode": 200, "cookies": ["a=1; Secure", "b=2"]})

    assert [v for k, v in response.headers if k == "set-cookie"] == ["a=1; Secure", "b=2"]


def test_given_a_base64_body_when_mapped_then_the_client_gets_the_decoded_bytes() -> None:
    raw = b"\x89PNG\r\n\x1a\n\x00"
    result = {"statusCode": 200, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}

    assert response_from_result(result).body == raw


def test_given_a_response_without_body_when_mapped_then_the_body_is_empty() -> None:
    response = response_from_result({"statusCode": 204})

    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"accepted": 1}, b'{"accepted": 1}'),
        ([1, 2], b"[1, 2]"),
        ("Hello from Lambda!", b"Hello from Lambda!"),
        (42, b"42"),
    ],
)
def test_given_a_result_without_status_code_when_mapped_then_200_json_is_inferred(
    result: Any, body: bytes
) -> None:
    response = response_from_result(result)

    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.body == body


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"},
        {"statusCode": 999},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
        {"statusCode": 200, "headers": ["not", "a", "map"]},
    ],
)
def test_given_a_malformed_response_when_mapped_then_500_internal_server_error(
    result: dict[str, Any],
) -> None:
    response = response_from_result(result)

    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}
