"""The local service runner starts a real Kafka broker and PostgreSQL server, and restarts them."""

import socket
import uuid

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from local.kafka_service import Kafka
from local.postgres_service import Postgres
from local.processes import ServiceError

TOPIC = "services-test.events.v1"


def _partition_count(kafka: Kafka, topic: str) -> int:
    with KafkaAdminClient(bootstrap_servers=kafka.bootstrap) as admin:
        (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def _read_one(kafka: Kafka, partition: int, offset: int) -> bytes:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, consumer_timeout_ms=10_000)
    try:
        tp = TopicPartition(TOPIC, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = next(iter(consumer))
    finally:
        consumer.close()
    return record.value


def test_kafka_round_trip_and_restart_keeps_port_topic_and_records(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("kafka")
    kafka = Kafka(data_dir)
    try:
        kafka.start()
        kafka.start()  # already running: a no-op
        assert kafka.is_running()
        kafka.create_topic(TOPIC, partitions=3)
        kafka.create_topic(TOPIC, partitions=3)  # already exists: a no-op
        assert _partition_count(kafka, TOPIC) == 3

        # The ingest function's producer settings: every in-sync replica acknowledges, idempotent.
        producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True
        )
        value = uuid.uuid4().bytes
        sent = producer.send(TOPIC, key=b"workspace-1", value=value).get(timeout=30)
        producer.close()
        assert _read_one(kafka, sent.partition, sent.offset) == value

        kafka.stop()
        assert not kafka.is_running()
        kafka.stop()  # already stopped: a no-op

        ports = (kafka.port, kafka.controller_port)
        kafka = Kafka(data_dir)  # no port given: the saved ones are reused
        assert (kafka.port, kafka.controller_port) == ports
        kafka.start()
        assert _partition_count(kafka, TOPIC) == 3
        assert _read_one(kafka, sent.partition, sent.offset) == value
    finally:
        kafka.stop()


def test_postgres_accepts_the_dsn_and_keeps_data_across_restart(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("postgres")
    pg = Postgres(data_dir, fast=True)
    try:
        pg.start()
        pg.start()  # already running: a no-op
        assert pg.dsn == f"postgresql://punk:punk@127.0.0.1:{pg.port}/punk_records"
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")

        pg.stop()
        assert not pg.is_running()
        pg.stop()  # already stopped: a no-op

        port = pg.port
        pg = Postgres(data_dir, fast=True)  # no port given: the saved one is reused
        assert pg.port == port
        pg.start()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
    finally:
        pg.stop()


def test_start_on_a_busy_port_says_which_port(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        pg = Postgres(tmp_path, port=busy)
        with pytest.raises(ServiceError, match=f"port {busy} already in use"):
            pg.start()
    assert not pg.is_running()
