"""The ingest handler in-process, with a fake producer: routing, statuses, bodies, logs, metrics."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import punk_records.aws_secrets
from local.openapi import load_app
from local.samples import render
from local.samples.apigw import DEV_TOKEN, EXPECTED_STATUS, request, samples
from punk_records import bootstrap
from punk_records.acceptance import Record
from punk_records.envelope import Envelope
from punk_records.errors import ProduceError, SecretUnavailable
from punk_records.health import DependencyDown
from punk_records.observability import logger
from tests.factories import event_dict
from tests.lambda_util import lambda_context

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


class FakeProducer:
    """Records what would be produced; raises ``error`` instead when set."""

    def __init__(self) -> None:
        self.produced: list[Envelope] = []
        self.calls = 0
        self.error: Exception | None = None

    def produce(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.produced.extend(record.envelope for record in records)


@pytest.fixture(scope="module")
def ingest_app() -> ModuleType:
    return load_app()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A configured container: dev token plus a rotated second one, small limits."""
    for name, value in {
        "API_TOKENS": f"{DEV_TOKEN}, second-token",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_TOPIC": "unit-topic",
        "MAX_BATCH_EVENTS": "5",
        "MAX_BODY_BYTES": "16384",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("API_TOKENS_SECRET_ARN", raising=False)
    bootstrap.reset()
    yield monkeypatch
    bootstrap.reset()


@pytest.fixture
def producer(env: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    env.setattr(bootstrap.container, "producer", lambda: fake)
    return fake


@pytest.fixture
def healthy(env: pytest.MonkeyPatch) -> None:
    checks = {"kafka": lambda: None, "postgres": lambda: None}
    env.setattr(bootstrap.container, "health_checks", lambda: checks)


@pytest.fixture
def raw_logs() -> Iterator[io.StringIO]:
    """The raw text of every log line written during the test."""
    stream = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def invoke(app: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = app.handler(event, lambda_context("punk-records-ingest"))
    return response["statusCode"], response.get("headers", {}), json.loads(response["body"])


def post(body: Any, token: str | None = DEV_TOKEN, raw: str | None = None) -> dict[str, Any]:
    """A POST /events request with ``body`` as compact JSON (or ``raw`` text as is)."""
    text = raw if raw is not None else json.dumps(body, separators=(",", ":"))
    return request("POST", "/events", "test", body=text, token=token)


def parsed(logs: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.getvalue().splitlines()]


def emf_metrics(out: str) -> list[dict[str, Any]]:
    """The EMF blobs printed to stdout."""
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def metric_values(blobs: list[dict[str, Any]], name: str) -> list[tuple[dict[str, str], Any]]:
    found = []
    for blob in blobs:
        definition = blob["_aws"]["CloudWatchMetrics"][0]
        if any(m["Name"] == name for m in definition["Metrics"]):
            dims = {d: blob[d] for group in definition["Dimensions"] for d in group}
            found.append((dims, blob[name]))
    return found


# ----------------------------------------------------------------------------- accepted


def test_given_one_valid_event_when_posted_then_202_lists_its_id_and_it_is_produced(
    ingest_app, producer
):
    event = event_dict()
    status, _, body = invoke(ingest_app, post(event))
    assert status == 202
    assert body == {"accepted": 1, "event_ids": [event["event_id"]]}
    assert [str(e.event_id) for e in producer.produced] == [event["event_id"]]


@pytest.mark.parametrize("shape", ["array", "events-object"])
def test_given_a_batch_when_posted_then_every_event_is_produced_in_order(
    ingest_app, producer, shape
):
    events = [event_dict(workspace_id=f"ws-{i % 2}") for i in range(5)]
    status, _, body = invoke(ingest_app, post(events if shape == "array" else {"events": events}))
    assert status == 202
    ids = [e["event_id"] for e in events]
    assert body == {"accepted": 5, "event_ids": ids}
    assert [str(e.event_id) for e in producer.produced] == ids


def test_given_a_base64_encoded_body_when_posted_then_it_is_decoded_and_accepted(
    ingest_app, producer
):
    event = event_dict()
    request_event = post(event)
    request_event["body"] = base64.b64encode(request_event["body"].encode()).decode()
    request_event["isBase64Encoded"] = True
    status, _, body = invoke(ingest_app, request_event)
    assert status == 202
    assert body["event_ids"] == [event["event_id"]]


def test_given_a_payload_with_secrets_when_posted_then_kafka_gets_it_redacted(ingest_app, producer):
    event = event_dict(payload={"note": "deploy", "api_key": "sk-live-abcdef0123456789abcdef"})
    status, _, _ = invoke(ingest_app, post(event))
    assert status == 202
    (produced,) = producer.produced
    assert produced.payload["note"] == "deploy"
    assert produced.payload["api_key"].startswith("[REDACTED:")
    assert b"sk-live-abcdef0123456789abcdef" not in produced.kafka_value()


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"],
)
def test_given_a_json_content_type_variant_when_posted_then_accepted(
    ingest_app, producer, content_type
):
    request_event = post(event_dict())
    request_event["headers"]["content-type"] = content_type
    assert invoke(ingest_app, request_event)[0] == 202


def test_given_the_second_configured_token_when_posted_then_accepted(ingest_app, producer):
    assert invoke(ingest_app, post(event_dict(), token="second-token"))[0] == 202


def test_given_a_lower_case_bearer_scheme_when_posted_then_accepted(ingest_app, producer):
    request_event = post(event_dict())
    request_event["headers"]["authorization"] = f"bearer {DEV_TOKEN}"
    assert invoke(ingest_app, request_event)[0] == 202


# ----------------------------------------------------------------------------- 401


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, None),
        ("Bearer wrong-token", "invalid_token"),
        (f"Basic {DEV_TOKEN}", None),
        ("Bearer ", None),
        (f"Bearer {DEV_TOKEN}x", "invalid_token"),
    ],
)
def test_given_no_or_a_wrong_token_when_posted_then_401_with_bearer_challenge_and_nothing_read(
    ingest_app, producer, authorization, error
):
    # The body is malformed on purpose: a 401 (not a 400) proves it was never looked at.
    request_event = post(None, raw="{not json")
    request_event["headers"].pop("authorization")
    if authorization is not None:
        request_event["headers"]["authorization"] = authorization
    status, headers, body = invoke(ingest_app, request_event)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer ")
    assert (f'error="{error}"' in headers["WWW-Authenticate"]) == (error is not None)
    assert body["error"] == "unauthorized"
    assert producer.calls == 0


def test_given_no_token_configured_when_posted_then_500_without_naming_the_variable(
    ingest_app, producer, env
):
    env.setenv("API_TOKENS", " , ")
    bootstrap.reset()
    status, _, body = invoke(ingest_app, post(event_dict()))
    assert status == 500
    assert body == {"error": "misconfigured", "message": "internal error"}
    assert producer.calls == 0


def test_given_an_invalid_setting_when_posted_then_500_with_a_generic_body(
    ingest_app, producer, env
):
    env.setenv("MAX_BATCH_EVENTS", "lots")
    bootstrap.reset()
    status, _, body = invoke(ingest_app, post(event_dict()))
    assert status == 500
    assert "MAX_BATCH_EVENTS" not in json.dumps(body)


def test_given_the_tokens_secret_is_unreadable_when_posted_then_503_with_retry_after(
    ingest_app, producer, env
):
    def unreadable(arn: str, max_age: int) -> dict[str, Any]:
        raise SecretUnavailable(f"cannot read secret {arn}: GetParameterError")

    env.setenv("API_TOKENS_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:t")
    env.setattr(punk_records.aws_secrets, "read_json_secret", unreadable)
    bootstrap.reset()
    status, headers, body = invoke(ingest_app, post(event_dict()))
    assert status == 503
    assert "Retry-After" in headers
    assert body["error"] == "tokens_unavailable"
    assert "arn:" not in json.dumps(body)
    assert producer.calls == 0


# ----------------------------------------------------------------------------- 415 / 413 / 400


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_given_a_non_json_content_type_when_posted_then_415(ingest_app, producer, content_type):
    request_event = post(event_dict())
    request_event["headers"].pop("content-type")
    if content_type is not None:
        request_event["headers"]["content-type"] = content_type
    status, _, body = invoke(ingest_app, request_event)
    assert status == 415
    assert body["error"] == "unsupported_media_type"
    assert producer.calls == 0


def test_given_a_body_over_max_body_bytes_when_posted_then_413_naming_the_limit(
    ingest_app, producer
):
    event = event_dict(payload={"blob": "x" * 20_000})
    status, _, body = invoke(ingest_app, post(event))
    assert status == 413
    assert body["error"] == "too_large"
    assert "MAX_BODY_BYTES" in body["message"]
    assert producer.calls == 0


def test_given_a_batch_over_max_batch_events_when_posted_then_413_naming_the_limit(
    ingest_app, producer
):
    status, _, body = invoke(ingest_app, post([event_dict() for _ in range(6)]))
    assert status == 413
    assert "MAX_BATCH_EVENTS" in body["message"]
    assert producer.calls == 0


def test_given_an_escaped_surrogate_pair_when_posted_then_accepted(ingest_app, producer):
    raw = json.dumps(event_dict(payload={"mood": "\N{GRINNING FACE}"}), ensure_ascii=True)
    assert "\\ud83d\\ude00" in raw
    assert invoke(ingest_app, post(None, raw=raw))[0] == 202
    assert producer.produced[0].payload == {"mood": "\N{GRINNING FACE}"}


def test_given_a_batch_at_max_batch_events_when_posted_then_accepted(ingest_app, producer):
    assert invoke(ingest_app, post([event_dict() for _ in range(5)]))[0] == 202


@pytest.mark.parametrize(
    "raw",
    [
        '{"event_id": ',
        "",
        '{"confidence": NaN}',
        '{"confidence": Infinity}',
        "[" * 10_000 + "]" * 10_000,
        '{"payload": {"x": 1e999}}',
    ],
    ids=["truncated", "empty", "nan", "infinity", "deeply-nested", "overflow"],
)
def test_given_malformed_json_when_posted_then_400_malformed_json(ingest_app, producer, env, raw):
    env.setenv("MAX_BODY_BYTES", "1000000")
    bootstrap.reset()
    status, _, body = invoke(ingest_app, post(None, raw=raw))
    assert status == 400
    assert body["error"] == "malformed_json"
    assert producer.calls == 0


@pytest.mark.parametrize("encoded", ["not base64!", base64.b64encode(b"\xff\xfe{}").decode()])
def test_given_a_bad_base64_or_non_utf8_body_when_posted_then_400_malformed_json(
    ingest_app, producer, encoded
):
    request_event = post(None, raw="{}")
    request_event["body"] = encoded
    request_event["isBase64Encoded"] = True
    status, _, body = invoke(ingest_app, request_event)
    assert status == 400
    assert body["error"] == "malformed_json"


def test_given_a_batch_with_bad_items_when_posted_then_400_lists_every_error_and_produces_nothing(
    ingest_app, producer
):
    events = [
        event_dict(),
        event_dict(severity="critical"),
        {k: v for k, v in event_dict().items() if k != "trace_id"},
    ]
    status, _, body = invoke(ingest_app, post({"events": events}))
    assert status == 400
    assert body["error"] == "invalid_envelope"
    assert {(tuple(e["loc"]), e["type"]) for e in body["errors"]} == {
        ((1, "severity"), "enum"),
        ((2, "trace_id"), "missing"),
    }
    assert all(e["msg"] for e in body["errors"])
    assert producer.calls == 0


def test_given_one_invalid_event_when_posted_then_400_locates_the_field_without_an_index(
    ingest_app, producer
):
    status, _, body = invoke(ingest_app, post(event_dict(confidence=1.5, extra="x")))
    assert status == 400
    assert {tuple(e["loc"]) for e in body["errors"]} == {("confidence",), ("extra",)}


def test_given_a_token_as_workspace_id_when_posted_then_400_naming_the_field_not_the_value(
    ingest_app, producer, raw_logs
):
    # GIVEN a GitHub token sent as workspace_id (it would become the Kafka key, stored verbatim)
    token = "ghp_" + "R7vT2pX8wN5bY4cH6jD1" + "fG0sA2eU9k3Lm9Qz"
    # WHEN posted
    status, _, body = invoke(ingest_app, post(event_dict(workspace_id=token)))
    # THEN 400 names the field and the credential family, never the value, and nothing is sent
    assert status == 400
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["workspace_id"], "credential")]
    assert "github_token" in body["errors"][0]["msg"]
    assert token not in json.dumps(body) + raw_logs.getvalue()
    assert producer.calls == 0


def test_given_a_ts_outside_the_utc_calendar_when_posted_then_400_naming_it(ingest_app, producer):
    # Year 1 at +14:00 is valid ISO-8601 but falls before year 1 in UTC.
    raw = json.dumps(event_dict(ts="0001-01-01T00:00:00+14:00"))
    status, _, body = invoke(ingest_app, post(None, raw=raw))
    assert status == 400
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["ts"], "datetime_out_of_range")]
    assert producer.calls == 0


def test_given_a_lone_surrogate_in_payload_when_posted_then_400_naming_the_field(
    ingest_app, producer
):
    # A lone surrogate escape is valid JSON but cannot be encoded as UTF-8 for Kafka.
    raw = json.dumps(event_dict(payload={"x": "\ud800"}), ensure_ascii=True)
    status, _, body = invoke(ingest_app, post(None, raw=raw))
    assert status == 400
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["payload"], "unstorable")]
    assert producer.calls == 0


@pytest.mark.parametrize("depth", [500, 65])
def test_given_a_payload_nested_too_deep_when_posted_then_400_naming_it(
    ingest_app, producer, env, depth
):
    env.setenv("MAX_BODY_BYTES", "1000000")
    bootstrap.reset()
    nested: Any = "bottom"
    for _ in range(depth):  # ``depth`` objects inside one another
        nested = {"a": nested}
    status, _, body = invoke(ingest_app, post([event_dict(), event_dict(payload=nested)]))
    assert status == 400
    assert body["errors"] == [
        {
            "loc": [1, "payload"],
            "msg": "payload is nested more than 64 levels deep",
            "type": "too_deep",
        }
    ]
    assert producer.calls == 0


def test_given_a_payload_at_the_depth_limit_when_posted_then_accepted(ingest_app, producer):
    nested: Any = ["bottom"]
    for _ in range(63):  # 63 objects around one array: 64 levels
        nested = {"a": nested}
    assert invoke(ingest_app, post(event_dict(payload=nested)))[0] == 202


@pytest.mark.parametrize(
    ("document", "loc"),
    [
        (42, []),
        ("an event", []),
        ([], []),
        ({"events": "nope"}, ["events"]),
        ({"events": [], "also": 1}, ["also"]),
    ],
)
def test_given_a_body_that_is_no_event_or_batch_when_posted_then_400_invalid_envelope(
    ingest_app, producer, document, loc
):
    status, _, body = invoke(ingest_app, post(document))
    assert status == 400
    assert body["error"] == "invalid_envelope"
    assert loc in [e["loc"] for e in body["errors"]]
    assert producer.calls == 0


# ----------------------------------------------------------------------------- 503 / 500


def test_given_kafka_does_not_ack_when_posted_then_503_with_retry_after_and_no_ids(
    ingest_app, producer, raw_logs
):
    events = [event_dict(), event_dict()]
    producer.error = ProduceError("timed out", not_acked=[events[1]["event_id"]])
    status, headers, body = invoke(ingest_app, post(events))
    assert status == 503
    assert int(headers["Retry-After"]) > 0
    assert body["error"] == "kafka_unavailable"
    assert "event_ids" not in body
    assert "accepted" not in body
    (line,) = [line for line in parsed(raw_logs) if line.get("outcome")]
    assert line["outcome"] == "unavailable"
    assert line["not_acked"] == [events[1]["event_id"]]


def test_given_an_unexpected_failure_when_posted_then_500_with_a_generic_body(ingest_app, producer):
    producer.error = RuntimeError("boom at db-7.internal:5432")
    status, _, body = invoke(ingest_app, post(event_dict()))
    assert status == 500
    assert body == {"error": "internal_error", "message": "internal error"}


def test_given_an_unknown_route_when_requested_then_404(ingest_app, producer):
    status, _, body = invoke(ingest_app, request("GET", "/nope", "unknown"))
    assert status == 404
    assert body["error"] == "not_found"


# ----------------------------------------------------------------------------- health


def test_given_healthy_dependencies_when_health_is_requested_then_200_per_dependency(
    ingest_app, healthy
):
    status, _, body = invoke(ingest_app, request("GET", "/health", "health", token=None))
    assert status == 200
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["dependencies"]) == {"kafka", "postgres"}
    assert all(d["status"] == "ok" for d in body["dependencies"].values())


def test_given_postgres_down_when_health_is_requested_then_503_naming_it_without_details(
    ingest_app, healthy, env
):
    detail = "connection to db-7.internal:5432 failed for user punk password=s3cret"

    def down() -> None:
        raise DependencyDown("unavailable", detail)

    checks = {"kafka": lambda: None, "postgres": down}
    env.setattr(bootstrap.container, "health_checks", lambda: checks)
    status, _, body = invoke(ingest_app, request("GET", "/health", "health", token=None))
    assert status == 503
    assert body["failing"] == ["postgres"]
    assert body["dependencies"]["postgres"]["error"] == "unavailable"
    assert body["dependencies"]["kafka"]["status"] == "ok"
    text = json.dumps(body)
    for secret in ("db-7", "s3cret", "5432", "punk"):
        assert secret not in text


# ----------------------------------------------------------------------------- logs


def test_given_requests_when_handled_then_one_log_line_each_without_token_or_payload(
    ingest_app, producer, raw_logs
):
    secret_text = "the launch code is 0000"
    accepted = event_dict(payload={"summary": secret_text, "password": "hunter2-hunter2"})
    invalid = event_dict(severity="critical", payload={"summary": secret_text})
    invoke(ingest_app, post(accepted))
    invoke(ingest_app, post([invalid]))
    invoke(ingest_app, post(accepted, token="wrong-but-secret-token"))
    text = raw_logs.getvalue()
    request_lines = [line for line in parsed(raw_logs) if "outcome" in line]
    assert [line["outcome"] for line in request_lines] == ["accepted", "rejected", "rejected"]
    for secret in (DEV_TOKEN, "wrong-but-secret-token", secret_text, "hunter2", "launch code"):
        assert secret not in text
    first = request_lines[0]
    assert first["request_id"]
    assert first["count"] == 1
    assert first["latency_ms"] >= 0
    assert first["trace_ids"] == [accepted["trace_id"]]
    assert request_lines[1]["reason"] == "invalid_envelope"
    assert request_lines[1]["trace_ids"] == [invalid["trace_id"]]
    assert request_lines[2]["reason"] == "unauthorized"


# ----------------------------------------------------------------------------- metrics


def test_given_an_accepted_batch_when_handled_then_emf_has_accepted_batch_size_and_latency(
    ingest_app, producer, capsys
):
    invoke(ingest_app, post([event_dict() for _ in range(3)]))
    blobs = emf_metrics(capsys.readouterr().out)
    assert metric_values(blobs, "EventsAccepted")[0][1] == [3.0]
    assert metric_values(blobs, "BatchSize")[0][1] == [3.0]
    ((_, latency),) = metric_values(blobs, "ProduceLatency")
    assert latency[0] >= 0
    assert blobs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PunkRecords"


@pytest.mark.parametrize(
    ("make_request", "reason"),
    [
        (lambda: post(event_dict(), token="nope"), "unauthorized"),
        (lambda: post(None, raw="{"), "malformed_json"),
        (lambda: post(event_dict(severity="x")), "invalid_envelope"),
        (lambda: post([event_dict() for _ in range(6)]), "too_large"),
    ],
)
def test_given_a_rejected_request_when_handled_then_emf_counts_it_by_reason(
    ingest_app, producer, capsys, make_request, reason
):
    invoke(ingest_app, make_request())
    rejected = metric_values(emf_metrics(capsys.readouterr().out), "RequestsRejected")
    assert rejected == [({"service": "punk-records", "reason": reason}, [1.0])]


def test_given_kafka_down_when_handled_then_emf_counts_kafka_unavailable(
    ingest_app, producer, capsys
):
    producer.error = ProduceError("down", not_acked=[])
    invoke(ingest_app, post(event_dict()))
    blobs = emf_metrics(capsys.readouterr().out)
    assert metric_values(blobs, "RequestsRejected")[0][0]["reason"] == "kafka_unavailable"
    assert metric_values(blobs, "EventsAccepted") == []


# ----------------------------------------------------------------------------- samples


def test_given_the_apigw_generator_when_rendered_then_committed_samples_match():
    for name, event in samples().items():
        path = EVENTS_DIR / name
        assert path.read_text(encoding="utf-8") == render(event), f"regenerate {name}"


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_given_each_apigw_sample_when_invoked_then_expected_status(
    ingest_app, producer, healthy, name
):
    event = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    status, _, body = invoke(ingest_app, event)
    assert status == EXPECTED_STATUS[name], body


# ----------------------------------------------------------------------------- scoped tokens


def _scoped(env: pytest.MonkeyPatch, workspaces: list[str], scopes: list[str]) -> str:
    """Configure a token set with one token of these workspaces and scopes; return the token."""
    token = "scoped-test-token"
    entry = {
        "id": "team-a",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "workspaces": workspaces,
        "scopes": scopes,
    }
    env.setenv("API_TOKENS", json.dumps({"tokens": [entry]}))
    bootstrap.reset()
    return token


def test_given_a_batch_partly_outside_the_workspaces_when_posted_then_403_and_nothing_produced(
    ingest_app, env, producer, raw_logs
):
    token = _scoped(env, ["ws-a"], ["events:write"])
    batch = [event_dict(workspace_id=ws) for ws in ("ws-a", "ws-b", "ws-a", "ws-b")]
    status, _, body = invoke(ingest_app, post(batch, token=token))
    assert status == 403
    assert body["error"] == "workspace_forbidden"
    assert [e["loc"] for e in body["errors"]] == [[1, "workspace_id"], [3, "workspace_id"]]
    assert producer.calls == 0
    (line,) = [r for r in parsed(raw_logs) if r["message"] == "ingest request"]
    assert line["token_id"] == "team-a"
    assert line["reason"] == "workspace_forbidden"
    assert token not in raw_logs.getvalue()


def test_given_a_single_event_outside_the_workspaces_when_posted_then_403_without_index(
    ingest_app, env, producer
):
    token = _scoped(env, ["ws-a"], ["events:write"])
    status, _, body = invoke(ingest_app, post(event_dict(workspace_id="ws-b"), token=token))
    assert status == 403
    assert body["errors"][0]["loc"] == ["workspace_id"]
    assert producer.calls == 0


def test_given_a_read_only_token_when_posting_then_403_names_the_scope_before_the_body_is_read(
    ingest_app, env, producer
):
    token = _scoped(env, ["*"], ["events:read"])
    status, _, body = invoke(ingest_app, post(None, token=token, raw="not json at all"))
    assert status == 403
    assert body["error"] == "missing_scope"
    assert "events:write" in body["message"]


def test_given_a_wildcard_writer_when_posting_anywhere_then_202(ingest_app, env, producer):
    token = _scoped(env, ["*"], ["events:write"])
    batch = [event_dict(workspace_id=ws) for ws in ("ws-a", "ws-z")]
    status, _, body = invoke(ingest_app, post(batch, token=token))
    assert status == 202
    assert body["accepted"] == 2
