"""The published JSON Schema of the envelope says what the validator accepts, no more, no less."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from punk_records.envelope import IDENTIFIER_PATTERN, Envelope, parse_event
from punk_records.errors import InvalidEnvelope
from punk_records.redaction import credential_family
from tests.factories import event_dict

BLANKS = " \t\n\r\x0b\x0c"
identifiers = st.one_of(
    st.text(st.sampled_from(f"{BLANKS}\x1c\x85\u3000a\x00é"), max_size=8),
    st.builds(
        lambda pad, n: f"{pad}{'w' * n}{pad}", st.text(BLANKS, max_size=3), st.integers(0, 131)
    ),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=140),
)


def accepted(workspace_id: str) -> bool:
    try:
        parse_event(event_dict(workspace_id=workspace_id))
    except InvalidEnvelope:
        return False
    return True


@settings(max_examples=300)
@given(identifiers)
def test_an_identifier_matches_the_published_pattern_exactly_when_the_validator_accepts_it(
    value: str,
) -> None:
    # The one rule a pattern cannot carry (the description says it): no credential.
    credential = credential_family(value.strip(BLANKS)) is not None
    expected = bool(re.fullmatch(IDENTIFIER_PATTERN, value)) and not credential
    assert expected == accepted(value), repr(value)


def test_the_schema_carries_the_validators_constraints() -> None:
    schema = Envelope.model_json_schema()
    props = schema["properties"]

    assert props["schema_version"]["const"] == 1
    assert props["event_id"]["format"] == props["trace_id"]["format"] == "uuid"
    assert props["ts"]["format"] == "date-time"
    assert props["workspace_id"]["pattern"] == props["satellite_id"]["pattern"]
    assert (props["confidence"]["minimum"], props["confidence"]["maximum"]) == (0.0, 1.0)
    assert props["payload"]["type"] == "object"
    assert schema["additionalProperties"] is False
    assert len(schema["$defs"]["EventType"]["enum"]) == 9
    assert schema["$defs"]["Severity"]["enum"] == ["low", "medium", "high"]
