"""The consumer handler, invoked in-process, against the real PostgreSQL server."""

from __future__ import annotations

import base64
import json
import tracemalloc
from collections.abc import Iterator

import boto3
import psycopg
import pytest
from aws_lambda_powertools.utilities import parameters
from kafka import KafkaProducer
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from local.samples import kafka as samples
from punk_records import bootstrap
from punk_records.acceptance import accept_all
from punk_records.config import Settings
from punk_records.errors import StoreUnavailable
from punk_records.producer import ProducerCache
from tests.factories import envelope
from tests.integration.kafka_util import read_topic
from tests.lambda_util import lambda_context, load_function, sample_event

MiB = 1024 * 1024
app = load_function("consumer")


CONTEXT = lambda_context("punk-records-consumer")


def configure(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    """Environment of a fresh container: settings and store are rebuilt on first use."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT_S", "2")
    bootstrap.reset()


@pytest.fixture
def invoke(db, postgres, monkeypatch) -> Iterator:
    """Call the handler as Lambda would, in a container configured for the test database."""
    configure(monkeypatch, postgres.dsn)
    yield lambda event: app.handler(event, CONTEXT)
    bootstrap.reset()


def counts(db: psycopg.Connection) -> tuple[int, int] | None:
    return db.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM dead_letters)"
    ).fetchone()


def sample_records(name: str) -> list[dict]:
    return [raw for group in sample_event(name)["records"].values() for raw in group]


def carried_event_id(raw: dict) -> str | None:
    try:
        return json.loads(base64.b64decode(raw["value"]))["event_id"]
    except (TypeError, ValueError, KeyError):
        return None


# (events stored, dead letters stored) after one delivery of each sample
EXPECTED = {
    "batch-valid": (5, 0),
    "batch-with-duplicates": (3, 0),
    "batch-with-poison": (2, 6),
    "batch-empty": (0, 0),
    "batch-memory": (10, 0),
}
SAMPLES = sorted(samples.samples())


def test_every_consumer_sample_has_an_expected_outcome():
    assert {name.split("-", 1)[1].removesuffix(".json") for name in SAMPLES} == set(EXPECTED)
    assert {name.split("-", 1)[0] for name in SAMPLES} == {"msk", "smk"}


@pytest.mark.parametrize("name", SAMPLES)
def test_given_sample_event_when_delivered_twice_then_stored_once(invoke, db, name):
    # GIVEN a sample event from events/
    event = sample_event(name)
    expected = EXPECTED[name.split("-", 1)[1].removesuffix(".json")]
    # WHEN the event source mapping delivers it, then redelivers it
    first = invoke(event)
    after_first = counts(db)
    second = invoke(event)
    # THEN both invocations succeed and the second one adds nothing
    assert first == second == {"batchItemFailures": []}
    assert after_first == counts(db) == expected
    # AND every stored event keeps the coordinates of the first record that carried it
    stored = db.execute(
        "SELECT event_id::text, kafka_topic, kafka_partition, kafka_offset FROM events"
    )
    first_seen: dict[str, tuple] = {}
    for raw in sample_records(name):
        coords = (raw["topic"], raw["partition"], raw["offset"])
        first_seen.setdefault(carried_event_id(raw), coords)
    for event_id, *coords in stored:
        assert first_seen[event_id] == tuple(coords)


def test_given_payload_with_secret_when_stored_then_only_redacted_payload_is_in_postgres(
    invoke, db
):
    invoke(sample_event("msk-batch-valid.json"))
    secret_id = samples.envelope("valid-4").event_id
    (payload,) = db.execute(
        "SELECT payload_json FROM events WHERE event_id = %s", (secret_id,)
    ).fetchone()
    assert payload["summary"] == "credentials in a config file"
    assert "hunter2" not in json.dumps(payload)
    (rows,) = db.execute("SELECT count(*) FROM events WHERE payload_json::text LIKE '%hunter2%'")
    assert rows == (0,)


def test_given_poison_batch_when_stored_then_dead_letters_hold_raw_bytes_and_reasons(invoke, db):
    # GIVEN a batch mixing valid records and every kind of poison record
    event = sample_event("smk-batch-with-poison.json")
    # WHEN delivered
    assert invoke(event) == {"batchItemFailures": []}
    # THEN the good ones are events and each bad one is a dead letter, byte for byte
    letters = {
        row[3]: row
        for row in db.execute(
            "SELECT raw_value, raw_key, kafka_topic, kafka_offset, kafka_partition, error"
            " FROM dead_letters"
        )
    }
    assert sorted(letters) == sorted(samples.POISON_EXPECTED_REASONS)
    for raw in sample_records("smk-batch-with-poison.json"):
        if raw["offset"] not in letters:
            continue
        value, key, topic, offset, partition, error = letters[raw["offset"]]
        assert value == (raw["value"] and base64.b64decode(raw["value"]))
        assert key == (raw["key"] and base64.b64decode(raw["key"]))
        assert (topic, partition) == (raw["topic"], raw["partition"])
        assert error.startswith(samples.POISON_EXPECTED_REASONS[offset]), error
    good = {row[0] for row in db.execute("SELECT kafka_offset FROM events")}
    assert good == {300, 50}


def test_given_database_stopped_when_batch_arrives_then_fails_and_succeeds_after_restart(
    invoke, db, postgres
):
    # GIVEN a warm container that already stored a batch
    invoke(sample_event("msk-batch-with-duplicates.json"))
    event = sample_event("msk-batch-valid.json")
    db.close()
    postgres.stop()
    try:
        # WHEN the next batch arrives while PostgreSQL is down
        # THEN the invocation fails with a retriable error, so the ESM will redeliver it
        with pytest.raises(StoreUnavailable) as caught:
            invoke(event)
        assert caught.value.retriable
    finally:
        postgres.start()
    # AND the redelivery after the restart succeeds on the same container, without a restart
    assert invoke(event) == {"batchItemFailures": []}
    with psycopg.connect(postgres.dsn) as conn:
        assert counts(conn) == (3 + 5, 0)


def test_given_transient_failure_midway_when_batch_written_then_nothing_is_half_stored(
    db, postgres, monkeypatch
):
    # GIVEN a container whose statements give up on a lock after 300 ms, and another session
    # holding dead_letters locked, so the batch fails after its events were inserted
    configure(monkeypatch, postgres.dsn + "?options=-c%20lock_timeout%3D300")
    event = sample_event("msk-batch-with-poison.json")
    try:
        with psycopg.connect(postgres.dsn) as blocker:
            blocker.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")
            # WHEN the batch arrives THEN the invocation fails and none of its events is visible
            with pytest.raises(StoreUnavailable):
                app.handler(event, CONTEXT)
            assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert counts(db) == (0, 0)
        # AND once the lock is gone the redelivered batch is stored whole
        assert app.handler(event, CONTEXT) == {"batchItemFailures": []}
        assert counts(db) == (2, 6)
    finally:
        bootstrap.reset()


def test_given_warm_container_when_invoked_repeatedly_then_one_connection_is_reused(invoke, db):
    invoke(sample_event("smk-batch-valid.json"))
    pid = bootstrap.container.store().connection().info.backend_pid
    invoke(sample_event("smk-batch-with-duplicates.json"))
    invoke(sample_event("smk-batch-with-poison.json"))
    assert bootstrap.container.store().connection().info.backend_pid == pid
    (ours,) = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'punk'"
    ).fetchone()
    assert ours == 1


def big_batch(size: int) -> dict:
    """A realistic batch: ``size`` distinct events over three partitions, ~0.5 KiB each."""
    records = []
    for i in range(size):
        env = samples.envelope(
            f"bulk-{i}",
            workspace_id=f"ws-{i % 50}",
            payload={
                "summary": f"disk usage above 90% on volume {i}",
                "host": f"db-{i % 7}",
                "metrics": {"used_pct": 91.5, "free_gb": i % 100},
                "tags": ["storage", "prod"],
            },
        )
        records.append(samples.envelope_record(env, i % 3, i // 3))
    return samples.batch("msk", records)


def test_given_10000_record_batch_when_handled_then_stored_within_lambda_memory_budget(invoke, db):
    # GIVEN the largest batch an event source mapping delivers
    event = big_batch(10_000)
    # WHEN handled, with Python allocations traced
    tracemalloc.start()
    try:
        response = invoke(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN every event is stored, and the handler's peak allocation fits a 512 MB function
    # with room for the runtime and the event itself
    assert response == {"batchItemFailures": []}
    assert counts(db) == (10_000, 0)
    print(f"10,000 records: peak traced allocation {peak / MiB:.1f} MiB")
    assert peak < 256 * MiB


@mock_aws
def test_given_rds_secret_in_secrets_manager_when_batch_arrives_then_stored_with_its_credentials(
    db, postgres, monkeypatch
):
    # GIVEN the database credentials only in an RDS-style secret, as in AWS
    dsn = conninfo_to_dict(postgres.dsn)
    secret = {
        "engine": "postgres",
        "host": dsn["host"],
        "port": int(dsn["port"]),
        "username": dsn["user"],
        "password": dsn.get("password", ""),
        "dbname": dsn["dbname"],
        "sslmode": "disable",  # the local server has no TLS; RDS secrets default to require
    }
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="punk-records/db", SecretString=json.dumps(secret))["ARN"]
    configure(monkeypatch, "postgresql://nobody@127.0.0.1:9/wrong")  # must not be used
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    parameters.clear_caches()
    try:
        # WHEN a batch arrives THEN it is stored through the connection the secret describes
        assert app.handler(sample_event("smk-batch-valid.json"), CONTEXT) == {
            "batchItemFailures": []
        }
        assert counts(db) == (5, 0)
    finally:
        bootstrap.reset()
        parameters.clear_caches()


def as_esm_event(records: list, bootstrap: str) -> dict:
    """The self-managed Kafka ESM event Lambda would build from these consumer records."""
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(f"{rec.topic}-{rec.partition}", []).append(
            {
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "timestamp": rec.timestamp,
                "timestampType": "CREATE_TIME" if rec.timestamp_type == 0 else "LOG_APPEND_TIME",
                "key": None if rec.key is None else base64.b64encode(rec.key).decode(),
                "value": None if rec.value is None else base64.b64encode(rec.value).decode(),
                "headers": [{name: list(value)} for name, value in rec.headers],
            }
        )
    return {"eventSource": "SelfManagedKafka", "bootstrapServers": bootstrap, "records": groups}


def test_given_records_from_the_real_broker_when_delivered_then_stored_with_their_coordinates(
    kafka, topic, invoke, db
):
    # GIVEN 12 events from the ingest producer, one with a secret, and 2 poison records
    envelopes = [envelope(workspace_id=f"ws-{i % 4}") for i in range(11)]
    envelopes.append(envelope(payload={"api_key": "sk-live-0123456789abcdefghijklmnop"}))
    settings = Settings.model_validate(
        {"kafka_bootstrap_servers": kafka.bootstrap, "kafka_topic": topic}
    )
    producer = ProducerCache(settings)
    producer.produce(accept_all(envelopes))
    producer.reset()
    raw = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    raw.send(topic, key=b"ws-0", value=b"\xc3\x28 broken UTF-8").get(timeout=10)
    raw.send(topic, key=b"ws-0", value=None).get(timeout=10)
    raw.close()
    records = read_topic(kafka.bootstrap, topic, expected=14)
    assert len(records) == 14
    event = as_esm_event(records, kafka.bootstrap)
    # WHEN the batch is delivered, and delivered again
    assert invoke(event) == invoke(event) == {"batchItemFailures": []}
    # THEN each event is stored once, at the partition and offset Kafka gave it
    assert counts(db) == (12, 2)
    where = {
        str(r.headers[0][1], "utf-8"): (r.topic, r.partition, r.offset)
        for r in records
        if r.headers
    }
    stored = db.execute(
        "SELECT event_id::text, kafka_topic, kafka_partition, kafka_offset FROM events"
    )
    for event_id, *coords in stored:
        assert where[event_id] == tuple(coords)
    # AND the secret never reached PostgreSQL, and poison is kept byte for byte
    (leaks,) = db.execute(
        "SELECT count(*) FROM events WHERE payload_json::text LIKE '%sk-live-%'"
    ).fetchone()
    assert leaks == 0
    letters = db.execute(
        "SELECT raw_value, error FROM dead_letters ORDER BY kafka_offset"
    ).fetchall()
    assert {value for value, _ in letters} == {b"\xc3\x28 broken UTF-8", None}
    assert sorted(error.split(":")[0] for _, error in letters) == [
        "record has no value",
        "value is not UTF-8",
    ]
