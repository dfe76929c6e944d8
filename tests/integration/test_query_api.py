"""Scopes and workspaces on every route, through the ingest and query handlers in-process,
against the real Kafka broker and PostgreSQL server: what a team with a token sees."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

from local.samples.apigw import request
from local.services import Kafka
from punk_records import bootstrap
from punk_records.consumer import KafkaRecord, consume
from punk_records.store import EventStore
from tests.factories import event_dict
from tests.integration.kafka_util import read_topic
from tests.lambda_util import lambda_context, load_function

pytestmark = pytest.mark.integration

TOKENS = {
    # name: (token, workspaces, scopes)
    "writer-a": ("tok-writer-a", ["ws-a"], ["events:write"]),
    "reader-a": ("tok-reader-a", ["ws-a"], ["events:read"]),
    "team-a": ("tok-team-a", ["ws-a"], ["events:write", "events:read", "dead_letters:read"]),
    "ops": ("tok-ops", ["*"], ["events:read", "dead_letters:read"]),
}


def _secret_document() -> str:
    return json.dumps(
        {
            "tokens": [
                {
                    "id": name,
                    "sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "workspaces": workspaces,
                    "scopes": scopes,
                }
                for name, (token, workspaces, scopes) in TOKENS.items()
            ]
            + ["tok-plain-legacy"]
        }
    )


@pytest.fixture(scope="module")
def apps() -> tuple[ModuleType, ModuleType]:
    return load_function("ingest"), load_function("query")


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, kafka: Kafka, topic: str, reader_dsn: str, db: Any
) -> Iterator[None]:
    """Both functions configured as in AWS: the same token set, the query function on the
    read-only login."""
    for name, value in {
        "API_TOKENS": _secret_document(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_PRODUCE_TIMEOUT_MS": "3000",
        "DATABASE_URL": reader_dsn,
        "CURSOR_KEY": "query-api-test-key-" + "q" * 20,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("API_TOKENS_SECRET_ARN", "CURSOR_KEY_SECRET_ARN", "DATABASE_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    yield
    bootstrap.reset()


def call(app: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
    response = app.handler(event, lambda_context("punk-records-test"))
    return response["statusCode"], json.loads(response["body"])


def post(apps: tuple[ModuleType, ModuleType], who: str, body: Any) -> tuple[int, Any]:
    event = request("POST", "/events", "q", body=json.dumps(body), token=TOKENS[who][0])
    return call(apps[0], event)


def get(
    apps: tuple[ModuleType, ModuleType], who: str | None, path: str, **params: Any
) -> tuple[int, Any]:
    token = TOKENS[who][0] if who else None
    event = request("GET", path, "q", token=token)
    event["rawQueryString"] = urlencode(params, doseq=True)
    route = "/events/{event_id}" if path.startswith("/events/") else path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {route}"
    return call(apps[1], event)


def _store_through_kafka(kafka: Kafka, topic: str, postgres_dsn: str, expected: int) -> None:
    """Run what the consumer does: every record of the topic into PostgreSQL."""
    records = read_topic(kafka.bootstrap, topic, expected=expected)
    store = EventStore(lambda: postgres_dsn)
    consume([KafkaRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records], store)
    store.reset()


# ---------------------------------------------------------------------------- writing


def test_given_a_ws_a_writer_when_it_posts_a_mixed_batch_then_403_per_index_and_nothing_lands(
    apps, env, kafka, topic
):
    batch = [event_dict(workspace_id=ws) for ws in ("ws-a", "ws-b", "ws-a", "ws-c")]
    status, body = post(apps, "writer-a", {"events": batch})
    assert status == 403
    assert body["error"] == "workspace_forbidden"
    assert [e["loc"] for e in body["errors"]] == [[1, "workspace_id"], [3, "workspace_id"]]
    assert "'ws-b', 'ws-c'" in body["message"]
    assert read_topic(kafka.bootstrap, topic, expected=1, timeout_s=3) == []


def test_given_a_ws_a_writer_when_it_posts_to_ws_a_then_202(apps, env, kafka, topic):
    status, _ = post(apps, "writer-a", [event_dict(workspace_id="ws-a")])
    assert status == 202
    assert len(read_topic(kafka.bootstrap, topic, expected=1)) == 1


def test_given_a_token_without_write_scope_when_posting_then_403_names_the_scope(
    apps, env, kafka, topic
):
    status, body = post(apps, "reader-a", event_dict(workspace_id="ws-a"))
    assert (status, body["error"]) == (403, "missing_scope")
    assert "events:write" in body["message"]


def test_given_a_plain_legacy_token_when_posting_anywhere_then_it_still_writes(
    apps, env, kafka, topic
):
    event = request(
        "POST", "/events", "q", body=json.dumps(event_dict(workspace_id="ws-z")),
        token="tok-plain-legacy",
    )  # fmt: skip
    assert call(apps[0], event)[0] == 202


# ---------------------------------------------------------------------------- reading


@pytest.fixture
def stored(apps, env, kafka, topic, postgres) -> dict[str, list[dict[str, Any]]]:
    """Events of ws-a (one with secrets) and ws-b, through ingest, Kafka and the consumer."""
    events = {
        "ws-a": [event_dict(workspace_id="ws-a", type="risk.detected") for _ in range(5)],
        "ws-b": [event_dict(workspace_id="ws-b") for _ in range(3)],
    }
    events["ws-a"][0]["payload"] = {"db_password": "hunter2", "token": "ghp_" + "a" * 36}
    assert post(apps, "team-a", events["ws-a"])[0] == 202
    # ws-b through the plain token, which may write anywhere
    body = json.dumps(events["ws-b"])
    event = request("POST", "/events", "q", body=body, token="tok-plain-legacy")
    assert call(apps[0], event)[0] == 202
    _store_through_kafka(kafka, topic, postgres.dsn, expected=8)
    return events


def test_given_a_ws_a_reader_when_it_reads_ws_a_then_it_gets_the_redacted_events(apps, stored):
    status, body = get(apps, "reader-a", "/events", workspace_id="ws-a", limit=2)
    assert status == 200
    assert len(body["events"]) == 2
    everything = json.dumps(body)
    seen = [e["event_id"] for e in body["events"]]
    while body["next_cursor"]:
        status, body = get(
            apps, "reader-a", "/events", workspace_id="ws-a", limit=2, cursor=body["next_cursor"]
        )
        assert status == 200
        seen += [e["event_id"] for e in body["events"]]
        everything += json.dumps(body)
    assert sorted(seen) == sorted(e["event_id"] for e in stored["ws-a"])
    assert "hunter2" not in everything
    assert "ghp_" + "a" * 36 not in everything
    assert "[REDACTED:password]" in everything


def test_given_a_ws_a_reader_when_it_reads_ws_b_then_403_on_every_read_route(apps, stored):
    status, body = get(apps, "reader-a", "/events", workspace_id="ws-b")
    assert (status, body["error"]) == (403, "workspace_forbidden")
    other = stored["ws-b"][0]["event_id"]
    status, body = get(apps, "reader-a", f"/events/{other}")
    assert (status, body["error"]) == (403, "workspace_forbidden")
    mine = stored["ws-a"][0]["event_id"]
    status, body = get(apps, "reader-a", f"/events/{mine}")
    assert status == 200
    assert body["payload"]["db_password"] == "[REDACTED:password]"
    assert body["kafka"]["topic"]


@pytest.mark.parametrize(
    ("who", "path", "scope"),
    [
        ("writer-a", "/events", "events:read"),
        ("writer-a", "/events/00000000-0000-4000-8000-000000000000", "events:read"),
        ("reader-a", "/dead-letters", "dead_letters:read"),
    ],
)
def test_given_a_token_without_the_read_scope_when_reading_then_403_names_it(
    apps, env, who, path, scope
):
    status, body = get(apps, who, path, workspace_id="ws-a")
    assert (status, body["error"]) == (403, "missing_scope")
    assert scope in body["message"]


@pytest.mark.parametrize(
    "path", ["/events", "/events/00000000-0000-4000-8000-000000000000", "/dead-letters"]
)
def test_given_no_token_when_reading_then_401(apps, env, path):
    status, body = get(apps, None, path, workspace_id="ws-a")
    assert (status, body["error"]) == (401, "unauthorized")


def test_given_unknown_and_malformed_ids_when_fetched_then_404_and_400(apps, env):
    status, body = get(apps, "reader-a", "/events/00000000-0000-4000-8000-000000000000")
    assert (status, body["error"]) == (404, "not_found")
    status, body = get(apps, "reader-a", "/events/not-a-uuid")
    assert (status, body["error"]) == (400, "invalid_query")


def test_given_bad_parameters_and_cursors_when_reading_then_400_lists_them(apps, stored):
    status, body = get(apps, "reader-a", "/events", workspace_id="ws-a", limit=0, color="red")
    assert (status, body["error"]) == (400, "invalid_query")
    assert {tuple(e["loc"]) for e in body["errors"]} >= {("query", "limit"), ("query", "color")}
    _, first = get(apps, "ops", "/events", workspace_id="ws-a", limit=1)
    for params in (
        {"workspace_id": "ws-b", "cursor": first["next_cursor"]},
        {"workspace_id": "ws-a", "cursor": first["next_cursor"][:-3] + "xyz"},
    ):
        status, body = get(apps, "ops", "/events", **params)
        assert (status, body["error"]) == (400, "invalid_cursor")


def test_given_poison_in_the_topic_when_dead_letters_are_read_then_previews_hide_secrets(
    apps, env, kafka, topic, postgres
):
    store = EventStore(lambda: postgres.dsn)
    consume([KafkaRecord(topic, 0, 7, b"ws-a", b'{"oops": true, "password": "swordfish"}')], store)
    store.reset()
    status, body = get(apps, "team-a", "/dead-letters", topic=topic)
    assert status == 200
    (letter,) = body["dead_letters"]
    assert "swordfish" not in letter["preview"]
    assert letter["offset"] == 7
    assert body["next_cursor"] is None


def test_given_requests_when_logged_then_token_ids_appear_and_tokens_never(
    apps, env, kafka, topic, caplog
):
    caplog.set_level("INFO")
    post(apps, "writer-a", event_dict(workspace_id="ws-b"))
    get(apps, "reader-a", "/events", workspace_id="ws-a")
    get(apps, "writer-a", "/events", workspace_id="ws-a")
    ids = [(r.getMessage(), getattr(r, "token_id", None)) for r in caplog.records]
    assert ("ingest request", "writer-a") in ids
    assert ("query request", "reader-a") in ids
    assert ("query request", "writer-a") in ids
    everything = " ".join(str(r.__dict__) for r in caplog.records)
    for token, _, _ in TOKENS.values():
        assert token not in everything
