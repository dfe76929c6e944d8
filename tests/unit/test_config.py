"""Settings: defaults, environment names, and errors that name the variable."""

from __future__ import annotations

import pytest

from punk_records.config import DEFAULT_TOPIC, Settings
from punk_records.errors import ConfigurationError


def test_given_empty_environment_then_documented_defaults():
    settings = Settings.from_env({})
    assert settings.kafka_topic == DEFAULT_TOPIC == "punk-records.events.v1"
    assert settings.kafka_auth_mode == "none"
    assert settings.max_payload_bytes == 256 * 1024
    assert settings.max_batch_events == 500
    assert settings.kafka_produce_timeout_ms == 10_000


def test_given_variables_then_read_by_upper_case_field_name():
    settings = Settings.from_env(
        {"KAFKA_TOPIC": "t1", "MAX_BATCH_EVENTS": "20", "KAFKA_TLS": "true", "OTHER": "x"}
    )
    assert (settings.kafka_topic, settings.max_batch_events, settings.kafka_tls) == ("t1", 20, True)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAX_BATCH_EVENTS": "lots"}, "MAX_BATCH_EVENTS"),
        ({"MAX_BATCH_EVENTS": "0"}, "MAX_BATCH_EVENTS"),
        ({"KAFKA_AUTH_MODE": "kerberos"}, "KAFKA_AUTH_MODE"),
        ({"KAFKA_PRODUCE_TIMEOUT_MS": "999999"}, "KAFKA_PRODUCE_TIMEOUT_MS"),
    ],
)
def test_given_invalid_value_then_error_names_the_variable(env, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(env)


def test_given_required_setting_missing_then_error_names_the_variable():
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({}).require("kafka_bootstrap_servers")


def test_given_invalid_secret_like_value_then_it_is_not_echoed():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"KAFKA_PRODUCE_TIMEOUT_MS": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(caught.value)


def test_the_local_stack_creates_its_topic_for_the_functions_default_record_limit() -> None:
    from local.stack import DEFAULT_MAX_RECORD_BYTES
    from punk_records.config import Settings

    assert Settings().max_record_bytes == DEFAULT_MAX_RECORD_BYTES
