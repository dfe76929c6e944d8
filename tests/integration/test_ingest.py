"""The ingest handler in-process against the real Kafka broker and PostgreSQL server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from local.openapi import load_app
from local.samples.apigw import DEV_TOKEN, EXPECTED_STATUS, request
from punk_records import bootstrap
from punk_records.envelope import decode
from tests.factories import event_dict
from tests.integration.kafka_util import read_topic
from tests.lambda_util import lambda_context

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
PRODUCE_TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def ingest_app() -> ModuleType:
    return load_app()


@pytest.fixture
def env(monkeypatch, kafka, postgres, topic) -> Iterator[pytest.MonkeyPatch]:
    """The handler configured for the session's broker and database, and a fresh topic."""
    for name, value in {
        "API_TOKENS": DEV_TOKEN,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_PRODUCE_TIMEOUT_MS": str(PRODUCE_TIMEOUT_MS),
        "DATABASE_URL": postgres.dsn,
        "DATABASE_CONNECT_TIMEOUT_S": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("API_TOKENS_SECRET_ARN", raising=False)
    bootstrap.reset()
    yield monkeypatch
    bootstrap.reset()


def invoke(app: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = app.handler(event, lambda_context("punk-records-ingest"))
    return response["statusCode"], response.get("headers", {}), json.loads(response["body"])


def post(body: Any) -> dict[str, Any]:
    return request("POST", "/events", "it", body=json.dumps(body, separators=(",", ":")))


def test_given_a_single_event_when_posted_then_it_lands_redacted_with_key_and_headers(
    ingest_app, env, kafka, topic
):
    event = event_dict(payload={"summary": "rotated", "db_password": "hunter2"})
    status, _, body = invoke(ingest_app, post(event))
    assert status == 202
    assert body == {"accepted": 1, "event_ids": [event["event_id"]]}
    (record,) = read_topic(kafka.bootstrap, topic, expected=1)
    stored = decode(record.value)
    assert str(stored.event_id) == event["event_id"]
    assert record.key == event["workspace_id"].encode()
    assert dict(record.headers) == dict(stored.kafka_headers())
    assert stored.payload == {"summary": "rotated", "db_password": "[REDACTED:password]"}
    assert b"hunter2" not in record.value


def test_given_a_batch_when_posted_then_every_event_lands_in_order_per_workspace(
    ingest_app, env, kafka, topic
):
    events = [event_dict(workspace_id=f"ws-{i % 3}") for i in range(30)]
    status, _, body = invoke(ingest_app, post({"events": events}))
    assert status == 202
    assert body["accepted"] == 30
    records = read_topic(kafka.bootstrap, topic, expected=30)
    assert sorted(str(decode(r.value).event_id) for r in records) == sorted(body["event_ids"])
    for ws in ("ws-0", "ws-1", "ws-2"):
        mine = [r for r in records if r.key == ws.encode()]
        assert len({r.partition for r in mine}) == 1
        in_log = [str(decode(r.value).event_id) for r in sorted(mine, key=lambda r: r.offset)]
        assert in_log == [e["event_id"] for e in events if e["workspace_id"] == ws]


def test_given_every_apigw_sample_when_invoked_then_expected_status_and_records(
    ingest_app, env, kafka, topic
):
    for name, expected in sorted(EXPECTED_STATUS.items()):
        event = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
        status, _, body = invoke(ingest_app, event)
        assert status == expected, (name, body)
    # Only the two accepted samples reached Kafka: one single event and a batch of three.
    assert len(read_topic(kafka.bootstrap, topic, expected=4)) == 4


def test_given_real_dependencies_when_health_is_requested_then_200_with_both_ok(ingest_app, env):
    status, _, body = invoke(ingest_app, request("GET", "/health", "health", token=None))
    assert status == 200, body
    assert body["dependencies"]["kafka"]["status"] == "ok"
    assert body["dependencies"]["postgres"]["status"] == "ok"


def test_given_a_missing_topic_and_database_when_health_is_requested_then_503_naming_both(
    ingest_app, env, postgres
):
    env.setenv("KAFKA_TOPIC", "no-such-topic")
    env.setenv("DATABASE_URL", postgres.dsn.replace(f":{postgres.port}/", ":9/"))
    bootstrap.reset()
    status, _, body = invoke(ingest_app, request("GET", "/health", "health", token=None))
    assert status == 503
    assert sorted(body["failing"]) == ["kafka", "postgres"]
    assert body["dependencies"]["kafka"]["error"] == "topic_not_found"
    assert "127.0.0.1" not in json.dumps(body)


def test_given_the_broker_stops_when_posting_then_503_in_budget_and_recovery_without_reload(
    ingest_app, env, kafka, topic
):
    # GIVEN a warm container whose producer is connected
    warm = event_dict()
    assert invoke(ingest_app, post(warm))[0] == 202
    try:
        # WHEN the broker goes away
        kafka.stop()
        lost = event_dict()
        started = time.monotonic()
        status, headers, body = invoke(ingest_app, post(lost))
        elapsed = time.monotonic() - started
        # THEN 503 with Retry-After, within the produce budget (plus producer setup), nothing
        # claimed accepted
        assert status == 503
        assert "Retry-After" in headers
        assert "event_ids" not in body
        assert elapsed < 3 * PRODUCE_TIMEOUT_MS / 1000
        # AND health names Kafka
        health_status, _, health = invoke(
            ingest_app, request("GET", "/health", "health", token=None)
        )
        assert health_status == 503
        assert health["failing"] == ["kafka"]
    finally:
        kafka.start()
    # WHEN the broker is back, THEN the same handler (no reload) accepts the next request
    again = event_dict()
    status, _, body = invoke(ingest_app, post(again))
    assert status == 202, body
    records = read_topic(kafka.bootstrap, topic, expected=2)
    landed = {str(decode(r.value).event_id) for r in records}
    assert landed == {warm["event_id"], again["event_id"]}
    # AND health recovers too
    assert invoke(ingest_app, request("GET", "/health", "health", token=None))[0] == 200


def test_given_a_warm_container_when_posting_twice_then_the_producer_is_reused(ingest_app, env):
    assert invoke(ingest_app, post(event_dict()))[0] == 202
    first = bootstrap.container.producer().get()
    assert invoke(ingest_app, post(event_dict()))[0] == 202
    assert bootstrap.container.producer().get() is first
