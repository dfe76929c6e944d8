"""Small factories for envelopes and Kafka records shared by unit and integration tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from local.envelopes import envelope_dict
from punk_records.envelope import Envelope, parse_event
from punk_records.tokens import Token, parse_token_set


def event_dict(**overrides: Any) -> dict[str, Any]:
    """A valid envelope as a satellite would send it (fresh ids, a fixed time); override any
    field."""
    return envelope_dict(**{"ts": "2026-11-26T06:00:00+02:00", **overrides})


def envelope(**overrides: Any) -> Envelope:
    """A validated envelope built from :func:`event_dict`."""
    return parse_event(event_dict(**overrides))


def reader_token(
    workspaces: Sequence[str] = ("ws-a",),
    scopes: Sequence[str] = ("events:read", "dead_letters:read"),
) -> Token:
    """The matched token of a one-entry token set (id ``reader``) with these workspaces and
    scopes."""
    document = {
        "tokens": [
            {
                "id": "reader",
                "sha256": hashlib.sha256(b"t").hexdigest(),
                "workspaces": list(workspaces),
                "scopes": list(scopes),
            }
        ]
    }
    token = parse_token_set(document, "test").match("t")
    assert token is not None
    return token
