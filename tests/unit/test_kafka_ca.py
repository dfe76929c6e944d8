"""The private root CA of self-managed brokers reaches kafka-python as a file (ssl_cafile)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from punk_records import kafka_ca
from punk_records.config import Settings
from punk_records.errors import ConfigurationError
from punk_records.producer import security_options

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        parameters.clear_caches()
        kafka_ca.ca_file.cache_clear()
        yield boto3.client("secretsmanager", region_name="us-east-1")
        parameters.clear_caches()
        kafka_ca.ca_file.cache_clear()


def test_given_a_root_ca_secret_then_the_producer_trusts_that_pem(secrets) -> None:
    arn = secrets.create_secret(Name="kafka-ca", SecretString=json.dumps({"certificate": PEM}))[
        "ARN"
    ]
    options = security_options(Settings(kafka_tls=True, kafka_ssl_ca_secret_arn=arn))
    assert options["security_protocol"] == "SSL"
    assert Path(options["ssl_cafile"]).read_text(encoding="ascii") == PEM


def test_given_no_root_ca_secret_then_the_default_trust_store_is_used() -> None:
    assert "ssl_cafile" not in security_options(Settings(kafka_tls=True))


def test_given_a_secret_without_a_certificate_then_the_error_names_the_field(secrets) -> None:
    arn = secrets.create_secret(Name="kafka-ca", SecretString=json.dumps({"pem": PEM}))["ARN"]
    with pytest.raises(ConfigurationError, match='"certificate"'):
        security_options(Settings(kafka_tls=True, kafka_ssl_ca_secret_arn=arn))
