"""The acceptance rule: limits hold on the redacted, canonical bytes that go to Kafka."""

from __future__ import annotations

import json

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from punk_records.acceptance import Limits, accept, accept_all, record_size
from punk_records.envelope import decode
from punk_records.errors import InvalidEnvelope, RecordTooLarge
from tests.factories import envelope

LIMITS = Limits(max_payload_bytes=1_024, max_record_bytes=2_048)


def test_given_an_event_when_accepted_then_the_record_is_the_canonical_redacted_envelope() -> None:
    env = envelope(payload={"password": "hunter2", "n": 1e15})

    record = accept(env)

    assert record.envelope == env.redacted()
    assert record.value == env.redacted().kafka_value()
    assert record.key == b"ws-alpha"
    assert json.loads(record.payload_json) == {"password": "[REDACTED:password]", "n": 1e15}
    assert decode(record.value).payload == record.envelope.payload


def test_given_a_payload_key_inside_the_payload_then_payload_json_is_still_the_whole_payload():
    env = envelope(payload={"a": {"payload": 1}, "payload": [',"payload":']})

    record = accept(env)

    assert json.loads(record.payload_json) == env.payload


@pytest.mark.parametrize(
    ("key", "value", "headers"),
    [
        (b"ws", b"{}", []),
        (None, None, []),
        (b"k" * 200, b"v" * 70_000, [("event_id", b"x" * 36), ("content-type", b"json")]),
        (b"", b"v" * 2_000_000, [("h" * 130, b"")]),
    ],
)
def test_record_size_is_kafka_pythons_estimate(key, value, headers) -> None:
    expected = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)

    assert record_size(key, value, headers) == expected


def test_given_numbers_in_exponent_form_then_the_payload_limit_holds_on_their_canonical_form():
    # 1e15 is 4 bytes as sent and 18 as serialised: 100 of them fit as sent, not as stored.
    env = envelope(payload={"n": [1e15] * 60})

    with pytest.raises(InvalidEnvelope) as caught:
        accept(env, LIMITS)

    (error,) = caught.value.errors
    assert error["loc"] == ["payload"]
    assert error["type"] == "too_large"
    assert "(MAX_PAYLOAD_BYTES)" in error["msg"]


def test_given_secrets_that_grow_when_redacted_then_the_limit_holds_after_redaction():
    # 20-character AWS key ids become longer markers: under the limit as sent, over as stored.
    key_id = "AKIA" + "ABCDEFGHIJKLMNOP"
    env = envelope(payload={"ids": [key_id] * 40})
    assert len(json.dumps(env.payload, separators=(",", ":"))) <= LIMITS.max_payload_bytes

    with pytest.raises(InvalidEnvelope):
        accept(env, LIMITS)


def test_given_a_record_over_the_limit_then_record_too_large_names_size_and_limit():
    env = envelope(workspace_id="w" * 128, payload={"blob": "x" * 1_000})

    with pytest.raises(RecordTooLarge) as caught:
        accept(env, Limits(max_payload_bytes=1_024, max_record_bytes=1_024))

    assert caught.value.limit == 1_024
    assert caught.value.size == accept(env).size
    assert "the limit is 1024 (MAX_RECORD_BYTES)" in str(caught.value)


def test_given_a_batch_then_record_too_large_names_every_item() -> None:
    small, big = envelope(), envelope(payload={"blob": "x" * 1_000})

    with pytest.raises(RecordTooLarge) as caught:
        accept_all([small, big, small, big], Limits(1_024, 1_100))

    assert caught.value.indexes == [1, 3]
    assert "(items 1, 3)" in str(caught.value)


def test_given_a_batch_with_invalid_and_oversized_items_then_one_400_lists_both() -> None:
    big = envelope(payload={"blob": "x" * 1_000})
    too_big_payload = envelope(payload={"blob": "x" * 2_000})

    with pytest.raises(InvalidEnvelope) as caught:
        accept_all([big, too_big_payload], Limits(1_024, 1_100))

    assert not isinstance(caught.value, RecordTooLarge)
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [
        ([1, "payload"], "too_large"),
        ([0], "record_too_large"),
    ]


def test_given_an_event_at_exactly_the_limits_then_it_is_accepted() -> None:
    env = envelope(payload={"blob": ""})
    base = len(accept(env).payload_json)
    at_limit = envelope(payload={"blob": "x" * (1_024 - base)})
    record = accept(at_limit, Limits(1_024, 100_000))
    assert len(record.payload_json) == 1_024

    accept(at_limit, Limits(1_024, record.size))
    with pytest.raises(RecordTooLarge):
        accept(at_limit, Limits(1_024, record.size - 1))


@pytest.mark.parametrize(
    "payload",
    [
        {"password": "AKIA" + "ABCDEFGHIJKLMNOP"},
        {"token": "password=hunter2", "n": [1e15, 1e-7, 10**30]},
        {"api_key": ["ghp_" + "a" * 36]},
    ],
)
def test_given_an_accepted_record_when_the_consumer_accepts_it_again_then_nothing_changes(
    payload,
) -> None:
    # A key-named secret whose value is a secret of another form was redacted to one marker by
    # ingest and to another by the consumer (found by the property test).
    record = accept(envelope(payload=payload))

    again = accept(decode(record.value))

    assert again == record


def test_the_headers_bound_holds_for_the_largest_headers_an_envelope_has() -> None:
    from punk_records.acceptance import _HEADERS_BOUND, _varint_size

    env = envelope(type="memory.candidate", schema_version=1)
    framing = _varint_size(5) + sum(
        _varint_size(len(n)) + len(n) + _varint_size(len(v)) + len(v)
        for n, v in env.kafka_headers()
    )
    assert framing < _HEADERS_BOUND
