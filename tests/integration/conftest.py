"""Session fixtures: the real Kafka broker and PostgreSQL server, started once per run.

A service that cannot start fails the run with the reason; integration tests never skip.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from local.kafka_service import Kafka
from local.postgres_service import Postgres
from local.processes import interrupt
from local.stack import Stack
from punk_records import migrations
from punk_records.read_store import grant_reader_login
from tests.integration.stack_util import running_stack


@pytest.fixture(scope="session", autouse=True)
def _teardown_on_sigterm() -> Iterator[None]:
    """A run stopped with SIGTERM (a CI timeout, ``kill``) still stops Kafka and PostgreSQL:
    pytest tears fixtures down on KeyboardInterrupt, not on a plain SIGTERM."""
    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def services_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="punk-records-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka(services_root: Path) -> Iterator[Kafka]:
    broker = Kafka(services_root / "kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres(services_root: Path) -> Iterator[Postgres]:
    server = Postgres(services_root / "postgres", fast=True)
    server.start()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        migrations.apply(conn)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reader_dsn(postgres: Postgres) -> str:
    """A login of the query function's read-only role, as the migration sets it up in AWS."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        grant_reader_login(conn, "punk_query_api_test", "reader-pw")
    return make_conninfo(postgres.dsn, user="punk_query_api_test", password="reader-pw")


@pytest.fixture
def topic(kafka: Kafka) -> str:
    """A fresh three-partition topic for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    kafka.create_topic(name, partitions=3)
    return name


@pytest.fixture
def db(postgres: Postgres) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a database whose tables start empty."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, dead_letters, memory_entries, memory_history")
        yield conn


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    """The whole local stack (``make up``), shared by the fault, limit and fuzzing tests; each
    fault test heals what it broke."""
    with running_stack("punk-records-stack-") as running:
        yield running
