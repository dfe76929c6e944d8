"""End to end: records produced to the real broker, delivered as the ESM would, stored once."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from punk_records import config, store
from punk_records.config import Settings
from punk_records.producer import ProducerCache
from tests.factories import envelope
from tests.integration.kafka_util import read_topic
from tests.integration.test_consumer import CONTEXT, app, configure, counts


@pytest.fixture
def invoke(db, postgres, monkeypatch) -> Iterator:
    configure(monkeypatch, postgres.dsn)
    yield lambda event: app.handler(event, CONTEXT)
    store.get_store().reset()
    config.get_settings.cache_clear()
    store.get_store.cache_clear()


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
    producer.produce(envelopes)
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
