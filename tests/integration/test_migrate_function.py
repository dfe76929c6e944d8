"""The migrations custom resource under the Lambda runtime: it migrates real PostgreSQL and
reports every outcome to a CloudFormation-style ResponseURL (a local HTTP server here)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from local.emulator import LambdaFunction
from local.postgres_service import Postgres
from punk_records import migrations
from punk_records.errors import StoreUnavailable

UNREACHABLE_DSN = "postgresql://punk:s3cret-pw@127.0.0.1:1/punk_records?connect_timeout=1"


class CloudFormation:
    """Receives the custom resource responses: PUT <ResponseURL> with a JSON body."""

    def __init__(self) -> None:
        self.responses: list[dict[str, Any]] = []
        self.content_types: list[str | None] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                received.responses.append(json.loads(self.rfile.read(length)))
                received.content_types.append(self.headers.get("Content-Type"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/response?X-Amz-Signature=x"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def cloudformation() -> Iterator[CloudFormation]:
    server = CloudFormation()
    yield server
    server.close()


@pytest.fixture
def empty_database(postgres: Postgres) -> Iterator[str]:
    """A database of its own with no table yet; its connection string."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(postgres.dsn, dbname=name)
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def request(kind: str, url: str, physical_id: str | None = None) -> dict[str, Any]:
    event = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/punk-records-dev/1",
        "RequestId": str(uuid.uuid4()),
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "Migrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", "LayerVersion": "1"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def test_given_an_empty_database_when_created_then_migrations_are_applied_and_success_reported(
    cloudformation: CloudFormation, empty_database: str
) -> None:
    create = request("Create", cloudformation.url)
    with LambdaFunction("MigrateFunction", env_overrides={"DATABASE_URL": empty_database}) as fn:
        fn.invoke(create)

        [response] = cloudformation.responses
        assert response["Status"] == "SUCCESS"
        assert response["RequestId"] == create["RequestId"]
        assert response["StackId"] == create["StackId"]
        assert response["LogicalResourceId"] == "Migrations"
        names = [name for _, name, _ in migrations.available()]
        assert response["Data"] == {"Applied": ",".join(names)}
        assert cloudformation.content_types == [""]
        with psycopg.connect(empty_database) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
                len(names),
            )

        # A stack update runs it again: nothing to do, same physical id kept.
        fn.invoke(request("Update", cloudformation.url, response["PhysicalResourceId"]))

    update = cloudformation.responses[1]
    assert update["Status"] == "SUCCESS"
    assert update["Data"] == {"Applied": "none"}
    assert update["PhysicalResourceId"] == response["PhysicalResourceId"]


def test_given_an_unreachable_database_when_created_then_failure_is_reported_without_secrets(
    cloudformation: CloudFormation,
) -> None:
    with LambdaFunction("MigrateFunction", env_overrides={"DATABASE_URL": UNREACHABLE_DSN}) as fn:
        result = fn.invoke(request("Create", cloudformation.url))

    assert result is None
    [response] = cloudformation.responses
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("StoreUnavailable: cannot connect to PostgreSQL")
    assert "s3cret-pw" not in json.dumps(response)


def test_given_a_stack_deletion_when_deleted_then_success_is_reported_without_touching_the_db(
    cloudformation: CloudFormation,
) -> None:
    with LambdaFunction("MigrateFunction", env_overrides={"DATABASE_URL": UNREACHABLE_DSN}) as fn:
        fn.invoke(request("Delete", cloudformation.url, "punk-records-migrations"))

    [response] = cloudformation.responses
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "punk-records-migrations"


def test_given_the_migrations_lock_held_elsewhere_when_created_then_failed_is_reported_in_time(
    cloudformation: CloudFormation, empty_database: str
) -> None:
    # GIVEN another session (a developer's `make migrate`, a second stack) holding the lock
    # the migrations take, and a migrate function allowed 20 s in all
    timeout_s = 20
    with psycopg.connect(empty_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (migrations._LOCK_KEY,))
        with LambdaFunction(
            "MigrateFunction",
            env_overrides={"DATABASE_URL": empty_database},
            parameter_overrides={"MigrationsTimeout": str(timeout_s)},
        ) as fn:
            # WHEN CloudFormation creates the resource
            started = time.monotonic()
            fn.invoke(request("Create", cloudformation.url))
            elapsed = time.monotonic() - started

    # THEN the function stopped waiting and answered FAILED, with the reason, before its own
    # timeout (and so long before CloudFormation's)
    [response] = cloudformation.responses
    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("StoreUnavailable: schema_migrations: gave up waiting")
    assert "lock_timeout" in response["Reason"]
    assert elapsed < timeout_s
    # AND nothing was applied
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_given_a_table_lock_held_elsewhere_when_a_migration_waits_then_its_wait_is_bounded(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a database where the first migration is applied, and a second migration that must
    # lock a table another session holds
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrations.apply(conn)
    holder = psycopg.connect(empty_database)
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    shipped = migrations.available()
    extra = (9999, "9999_add_column.sql", "ALTER TABLE events ADD COLUMN note text")
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, extra])
    try:
        with psycopg.connect(empty_database, autocommit=True) as conn:
            # WHEN the migrations run with 1.5 s left
            deadline = time.monotonic() + 1.5
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                migrations.apply(conn, lambda: int((deadline - time.monotonic()) * 1000))
            elapsed = time.monotonic() - started
    finally:
        holder.close()
    # THEN the wait ends within that budget, naming the migration that waited
    assert str(caught.value).startswith("9999_add_column.sql: gave up waiting for a lock")
    assert elapsed < 2.5


def test_given_a_migration_slower_than_the_time_left_then_it_is_cancelled_in_time(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a migration that would run for 30 s, and 1.5 s left
    shipped = migrations.available()
    slow = (9999, "9999_backfill.sql", "SELECT pg_sleep(30)")
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, slow])
    deadline = time.monotonic() + 1.5
    with psycopg.connect(empty_database, autocommit=True) as conn:
        # WHEN the migrations run
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            migrations.apply(conn, lambda: int((deadline - time.monotonic()) * 1000))
        elapsed = time.monotonic() - started
        # THEN the slow one is cancelled within the budget; the ones before it stay applied
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            shipped[-1][0],
        )
    assert str(caught.value).startswith("9999_backfill.sql: stopped by statement_timeout")
    assert elapsed < 2.5
