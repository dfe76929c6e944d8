"""Every rule of the envelope contract, valid and invalid, plus the Kafka encoding."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from punk_records.envelope import (
    MAX_PAYLOAD_DEPTH,
    Envelope,
    EventType,
    decode,
    parse_batch,
    parse_event,
    plain_json,
)
from punk_records.errors import InvalidEnvelope
from tests.factories import event_dict

ALL_TYPES = [t.value for t in EventType]


def nested(depth: int) -> dict:
    """A payload whose objects are nested ``depth`` levels deep (the payload is level 1)."""
    payload: dict = {"leaf": 1}
    for _ in range(depth - 1):
        payload = {"child": payload}
    return payload


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        pytest.param({}, lambda e: e.workspace_id == "ws-alpha", id="minimal-valid"),
        *[pytest.param({"type": t}, lambda e, t=t: e.type == t, id=f"type-{t}") for t in ALL_TYPES],
        *[
            pytest.param({"severity": s}, lambda e, s=s: e.severity == s, id=f"severity-{s}")
            for s in ("low", "medium", "high")
        ],
        pytest.param({"confidence": 0}, lambda e: e.confidence == 0.0, id="confidence-zero-int"),
        pytest.param({"confidence": 1}, lambda e: e.confidence == 1.0, id="confidence-one-int"),
        pytest.param({"confidence": 1.0}, lambda e: e.confidence == 1.0, id="confidence-one"),
        pytest.param(
            {"ts": "2026-11-26T06:00:00+02:00"},
            lambda e: e.ts == datetime(2026, 11, 26, 4, 0, tzinfo=UTC),
            id="ts-offset-normalised-to-utc",
        ),
        pytest.param(
            {"ts": "2026-11-26T06:00:00"},
            lambda e: e.ts == datetime(2026, 11, 26, 6, 0, tzinfo=UTC),
            id="ts-naive-taken-as-utc",
        ),
        pytest.param(
            {"ts": "2026-11-26T06:00:00.123456Z"},
            lambda e: e.ts.microsecond == 123456,
            id="ts-zulu-fraction",
        ),
        pytest.param(
            {"workspace_id": "  ws-trim  "}, lambda e: e.workspace_id == "ws-trim", id="trimmed"
        ),
        pytest.param(
            {"workspace_id": "w" * 128}, lambda e: len(e.workspace_id) == 128, id="id-128-chars"
        ),
        pytest.param({"payload": {}}, lambda e: e.payload == {}, id="empty-payload"),
        pytest.param(
            {"payload": {"a": [1, {"b": None}]}},
            lambda e: e.payload == {"a": [1, {"b": None}]},
            id="nested-payload",
        ),
    ],
)
def test_given_valid_event_when_parsed_then_normalised(overrides, check):
    # GIVEN a valid event WHEN it is parsed THEN the model holds the normalised values
    assert check(parse_event(event_dict(**overrides)))


def test_given_no_payload_when_parsed_then_defaults_to_empty_object():
    data = event_dict()
    del data["payload"]
    assert parse_event(data).payload == {}


@pytest.mark.parametrize(
    ("overrides", "loc", "error_type"),
    [
        ({"extra": 1}, ["extra"], "extra_forbidden"),
        ({"event_id": "not-a-uuid"}, ["event_id"], "uuid_parsing"),
        ({"event_id": None}, ["event_id"], "uuid_type"),
        ({"trace_id": "123"}, ["trace_id"], "uuid_parsing"),
        ({"schema_version": 2}, ["schema_version"], "value_error"),
        ({"schema_version": "1"}, ["schema_version"], "int_type"),
        ({"schema_version": True}, ["schema_version"], "int_type"),
        ({"ts": "yesterday"}, ["ts"], "datetime_from_date_parsing"),
        ({"ts": 1764136800}, ["ts"], "value_error"),
        ({"ts": "0001-01-01T00:00:00+14:00"}, ["ts"], "datetime_out_of_range"),
        ({"ts": "9999-12-31T23:59:59-14:00"}, ["ts"], "datetime_out_of_range"),
        ({"workspace_id": "   "}, ["workspace_id"], "string_too_short"),
        ({"workspace_id": ""}, ["workspace_id"], "string_too_short"),
        ({"workspace_id": "w" * 129}, ["workspace_id"], "string_too_long"),
        ({"satellite_id": 7}, ["satellite_id"], "string_type"),
        ({"type": "task.deleted"}, ["type"], "enum"),
        ({"type": "Task.Created"}, ["type"], "enum"),
        ({"severity": "critical"}, ["severity"], "enum"),
        ({"confidence": 1.01}, ["confidence"], "less_than_equal"),
        ({"confidence": -0.1}, ["confidence"], "greater_than_equal"),
        ({"confidence": float("nan")}, ["confidence"], "finite_number"),
        ({"confidence": float("inf")}, ["confidence"], "finite_number"),
        ({"confidence": "0.5"}, ["confidence"], "float_type"),
        ({"confidence": True}, ["confidence"], "float_type"),
        ({"payload": [1, 2]}, ["payload"], "dict_type"),
        ({"payload": "text"}, ["payload"], "dict_type"),
        ({"payload": {"n": float("nan")}}, ["payload"], "finite_number"),
        ({"payload": {"n": [float("-inf")]}}, ["payload"], "finite_number"),
        ({"payload": {"text": "a\x00b"}}, ["payload"], "unstorable"),
        ({"payload": {"key\x00": 1}}, ["payload"], "unstorable"),
        ({"payload": {"text": "\ud800"}}, ["payload"], "unstorable"),
        ({"payload": nested(MAX_PAYLOAD_DEPTH + 1)}, ["payload"], "too_deep"),
        ({"workspace_id": "ws\x00"}, ["workspace_id"], "unstorable"),
        ({"satellite_id": "sat-\udfff"}, ["satellite_id"], "unstorable"),
    ],
)
def test_given_invalid_field_when_parsed_then_error_names_location(overrides, loc, error_type):
    # GIVEN an event breaking one rule WHEN parsed THEN one error points at the field
    with pytest.raises(InvalidEnvelope) as caught:
        parse_event(event_dict(**overrides))
    locs = [(err["loc"], err["type"]) for err in caught.value.errors]
    assert any(err_loc[: len(loc)] == loc for err_loc, _ in locs), locs
    assert any(t.startswith(error_type) for _, t in locs), locs
    for err in caught.value.errors:
        assert set(err) == {"loc", "msg", "type"}


def test_given_missing_fields_when_parsed_then_every_one_is_listed():
    with pytest.raises(InvalidEnvelope) as caught:
        parse_event({})
    missing = {err["loc"][0] for err in caught.value.errors if err["type"] == "missing"}
    assert missing == {
        "event_id", "schema_version", "ts", "workspace_id", "satellite_id",
        "trace_id", "type", "severity", "confidence",
    }  # fmt: skip


def test_given_unsupported_version_when_parsed_then_message_names_supported_versions():
    with pytest.raises(InvalidEnvelope) as caught:
        parse_event(event_dict(schema_version=3))
    assert "supported: 1" in caught.value.errors[0]["msg"]


def test_given_secret_in_invalid_field_when_rejected_then_error_does_not_echo_it():
    secret = "ghp_" + "a" * 36
    with pytest.raises(InvalidEnvelope) as caught:
        parse_event(event_dict(severity=secret, extra=secret))
    assert secret not in json.dumps(caught.value.errors)


# Credentials in identifiers: stored verbatim (Kafka key, indexed columns), so refused.
CREDENTIAL_IDS = [
    pytest.param("ghp_" + "R7vT2pX8wN5bY4cH6jD1" + "fG0sA2eU9k3Lm9Qz", "github_token", id="github"),
    pytest.param("AKIA" + "Q4MZ7RT2XW5NB8KD", "aws_access_key_id", id="aws-key-id"),
    pytest.param("xoxb-" + "2841-9917-" + "Kq8vLm3TnR7wXp2Kc9Hd", "slack_token", id="slack"),
    pytest.param("sk-ant-api03-" + "Zq8vLm3TnR7wXp2Kc9Hd4Fg", "anthropic_api_key", id="anthropic"),
]


@pytest.mark.parametrize("field", ["workspace_id", "satellite_id"])
@pytest.mark.parametrize(("value", "family"), CREDENTIAL_IDS)
def test_given_credential_as_identifier_when_parsed_then_refused_without_echo(
    field: str, value: str, family: str
):
    # GIVEN an envelope whose identifier is a credential
    data = event_dict(**{field: value})
    # WHEN it is validated, as ingest does with JSON and the consumer with Kafka bytes
    for validate in (lambda: parse_event(data), lambda: decode(json.dumps(data).encode())):
        with pytest.raises(InvalidEnvelope) as caught:
            validate()
        # THEN the field is named with the family, and the value is not echoed
        (error,) = caught.value.errors
        assert error["loc"] == [field]
        assert error["type"] == "credential"
        assert family in error["msg"]
        assert value not in json.dumps(caught.value.errors)


@pytest.mark.parametrize(
    "value",
    ["ws-42", "sat-scout-1", "acme/prod", "6f1c1c4e-8d3b-4f6e-9a39-0c5f2b7e8d11", "team.payments"],
)
def test_given_ordinary_identifier_when_parsed_then_accepted(value: str):
    assert parse_event(event_dict(workspace_id=value, satellite_id=value)).workspace_id == value


def test_given_batch_with_bad_items_when_parsed_then_errors_carry_item_index():
    # GIVEN a batch whose items 1 and 3 are invalid
    batch = [event_dict(), event_dict(type="nope"), event_dict(), event_dict(confidence=2)]
    # WHEN parsed as a whole THEN nothing is returned and both items are named by index
    with pytest.raises(InvalidEnvelope) as caught:
        parse_batch(batch)
    assert [err["loc"][:2] for err in caught.value.errors] == [[1, "type"], [3, "confidence"]]


def test_given_valid_batch_when_parsed_then_order_kept():
    batch = [event_dict() for _ in range(5)]
    parsed = parse_batch(batch)
    assert [str(e.event_id) for e in parsed] == [item["event_id"] for item in batch]


def test_given_envelope_when_encoded_then_compact_canonical_json_that_decodes_back():
    original = parse_event(event_dict(payload={"ünïcode": "✓", "n": 1}))
    value = original.kafka_value()
    assert b" " not in value.replace("✓".encode(), b"")  # compact
    assert json.loads(value)["ts"] == "2026-11-26T04:00:00Z"
    assert list(json.loads(value)) == list(Envelope.model_fields)
    assert decode(value) == original
    assert decode(value).kafka_value() == value  # canonical: stable through a round trip


def test_given_envelope_then_key_and_headers_follow_the_design():
    env = parse_event(event_dict(workspace_id="ws-ü"))
    assert env.kafka_key() == "ws-ü".encode()
    headers = dict(env.kafka_headers())
    assert headers == {
        "event_id": str(env.event_id).encode(),
        "trace_id": str(env.trace_id).encode(),
        "type": b"finding.logged",
        "schema_version": b"1",
        "content-type": b"application/json",
    }


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"\xff\xfe not utf-8", "json_invalid"),
        (b"{not json", "json_invalid"),
        (b"[1, 2]", "model_type"),
        (b"null", "model_type"),
        (json.dumps(event_dict(type="bad")).encode(), "enum"),
        (json.dumps(event_dict(confidence=0.5)).replace("0.5", "NaN").encode(), "finite_number"),
        (
            json.dumps(event_dict(payload={"n": 0.25})).replace("0.25", "Infinity").encode(),
            "finite_number",
        ),
        (json.dumps(event_dict(payload={"t": "a\x00"})).encode(), "unstorable"),
        (json.dumps(event_dict(payload={"t": "\ud800"})).encode(), "json_invalid"),
        (json.dumps(event_dict(payload=nested(MAX_PAYLOAD_DEPTH + 1))).encode(), "too_deep"),
    ],
)
def test_given_poison_bytes_when_decoded_then_invalid_envelope(raw, error_type):
    with pytest.raises(InvalidEnvelope) as caught:
        decode(raw)
    assert caught.value.errors[0]["type"] == error_type


def test_given_payload_at_depth_limit_when_parsed_or_decoded_then_accepted():
    data = event_dict(payload=nested(MAX_PAYLOAD_DEPTH))
    assert parse_event(data).payload == decode(json.dumps(data).encode()).payload


def test_given_secret_in_payload_when_redacted_then_copy_is_clean_and_idempotent():
    token = "ghp_" + "R7vT2pX8wN5bY4cH6jD1" + "fG0sA2eU9k3Lm9Qz"
    env = parse_event(event_dict(payload={"note": f"use {token}", "password": "hunter2"}))
    clean = env.redacted()
    assert token not in clean.kafka_value().decode()
    assert "hunter2" not in clean.kafka_value().decode()
    assert clean.redacted() == clean
    assert env.payload["password"] == "hunter2"  # the original is not mutated


def test_given_clean_payload_when_redacted_then_same_object():
    env = parse_event(event_dict())
    assert env.redacted() is env


def test_given_uuid_objects_when_parsed_then_accepted():
    env = parse_event(event_dict(event_id=uuid.uuid4(), trace_id=uuid.uuid4()))
    assert isinstance(env.event_id, uuid.UUID)


def _deep_text(depth: int, before: str = "") -> str:
    return json.dumps({"note": before, "payload": nested(depth)})


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        pytest.param(json.dumps([event_dict(), event_dict()]), True, id="plain-batch"),
        pytest.param(_deep_text(MAX_PAYLOAD_DEPTH - 1), True, id="64-levels-counting-the-envelope"),
        pytest.param(_deep_text(MAX_PAYLOAD_DEPTH), False, id="65-levels-counting-the-envelope"),
        # Closing brackets inside a string must not hide the nesting that follows.
        pytest.param(_deep_text(MAX_PAYLOAD_DEPTH, "]}" * 40), False, id="brackets-in-string"),
        pytest.param(_deep_text(3, '\\" ]]]] {{ \\'), True, id="escaped-quotes-in-string"),
        pytest.param('{"a": "x\\u0000y"}', False, id="nul-escape"),
        pytest.param('{"a": "\\ud800"}', False, id="lone-surrogate-escape"),
        pytest.param('{"a": "\\uDFFF"}', False, id="upper-case-surrogate-escape"),
        pytest.param('{"\\u0000": 1}', False, id="nul-in-a-key"),
        pytest.param('{"a": "\\u00e9"}', True, id="harmless-escape"),
        pytest.param("42", True, id="not-a-container"),
    ],
)
def test_given_json_text_when_checked_then_plain_only_if_no_payload_walk_can_fail(text, plain):
    assert plain_json(text, json.loads(text)) is plain
    # A plain verdict must never skip an error the walk would have reported.
    if plain:
        document = json.loads(text)
        items = document if isinstance(document, list) else [document]
        for item in (i for i in items if isinstance(i, dict)):
            payload = item.get("payload", {})
            data = {**event_dict(), "payload": payload}
            assert parse_event(data, plain_json=True) == parse_event(data)
