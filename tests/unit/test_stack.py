"""The local stack's files and settings, without starting anything."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from local.esm import mapping_settings
from local.stack import Stack, sample_event, summary
from local.template import TEMPLATE, TemplateError, load_template
from punk_records import parse_event
from punk_records.tokens import parse_api_tokens


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    stack = Stack(tmp_path / "state")
    stack.ensure_state(api_port=0)
    return stack


def test_given_the_template_when_read_then_the_mapping_uses_its_parameter_defaults() -> None:
    parameters = load_template(TEMPLATE)["Parameters"]

    settings = mapping_settings()

    assert settings.group_id == parameters["ConsumerGroupId"]["Default"]
    assert settings.batch_size == int(parameters["ConsumerBatchSize"]["Default"])
    assert settings.window_ms == int(parameters["ConsumerBatchingWindowSeconds"]["Default"]) * 1000
    assert settings.starting_position == "TRIM_HORIZON"


def test_given_a_mapping_without_batching_settings_when_read_then_lambdas_defaults_apply(
    tmp_path: Path,
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Mapping:\n"
        "    Type: AWS::Lambda::EventSourceMapping\n"
        "    Properties:\n"
        "      SelfManagedEventSource: {Endpoints: {KafkaBootstrapServers: [b:9092]}}\n"
        "      StartingPosition: LATEST\n"
    )

    settings = mapping_settings(template)

    assert (settings.batch_size, settings.window_ms) == (100, 500)
    assert settings.starting_position == "LATEST"


def test_given_a_template_without_a_kafka_mapping_when_read_then_stack_error(
    tmp_path: Path,
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")

    with pytest.raises(TemplateError, match="no self-managed Kafka event source mapping"):
        mapping_settings(template)


def test_given_a_second_up_when_state_is_read_then_token_and_port_are_kept(stack: Stack) -> None:
    token, port = stack.token(), stack.api_port()

    again = Stack(stack.root)
    again.ensure_state(api_port=None)

    assert (again.token(), again.api_port()) == (token, port)
    assert len(token) >= 32
    assert stat.S_IMODE(stack.state_file.stat().st_mode) == 0o600


def test_given_stack_env_when_sourced_by_a_shell_then_every_variable_is_set(stack: Stack) -> None:
    stack.write_files()

    script = f"set -a; . {shlex.quote(str(stack.env_file))}; set +a; env"
    output = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)

    variables = dict(line.split("=", 1) for line in output.stdout.splitlines() if "=" in line)
    assert {k: v for k, v in variables.items() if k.startswith("PUNK_")} == stack.environment()
    assert stat.S_IMODE(stack.env_file.stat().st_mode) == 0o600


def test_given_the_functions_env_when_written_then_it_is_in_the_sam_env_vars_format(
    stack: Stack,
) -> None:
    stack.write_files()

    data = json.loads(stack.functions_env.read_text())

    assert data["Parameters"]["DATABASE_URL"] == stack.postgres.dsn
    assert data["Parameters"]["KAFKA_BOOTSTRAP_SERVERS"] == stack.kafka.bootstrap
    # THEN both functions get the token set: the local token's hash, never the token
    for function in ("IngestFunction", "QueryFunction"):
        tokens = parse_api_tokens(data[function]["API_TOKENS"])
        token = tokens.match(stack.token())
        assert token is not None
        assert token.all_workspaces
        assert {"events:write", "events:read"} <= {s.value for s in token.scopes}
        assert stack.token() not in data[function]["API_TOKENS"]
    # AND the query function logs in as its own SELECT-only role, with a signing key
    query = data["QueryFunction"]
    assert conninfo_to_dict(query["DATABASE_URL"])["user"] == "punk_query"
    assert len(query["CURSOR_KEY"]) >= 32
    assert stat.S_IMODE(stack.functions_env.stat().st_mode) == 0o600


def test_given_the_summary_when_printed_then_its_curl_sends_a_valid_envelope(
    stack: Stack,
) -> None:
    text = summary(stack)

    body = re.search(r"-d '(\{.*\})'", text)
    assert body is not None
    parse_event(json.loads(body.group(1)))
    assert f"Authorization: Bearer {stack.token()}" in text
    assert f"{stack.api_url}/events" in text
    assert stack.postgres.dsn in text
    # AND a curl reads the sample's workspace back
    read = re.search(r"curl -sS '([^']*/events\?[^']*)'", text)
    assert read is not None
    assert "workspace_id=ws-demo" in read.group(1)


def test_given_two_samples_when_generated_then_each_is_a_new_valid_event() -> None:
    first, second = sample_event(), sample_event()

    assert parse_event(first).event_id != parse_event(second).event_id
