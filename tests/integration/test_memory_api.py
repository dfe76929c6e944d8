"""GET /memory and GET /memory/{entry_id} through the query handler in-process, on the
read-only login, against the real PostgreSQL: scopes, workspaces, filters, pagination,
markdown, history."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from local.samples.apigw import request
from local.services import Postgres
from punk_records import bootstrap
from punk_records.consumer import KafkaRecord, consume
from punk_records.store import EventStore
from tests.factories import event_dict
from tests.lambda_util import lambda_context, load_function

pytestmark = pytest.mark.integration

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
TOKENS = {
    "memory-alpha": ("tok-memory-alpha", ["ws-alpha"], ["memory:read"]),
    "memory-beta": ("tok-memory-beta", ["ws-beta"], ["memory:read"]),
    "events-alpha": ("tok-events-alpha", ["ws-alpha"], ["events:read"]),
    "memory-all": ("tok-memory-all", ["*"], ["memory:read"]),
}


@pytest.fixture(scope="module")
def query_app() -> ModuleType:
    return load_function("query")


@pytest.fixture
def memory(
    monkeypatch: pytest.MonkeyPatch, postgres: Postgres, reader_dsn: str, db: psycopg.Connection
) -> Iterator[psycopg.Connection]:
    """The memory sample batch consumed, the query function configured on its read-only login."""
    sample = json.loads((EVENTS_DIR / "msk-batch-memory.json").read_text(encoding="utf-8"))
    records = [
        KafkaRecord(
            r["topic"], r["partition"], r["offset"],
            base64.b64decode(r["key"]), base64.b64decode(r["value"]),
        )
        for group in sample["records"].values()
        for r in group
    ]  # fmt: skip
    store = EventStore(lambda: postgres.dsn)
    consume(records, store)
    store.reset()
    document = {
        "tokens": [
            {
                "id": name,
                "sha256": hashlib.sha256(token.encode()).hexdigest(),
                "workspaces": workspaces,
                "scopes": scopes,
            }
            for name, (token, workspaces, scopes) in TOKENS.items()
        ]
    }
    monkeypatch.setenv("API_TOKENS", json.dumps(document))
    monkeypatch.setenv("DATABASE_URL", reader_dsn)
    monkeypatch.setenv("CURSOR_KEY", "memory-api-test-key-" + "m" * 20)
    for name in ("API_TOKENS_SECRET_ARN", "CURSOR_KEY_SECRET_ARN", "DATABASE_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    bootstrap.reset()
    yield db
    bootstrap.reset()


def get(
    app: ModuleType, who: str | None, path: str, accept: str | None = None, **params: Any
) -> tuple[int, dict[str, str], str]:
    token = TOKENS[who][0] if who else None
    event = request("GET", path, "memory", token=token)
    event["rawQueryString"] = urlencode(params, doseq=True)
    route = "/memory/{entry_id}" if path.startswith("/memory/") else path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {route}"
    if accept:
        event["headers"]["accept"] = accept
    response = app.handler(event, lambda_context("punk-records-test"))
    return response["statusCode"], response.get("headers", {}), response["body"]


def get_json(app: ModuleType, who: str | None, path: str, **params: Any) -> tuple[int, Any]:
    status, _, body = get(app, who, path, **params)
    return status, json.loads(body)


def keys(body: dict[str, Any]) -> list[str]:
    return [entry["key"] for entry in body["entries"]]


def test_given_a_memory_reader_when_listing_then_current_entries_by_key(query_app, memory):
    status, body = get_json(query_app, "memory-alpha", "/memory", workspace_id="ws-alpha")
    assert status == 200
    # Retracted (owner/db) and expired ephemeral (incident/open) entries are left out.
    assert keys(body) == ["deploy/cadence", "runbook/disk"]
    assert body["next_cursor"] is None
    first = body["entries"][0]
    assert first["status"] == "promoted"
    assert first["value"] == {"days": ["tue", "thu"]}
    assert first["bucket"] == "global"
    assert first["expired"] is False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"include_expired": "true"}, ["deploy/cadence", "incident/open", "runbook/disk"]),
        ({"status": "retracted"}, ["owner/db"]),
        ({"bucket": "global"}, ["deploy/cadence"]),
        ({"key": "run"}, ["runbook/disk"]),
        ({"key": "%"}, []),
        ({"status": "candidate", "include_expired": "1", "bucket": "ephemeral"}, ["incident/open"]),
    ],
)
def test_given_filters_when_listing_then_they_combine(query_app, memory, params, expected):
    status, body = get_json(query_app, "memory-alpha", "/memory", workspace_id="ws-alpha", **params)
    assert status == 200
    assert keys(body) == expected


def test_given_pages_of_one_when_walking_then_every_entry_once_and_cursors_are_bound(
    query_app, memory
):
    seen, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        status, body = get_json(
            query_app, "memory-alpha", "/memory", workspace_id="ws-alpha",
            include_expired="true", status="candidate", limit=1, **extra,
        )  # fmt: skip
        assert status == 200
        seen += keys(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # The cursor belongs to this query: with other filters it is refused.
        other = get_json(
            query_app, "memory-alpha", "/memory", workspace_id="ws-alpha", cursor=cursor
        )
        assert other[0] == 400
        assert other[1]["error"] == "invalid_cursor"
    assert seen == ["incident/open"]

    seen, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        _, body = get_json(
            query_app, "memory-alpha", "/memory", workspace_id="ws-alpha", limit=1, **extra
        )
        seen += keys(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["deploy/cadence", "runbook/disk"]


def test_given_markdown_when_listing_then_a_memory_md_of_promoted_entries_by_bucket(
    query_app, memory
):
    status, headers, text = get(
        query_app, "memory-alpha", "/memory", accept="text/markdown", workspace_id="ws-alpha",
        include_expired="true",
    )  # fmt: skip
    assert status == 200
    assert headers["Content-Type"].startswith("text/markdown")
    assert text.startswith("# Memory of ws-alpha")
    assert '## Global\n\n- `deploy/cadence`: `{"days": ["tue", "thu"]}`' in text
    assert "## Workspace\n\n- `runbook/disk`" in text
    assert "owner/db" not in text  # retracted
    assert "incident/open" not in text  # a candidate, not promoted


def test_given_markdown_of_ephemeral_entries_then_each_shows_its_expiry(query_app, memory):
    _, _, text = get(
        query_app, "memory-alpha", "/memory", accept="text/markdown", workspace_id="ws-alpha",
        status="candidate", include_expired="true", bucket="ephemeral",
    )  # fmt: skip
    assert "## Ephemeral\n\n- `incident/open`: `{}` (candidate, confidence 0.6, expires " in text
    assert "2026-11-26T12:00:00Z" in text


@pytest.mark.parametrize(
    ("who", "workspace", "status", "error"),
    [
        (None, "ws-alpha", 401, "unauthorized"),
        ("events-alpha", "ws-alpha", 403, "missing_scope"),
        ("memory-beta", "ws-alpha", 403, "workspace_forbidden"),
    ],
)
def test_given_the_wrong_token_when_listing_then_refused(
    query_app, memory, who, workspace, status, error
):
    code, body = get_json(query_app, who, "/memory", workspace_id=workspace)
    assert (code, body["error"]) == (status, error)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"workspace_id": "ws-alpha", "status": "gone"},
        {"workspace_id": "ws-alpha", "limit": "0"},
    ],
)
def test_given_bad_parameters_when_listing_then_400(query_app, memory, params):
    status, body = get_json(query_app, "memory-all", "/memory", **params)
    assert (status, body["error"]) == (400, "invalid_query")


def _entry_id(db: psycopg.Connection, key: str) -> str:
    row = db.execute("SELECT entry_id FROM memory_entries WHERE key = %s", (key,)).fetchone()
    assert row is not None
    return str(row[0])


def test_given_an_entry_when_fetched_then_its_history_in_order(query_app, memory):
    entry_id = _entry_id(memory, "owner/db")
    status, body = get_json(query_app, "memory-alpha", f"/memory/{entry_id}")
    assert status == 200
    assert body["entry"]["status"] == "retracted"
    assert [
        (h["action"], h["from_status"], h["to_status"], h["reason"]) for h in body["history"]
    ] == [
        ("created", None, "candidate", None),
        ("promoted", "candidate", "promoted", "confirmed by on-call"),
        ("retracted", "promoted", "retracted", "team changed"),
    ]


def test_given_an_invalid_candidate_when_fetched_then_no_entry_and_the_reason(query_app, memory):
    row = memory.execute("SELECT entry_id FROM memory_trail WHERE action = 'invalid'").fetchone()
    assert row is not None
    status, body = get_json(query_app, "memory-alpha", f"/memory/{row[0]}")
    assert status == 200
    assert body["entry"] is None
    assert body["history"][0]["action"] == "invalid"


def test_given_an_entry_when_fetched_with_the_wrong_token_or_id_then_refused(query_app, memory):
    entry_id = _entry_id(memory, "deploy/cadence")
    assert get_json(query_app, "memory-beta", f"/memory/{entry_id}")[1]["error"] == (
        "workspace_forbidden"
    )
    assert get_json(query_app, "events-alpha", f"/memory/{entry_id}")[1]["error"] == (
        "missing_scope"
    )
    assert get_json(query_app, "memory-all", "/memory/not-a-uuid")[0] == 400
    unknown = event_dict()["event_id"]
    assert get_json(query_app, "memory-all", f"/memory/{unknown}")[0] == 404
