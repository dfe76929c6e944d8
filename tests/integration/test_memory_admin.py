"""Memory through the real Lambda runtime: the consumer projects the memory sample batch, the
admin function replays it (events/admin-replay-*.json) and redrives dead letters
(events/admin-redrive-*.json), against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.emulator import LambdaFunction, is_function_error
from local.postgres_service import Postgres
from local.samples import envelope_dict
from local.samples.apigw import DEV_TOKEN
from local.samples.kafka import batch as esm_batch
from local.samples.kafka import record
from punk_records.memory_store import digest

pytestmark = pytest.mark.integration

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def tokens(workspaces: list[str], scopes: list[str]) -> str:
    entry = {
        "id": "operator",
        "sha256": hashlib.sha256(DEV_TOKEN.encode()).hexdigest(),
        "workspaces": workspaces,
        "scopes": scopes,
    }
    return json.dumps({"tokens": [entry]})


@pytest.fixture(scope="module")
def consumer(postgres: Postgres) -> Iterator[LambdaFunction]:
    with LambdaFunction("ConsumerFunction", env_overrides={"DATABASE_URL": postgres.dsn}) as fn:
        yield fn


def admin_function(postgres: Postgres, **env: str) -> LambdaFunction:
    return LambdaFunction(
        "AdminFunction",
        env_overrides={
            "DATABASE_URL": postgres.dsn,
            "API_TOKENS": tokens(["*"], ["admin"]),
            **env,
        },
    )


@pytest.fixture(scope="module")
def admin(postgres: Postgres) -> Iterator[LambdaFunction]:
    with admin_function(postgres, MAX_PAYLOAD_BYTES="1000000") as fn:
        yield fn


def projection(db: psycopg.Connection) -> dict[str, str]:
    rows = db.execute("SELECT key, status FROM memory_entries WHERE workspace_id = 'ws-alpha'")
    return dict(rows.fetchall())


def test_given_the_memory_sample_when_the_consumer_runs_then_every_rule_shows(
    consumer: LambdaFunction, db: psycopg.Connection
) -> None:
    result = consumer.invoke(sample("msk-batch-memory.json"))

    assert result == {"batchItemFailures": []}
    # decided: a decision of its trace; reviewed: promoted, then retracted (delivered first);
    # cited: two referencing events; the invalid candidate: no entry, an audit row.
    assert projection(db) == {
        "deploy/cadence": "promoted",
        "owner/db": "retracted",
        "incident/open": "candidate",
        "runbook/disk": "promoted",
    }
    invalid = db.execute("SELECT reason FROM memory_trail WHERE action = 'invalid'").fetchall()
    assert len(invalid) == 1
    assert "key" in invalid[0][0]
    assert "bucket" in invalid[0][0]
    logs = consumer.logs()
    assert '"MemoryEntriesCreated"' in logs
    assert '"MemoryPayloadsInvalid"' in logs


def test_given_a_live_projection_when_replayed_then_the_digest_is_unchanged(
    consumer: LambdaFunction, admin: LambdaFunction, db: psycopg.Connection
) -> None:
    consumer.invoke(sample("msk-batch-memory.json"))
    live = digest(db, "ws-alpha")

    report = admin.invoke(sample("admin-replay-ws-alpha.json"))

    assert not is_function_error(report), report
    assert report["operation"] == "replay"
    assert report["before"] == report["after"] == live.as_dict()
    assert report["changed"] is False


def test_given_a_damaged_projection_when_replayed_then_it_is_rebuilt_and_a_dry_run_only_says_so(
    consumer: LambdaFunction, admin: LambdaFunction, db: psycopg.Connection
) -> None:
    consumer.invoke(sample("msk-batch-memory.json"))
    live = digest(db, "ws-alpha")
    db.execute("UPDATE memory_entries SET status = 'candidate'")
    db.execute("DELETE FROM memory_history WHERE action = 'retracted'")
    damaged = digest(db, "ws-alpha")

    dry = admin.invoke(sample("admin-replay-ws-alpha-dry-run.json"))
    assert (dry["dry_run"], dry["changed"]) == (True, True)
    assert (dry["before"], dry["after"]) == (damaged.as_dict(), live.as_dict())
    assert digest(db, "ws-alpha") == damaged

    report = admin.invoke(sample("admin-replay-ws-alpha.json"))
    assert report["changed"] is True
    assert digest(db, "ws-alpha") == live


def _oversize_batch() -> dict[str, Any]:
    big = envelope_dict(
        uuid.UUID(int=15),
        "redrive-big",
        type="memory.candidate",
        payload={"key": "big/report", "value": {"text": "x" * 300_000}},
    )
    return esm_batch("msk", [record(0, 500, json.dumps(big).encode(), b"ws-alpha")])


def test_given_a_dead_letter_valid_under_todays_limit_when_redriven_then_it_is_stored_once(
    consumer: LambdaFunction, admin: LambdaFunction, db: psycopg.Connection
) -> None:
    consumer.invoke(_oversize_batch())  # the consumer's limit is 262144 bytes
    consumer.invoke(sample("msk-batch-with-poison.json"))  # six that stay invalid
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (7,)

    report = admin.invoke(sample("admin-redrive-topic-range.json"))  # the limit is raised

    assert (report["examined"], report["redriven"], report["still_invalid"]) == (1, 1, 0)
    event_id = db.execute(
        "SELECT event_id FROM events WHERE payload_json->>'key' = 'big/report'"
    ).fetchone()
    assert event_id is not None
    marked = db.execute(
        "SELECT redriven_event_id FROM dead_letters WHERE redriven_at IS NOT NULL"
    ).fetchall()
    assert marked == [event_id]
    # the redriven candidate is projected like any event
    assert projection(db) == {"big/report": "candidate"}

    again = admin.invoke(sample("admin-redrive-all.json"))
    assert (again["examined"], again["redriven"], again["still_invalid"]) == (6, 0, 6)
    assert len(again["still_invalid_sample"]) == 6
    assert admin.invoke(sample("admin-redrive-topic-range.json"))["examined"] == 0


def test_given_a_dry_run_redrive_then_nothing_changes(
    consumer: LambdaFunction, admin: LambdaFunction, db: psycopg.Connection
) -> None:
    consumer.invoke(_oversize_batch())

    report = admin.invoke({**sample("admin-redrive-all.json"), "dry_run": True})

    assert (report["dry_run"], report["redriven"]) == (True, 1)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM dead_letters WHERE redriven_at IS NULL").fetchone() == (
        1,
    )


@pytest.mark.parametrize(
    ("workspaces", "scopes", "request_name", "error"),
    [
        (["*"], ["memory:read", "events:read"], "admin-replay-ws-alpha.json", "missing_scope"),
        (["ws-beta"], ["admin"], "admin-replay-ws-alpha.json", "workspace_forbidden"),
        (["ws-alpha"], ["admin"], "admin-redrive-all.json", "forbidden"),
    ],
)
def test_given_a_token_without_admin_rights_then_the_operation_is_refused(
    postgres: Postgres,
    db: psycopg.Connection,
    workspaces: list[str],
    scopes: list[str],
    request_name: str,
    error: str,
) -> None:
    with admin_function(postgres, API_TOKENS=tokens(workspaces, scopes)) as fn:
        report = fn.invoke(sample(request_name))
        bad_token = fn.invoke({**sample(request_name), "token": "not-a-token"})
        malformed = fn.invoke({"operation": "rebuild-everything", "token": DEV_TOKEN})
    assert report["error"] == error
    assert bad_token["error"] == "unauthorized"
    assert malformed["error"] == "invalid_query"
    assert DEV_TOKEN not in json.dumps([report, bad_token, malformed])
