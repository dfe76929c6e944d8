"""The migrations custom resource under the Lambda runtime: it migrates real PostgreSQL and
reports every outcome to a CloudFormation-style ResponseURL (a local HTTP server here)."""

from __future__ import annotations

import json
import threading
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
