"""The consumer handler: ESM event decoding, response shape, metrics and the secret path."""

from __future__ import annotations

import base64
import copy
import io
import json
from collections.abc import Callable, Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.data_classes import KafkaEvent
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict

from local.samples import kafka as samples
from punk_records import bootstrap, store
from punk_records.errors import SecretUnavailable, StoreUnavailable
from tests.lambda_util import lambda_context, load_function, sample_event
from tests.unit.test_consumer import FakeStore

app = load_function("consumer")


CONTEXT = lambda_context("punk-records-consumer")


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStore]:
    fake = FakeStore()
    monkeypatch.setattr(bootstrap.container, "store", lambda: fake)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "PunkRecords")
    bootstrap.reset()
    yield fake
    bootstrap.reset()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """The JSON log lines the shared Powertools logger wrote during the test."""
    handler = app.logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(previous)


def emf_metrics(output: str) -> dict[str, float]:
    """Metric values from the EMF documents printed on stdout."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


@pytest.mark.parametrize("source", ["msk", "smk"])
def test_given_both_event_sources_when_decoded_then_records_carry_kafka_coordinates(source):
    # GIVEN the valid sample of each event source
    event = KafkaEvent(sample_event(f"{source}-batch-valid.json"))
    # WHEN decoded
    records = list(app.records(event))
    # THEN every record is there with its coordinates and bytes
    assert [(r.topic, r.partition, r.offset) for r in records] == [
        (samples.TOPIC, 0, 100),
        (samples.TOPIC, 0, 101),
        (samples.TOPIC, 0, 102),
        (samples.TOPIC, 1, 40),
        (samples.TOPIC, 1, 41),
    ]
    first = records[0]
    assert first.key == b"ws-alpha"
    assert json.loads(first.value)["event_id"] == str(samples.envelope("valid-1").event_id)
    assert event.event_source == {"msk": "aws:kafka", "smk": "SelfManagedKafka"}[source]


def test_given_record_without_key_value_or_headers_when_decoded_then_none():
    raw = samples.record(3, 9, None)
    del raw["headers"]
    (record,) = app.records(KafkaEvent(samples.batch("msk", [raw])))
    assert (record.key, record.value) == (None, None)


def test_given_valid_batch_when_handled_then_all_succeeded_response_and_secret_redacted(
    fake_store, capsys, log_lines
):
    # GIVEN the MSK valid batch, one of whose payloads carries a password
    event = sample_event("msk-batch-valid.json")
    # WHEN handled
    response = app.handler(event, CONTEXT)
    # THEN the response is the documented "every record succeeded" form
    assert response == {"batchItemFailures": []}
    stored = {str(s.envelope.event_id): s.envelope for s in fake_store.events.values()}
    assert len(stored) == 5
    secret = stored[str(samples.envelope("valid-4").event_id)]
    assert "hunter2" not in json.dumps(secret.payload)
    assert "hunter2" not in capsys.readouterr().out + json.dumps(log_lines())


def test_given_batch_when_handled_then_emf_metrics_and_one_batch_log_line(
    fake_store, capsys, log_lines
):
    app.handler(sample_event("smk-batch-with-poison.json"), CONTEXT)
    capsys.readouterr()
    app.handler(sample_event("smk-batch-with-poison.json"), CONTEXT)
    out = capsys.readouterr().out
    batch_logs = [line for line in log_lines() if line.get("message") == "batch stored"]
    assert len(batch_logs) == 2
    second = batch_logs[1]
    assert (second["received"], second["inserted"], second["duplicates"]) == (8, 0, 2)
    assert (second["poison"], second["dead_lettered"]) == (6, 0)
    assert second["event_source"] == "SelfManagedKafka"
    assert second["partitions"] == {
        f"{samples.TOPIC}-0": {"first": 300, "last": 306, "count": 7},
        f"{samples.TOPIC}-1": {"first": 50, "last": 50, "count": 1},
    }
    assert len(second["poison_sample"]) == 6
    metrics = emf_metrics(out)
    assert metrics["RecordsReceived"] == 8
    assert metrics["EventsPersisted"] == 0
    assert metrics["EventsDuplicate"] == 2
    assert metrics["RecordsDeadLettered"] == 0
    assert metrics["BatchLatency"] >= 0


def test_given_store_unavailable_when_handled_then_invocation_fails_so_esm_retries(
    fake_store, capsys, log_lines
):
    fake_store.fail = True
    with pytest.raises(StoreUnavailable):
        app.handler(sample_event("msk-batch-valid.json"), CONTEXT)
    assert emf_metrics(capsys.readouterr().out)["BatchesFailed"] == 1
    (error,) = [line for line in log_lines() if line["level"] == "ERROR"]
    assert (error["error"], error["retriable"]) == ("StoreUnavailable", True)


def test_given_unexpected_error_when_handled_then_counted_and_raised_without_its_message(
    fake_store, capsys, log_lines, monkeypatch
):
    def explode(*_args: object) -> None:
        raise RuntimeError('DETAIL: Failing row contains ("hunter2")')

    monkeypatch.setattr(fake_store, "write", explode)
    with pytest.raises(RuntimeError):
        app.handler(sample_event("msk-batch-valid.json"), CONTEXT)
    assert emf_metrics(capsys.readouterr().out)["BatchesFailed"] == 1
    (error,) = [line for line in log_lines() if line["level"] == "ERROR"]
    assert (error["error"], error["retriable"]) == ("RuntimeError", False)
    assert "hunter2" not in json.dumps(log_lines())


@pytest.mark.parametrize("name", ["msk-batch-empty.json", "smk-batch-empty.json"])
def test_given_empty_batch_when_handled_then_success_without_database(fake_store, name):
    fake_store.fail = True  # any write would raise
    assert app.handler(sample_event(name), CONTEXT) == {"batchItemFailures": []}
    assert fake_store.writes == 0


def test_given_committed_samples_then_they_match_the_generator():
    for name, event in samples.samples().items():
        assert sample_event(name) == event, f"events/{name} is stale: run python -m local.samples"


def test_given_sample_events_then_shapes_follow_the_esm_contract():
    for name, event in samples.samples().items():
        source = event["eventSource"]
        assert source == ("aws:kafka" if name.startswith("msk-") else "SelfManagedKafka")
        assert ("eventSourceArn" in event) == (source == "aws:kafka")
        assert isinstance(event["bootstrapServers"], str)
        for group, records in event["records"].items():
            for raw in records:
                assert group == f"{raw['topic']}-{raw['partition']}"
                assert isinstance(raw["partition"], int)
                assert raw["timestampType"] == "CREATE_TIME"
                if raw["value"] is not None:
                    base64.b64decode(raw["value"], validate=True)
                for header in raw["headers"]:
                    ((_, values),) = header.items()
                    assert all(isinstance(v, int) for v in values)


def test_given_event_source_mapping_event_when_handled_then_event_is_not_modified(fake_store):
    event = sample_event("msk-batch-with-duplicates.json")
    before = copy.deepcopy(event)
    app.handler(event, CONTEXT)
    assert event == before


@mock_aws
def test_given_database_secret_arn_when_conninfo_built_then_secret_fields_used(
    monkeypatch, tmp_path
):
    # GIVEN an RDS-style secret in Secrets Manager and only its ARN in the environment, and the
    # RDS CA bundle the layer build ships
    bundle = tmp_path / "rds-ca-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    monkeypatch.setattr(store, "RDS_CA_BUNDLE", bundle)
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(
        Name="punk-records/db",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "db.internal",
                "port": 6543,
                "username": "consumer",
                "password": "p@ss word/1",
                "dbname": "punk",
            }
        ),
    )["ARN"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_URL", "postgresql://ignored@localhost/ignored")
    parameters.clear_caches()
    bootstrap.reset()
    try:
        # WHEN the store asks for its connection string
        conninfo = store.database_conninfo(bootstrap.container.settings())
    finally:
        parameters.clear_caches()
        bootstrap.reset()
    # THEN it comes from the secret (password quoted, the server verified against the RDS
    # CAs), not from DATABASE_URL
    assert conninfo_to_dict(conninfo) == {
        "host": "db.internal",
        "port": "6543",
        "user": "consumer",
        "password": "p@ss word/1",
        "dbname": "punk",
        "sslmode": "verify-full",
        "sslrootcert": str(bundle),
    }


@mock_aws
def test_given_secret_that_cannot_be_read_when_handled_then_invocation_fails_retriable(
    monkeypatch, log_lines
):
    # GIVEN a database secret ARN that does not exist (deleted, or no permission yet)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:punk-records/db-AbCdEf"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    parameters.clear_caches()
    bootstrap.reset()
    try:
        # WHEN a batch arrives THEN the invocation fails with a retriable error
        with pytest.raises(SecretUnavailable) as caught:
            app.handler(sample_event("smk-batch-valid.json"), CONTEXT)
    finally:
        parameters.clear_caches()
        bootstrap.reset()
    assert caught.value.retriable
    (error,) = [line for line in log_lines() if line["level"] == "ERROR"]
    assert (error["error"], error["retriable"]) == ("SecretUnavailable", True)
