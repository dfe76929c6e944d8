"""Every sample in events/ through the real Lambda runtime (emulator + awslambdaric), against
the real Kafka broker and PostgreSQL server, gives its documented result."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from psycopg.conninfo import make_conninfo

from local.emulator import EmulatorError, LambdaFunction, is_function_error
from local.kafka_service import Kafka
from local.postgres_service import Postgres
from local.samples import apigw_query
from local.samples.apigw import DEV_TOKEN
from local.samples.apigw import EXPECTED_STATUS as INGEST_STATUS
from punk_records.read_store import grant_reader_login

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
PARTITIONS = 3


@dataclass(frozen=True)
class Http:
    """An API Gateway request to the ingest function: the status, error code, events accepted."""

    status: int
    error: str | None = None
    accepted: int = 0


@dataclass(frozen=True)
class Batch:
    """An event source mapping batch to the consumer: rows it leaves in each table."""

    events: int
    dead_letters: int


@dataclass(frozen=True)
class Admin:
    """A request to the admin function (tested with the memory it replays and redrives)."""


# The documented result of every sample (docs/ingest.md, docs/consumer.md). A new sample file
# without an entry here fails the run.
EXPECTED: dict[str, Http | Batch | Admin] = {
    "apigw-get-health.json": Http(200),
    "apigw-post-events-valid.json": Http(202, accepted=1),
    "apigw-post-events-batch.json": Http(202, accepted=3),
    "apigw-post-events-bad-token.json": Http(401, "unauthorized"),
    "apigw-post-events-missing-token.json": Http(401, "unauthorized"),
    "apigw-post-events-invalid-envelope.json": Http(400, "invalid_envelope"),
    "apigw-post-events-malformed-json.json": Http(400, "malformed_json"),
    "apigw-get-events-page.json": Http(200),
    "apigw-get-events-missing-workspace.json": Http(400, "invalid_query"),
    "apigw-get-events-bad-cursor.json": Http(400, "invalid_cursor"),
    "apigw-get-event-unknown.json": Http(404, "not_found"),
    "apigw-get-dead-letters.json": Http(200),
    **{
        f"{source}-{scenario}.json": outcome
        for source in ("msk", "smk")
        for scenario, outcome in {
            "batch-valid": Batch(events=5, dead_letters=0),
            "batch-with-duplicates": Batch(events=3, dead_letters=0),
            "batch-with-poison": Batch(events=2, dead_letters=6),
            "batch-memory": Batch(events=10, dead_letters=0),
            "batch-empty": Batch(events=0, dead_letters=0),
        }.items()
    },
}
# The admin function's samples: tests/integration/test_memory_admin.py.
EXPECTED.update(
    {
        name: Admin()
        for name in (
            "admin-replay-ws-alpha.json",
            "admin-replay-ws-alpha-dry-run.json",
            "admin-redrive-all.json",
            "admin-redrive-topic-range.json",
        )
    }
)
SAMPLES = sorted(path.name for path in EVENTS_DIR.glob("*.json"))


def test_given_the_events_folder_then_every_sample_has_a_documented_result() -> None:
    assert SAMPLES
    assert set(SAMPLES) == set(EXPECTED)


@pytest.fixture(scope="module")
def ingest_topic(kafka: Kafka) -> str:
    name = f"emulator-{uuid.uuid4().hex[:12]}"
    kafka.create_topic(name, partitions=PARTITIONS)
    return name


@pytest.fixture(scope="module")
def ingest(kafka: Kafka, postgres: Postgres, ingest_topic: str) -> Iterator[LambdaFunction]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KAFKA_TOPIC": ingest_topic,
        "DATABASE_URL": postgres.dsn,
        "API_TOKENS": DEV_TOKEN,
    }
    with LambdaFunction("IngestFunction", env_overrides=env) as function:
        yield function


@pytest.fixture(scope="module")
def query(postgres: Postgres) -> Iterator[LambdaFunction]:
    """The query function on its own SELECT-only login, the development token allowed to read."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        grant_reader_login(conn, "punk_query_emulator", "emulator-pw")
    env = {
        "DATABASE_URL": make_conninfo(
            postgres.dsn, user="punk_query_emulator", password="emulator-pw"
        ),
        "API_TOKENS": apigw_query.dev_token_set(),
        "CURSOR_KEY": "emulator-test-cursor-key-" + "c" * 20,
    }
    with LambdaFunction("QueryFunction", env_overrides=env) as function:
        yield function


@pytest.fixture(scope="module")
def consumer(postgres: Postgres) -> Iterator[LambdaFunction]:
    with LambdaFunction("ConsumerFunction", env_overrides={"DATABASE_URL": postgres.dsn}) as fn:
        yield fn


def _event_ids_in(kafka: Kafka, topic: str) -> set[str]:
    reader = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        return {dict(record.headers)["event_id"].decode() for record in reader}
    finally:
        reader.close()


@pytest.mark.parametrize("sample", sorted(apigw_query.EXPECTED_STATUS))
def test_given_a_read_sample_when_the_query_function_runs_then_it_answers_as_documented(
    sample: str, query: LambdaFunction
) -> None:
    expected = EXPECTED[sample]
    assert isinstance(expected, Http)
    assert expected.status == apigw_query.EXPECTED_STATUS[sample]
    event = json.loads((EVENTS_DIR / sample).read_text(encoding="utf-8"))

    result = query.invoke(event)

    assert not is_function_error(result), result
    body = json.loads(result["body"])
    assert result["statusCode"] == expected.status, body
    if expected.error:
        assert body["error"] == expected.error
    if expected.status == 200:
        assert body["next_cursor"] is None


@pytest.mark.parametrize("sample", sorted(INGEST_STATUS))
def test_given_an_api_gateway_sample_when_the_ingest_function_runs_then_it_answers_as_documented(
    sample: str, ingest: LambdaFunction, kafka: Kafka, ingest_topic: str
) -> None:
    expected = EXPECTED[sample]
    assert isinstance(expected, Http)
    event = json.loads((EVENTS_DIR / sample).read_text(encoding="utf-8"))

    result = ingest.invoke(event)

    assert not is_function_error(result), result
    body = json.loads(result["body"])
    assert result["statusCode"] == expected.status, body
    if expected.error:
        assert body["error"] == expected.error
    if expected.status == 202:
        assert body["accepted"] == expected.accepted
        assert set(body["event_ids"]) <= _event_ids_in(kafka, ingest_topic)
    if sample == "apigw-get-health.json":
        assert body["failing"] == []


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.startswith(("msk-", "smk-"))])
def test_given_a_kafka_sample_when_the_consumer_function_runs_then_postgres_holds_the_result(
    sample: str, consumer: LambdaFunction, db: psycopg.Connection
) -> None:
    expected = EXPECTED[sample]
    assert isinstance(expected, Batch)
    event: dict[str, Any] = json.loads((EVENTS_DIR / sample).read_text(encoding="utf-8"))
    delivered = {
        (r["topic"], r["partition"], r["offset"])
        for group in event["records"].values()
        for r in group
    }

    result = consumer.invoke(event)

    assert result == {"batchItemFailures": []}
    stored = db.execute("SELECT kafka_topic, kafka_partition, kafka_offset FROM events").fetchall()
    dead = db.execute(
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM dead_letters"
    ).fetchall()
    assert len(stored) == expected.events
    assert len(dead) == expected.dead_letters
    assert set(stored) | set(dead) <= delivered


def test_given_a_sample_delivered_twice_when_the_consumer_runs_then_nothing_is_stored_twice(
    consumer: LambdaFunction, db: psycopg.Connection
) -> None:
    event = json.loads((EVENTS_DIR / "msk-batch-with-poison.json").read_text(encoding="utf-8"))

    consumer.invoke(event)
    consumer.invoke(event)

    assert db.execute("SELECT count(*) FROM events").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (6,)


def test_given_an_invocation_then_the_runtime_saw_the_templates_settings(
    consumer: LambdaFunction,
) -> None:
    consumer.invoke(json.loads((EVENTS_DIR / "smk-batch-empty.json").read_text(encoding="utf-8")))

    env = consumer.environment
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ConsumerFunction"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "120"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["MAX_PAYLOAD_BYTES"] == "262144"
    assert env["PYTHONPATH"].endswith("layers/punk_records/python")
    reports = consumer.reports()
    assert reports
    assert reports[-1]["Memory Size"] == "1024 MB"


@pytest.mark.parametrize(
    ("event", "status"), [("msk-batch-empty.json", 0), ("apigw-get-health.json", 1)]
)
def test_given_the_command_line_when_invoking_then_result_on_stdout_logs_on_stderr(
    event: str, status: int, tmp_path: Path
) -> None:
    # The consumer given an API Gateway request fails: exit status 1 and Lambda's error payload.
    env_vars = tmp_path / "env.json"
    env_vars.write_text(
        json.dumps({"ConsumerFunction": {"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}})
    )

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.emulator",
            "invoke",
            "ConsumerFunction",
            "-e",
            str(EVENTS_DIR / event),
            "--env-vars",
            str(env_vars),
        ],
        cwd=EVENTS_DIR.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == status, run.stderr
    result = json.loads(run.stdout)
    assert is_function_error(result) is (status == 1)
    assert "REPORT RequestId:" in run.stderr


def test_given_an_emulator_that_exits_at_once_when_started_then_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_RIE", "/bin/false")
    function = LambdaFunction("ConsumerFunction")

    with pytest.raises(EmulatorError, match="did not start"):
        function.start()

    with pytest.raises(EmulatorError, match="start"):
        function.invoke({})
