"""Reading a POST body at the HTTP edge: what is refused before any event is looked at."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from punk_records.errors import MalformedJson, UnsupportedMediaType
from punk_records.http_api import read_json
from tests.factories import event_dict

JSON = {"content-type": "application/json"}


def test_given_a_key_twice_in_an_object_then_malformed_json_without_naming_it() -> None:
    event = event_dict()
    body = json.dumps(event)[:-1] + ', "event_id": "6a2f41a3-c54c-fce8-32d2-0324e1c32e22"}'

    with pytest.raises(MalformedJson) as caught:
        read_json(JSON, body, False, 1_000_000)

    assert "same key twice" in str(caught.value)
    assert "event_id" not in str(caught.value)


def test_given_a_key_twice_deep_in_the_payload_then_malformed_json() -> None:
    body = json.dumps(event_dict(payload={"a": {"b": 1}})).replace('{"b": 1}', '{"b": 1, "b": 2}')

    with pytest.raises(MalformedJson):
        read_json(JSON, body, False, 1_000_000)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "GZIP"])
def test_given_a_content_encoding_then_415_naming_it(encoding: str) -> None:
    body = base64.b64encode(gzip.compress(json.dumps(event_dict()).encode())).decode()

    with pytest.raises(UnsupportedMediaType) as caught:
        read_json({**JSON, "content-encoding": encoding}, body, True, 1_000_000)

    assert encoding.lower() in str(caught.value)


def test_given_identity_encoding_then_the_body_is_read() -> None:
    document = read_json({**JSON, "Content-Encoding": "identity"}, "{}", False, 1_000)

    assert document.value == {}


def test_given_invalid_utf8_inside_a_string_then_malformed_json_with_its_position() -> None:
    raw = json.dumps(event_dict(payload={"note": "PLACEHOLDER"})).encode()
    raw = raw.replace(b"PLACEHOLDER", b"caf\xe9")

    with pytest.raises(MalformedJson) as caught:
        read_json(JSON, base64.b64encode(raw).decode(), True, 1_000_000)

    position = raw.index(bytes([0xE9]))
    assert f"invalid byte at position {position}" in str(caught.value)
