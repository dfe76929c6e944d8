"""The database connection string built from the RDS-style secret: TLS verification by default,
``require`` only when the secret asks for it, the RDS Proxy endpoint in place of the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from punk_records import store
from punk_records.config import Settings
from punk_records.errors import ConfigurationError

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:punk-records/db-AbCdEf"
SECRET = {"host": "db.internal", "port": 5432, "username": "u", "password": "p", "dbname": "d"}


@pytest.fixture
def bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "rds-ca-bundle.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    monkeypatch.setattr(store, "RDS_CA_BUNDLE", path)
    return path


def conninfo(monkeypatch: pytest.MonkeyPatch, secret: dict[str, Any], **settings: str) -> dict:
    monkeypatch.setattr(store, "read_json_secret", lambda arn: secret if arn == ARN else {})
    return conninfo_to_dict(store.database_conninfo(Settings(database_secret_arn=ARN, **settings)))


def test_given_a_secret_without_sslmode_then_the_server_is_verified_against_the_rds_cas(
    monkeypatch, bundle
):
    params = conninfo(monkeypatch, SECRET)
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == str(bundle)


def test_given_sslmode_require_in_the_secret_then_it_is_the_explicit_opt_out(monkeypatch, bundle):
    params = conninfo(monkeypatch, {**SECRET, "sslmode": "require"})
    assert params["sslmode"] == "require"
    assert "sslrootcert" not in params


def test_given_the_secrets_own_root_certificate_then_it_wins_over_the_bundle(monkeypatch, bundle):
    params = conninfo(monkeypatch, {**SECRET, "sslmode": "verify-ca", "sslrootcert": "/x.pem"})
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-ca", "/x.pem")


def test_given_a_layer_without_the_bundle_then_the_error_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.setattr(store, "RDS_CA_BUNDLE", tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="make build") as caught:
        conninfo(monkeypatch, SECRET)
    assert '"sslmode": "require"' in str(caught.value)


def test_given_a_proxy_endpoint_then_it_replaces_the_secrets_host_only(monkeypatch, bundle):
    params = conninfo(monkeypatch, SECRET, database_proxy_endpoint="proxy.example")
    assert params["host"] == "proxy.example"
    assert (params["user"], params["dbname"], params["port"]) == ("u", "d", "5432")


def test_given_bootstrap_servers_with_spaces_then_they_are_trimmed() -> None:
    settings = Settings(kafka_bootstrap_servers=" b-1:9092 , b-2:9092,, ")
    assert settings.kafka_bootstrap_servers == "b-1:9092,b-2:9092"
