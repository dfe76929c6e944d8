"""Small factories for envelopes and Kafka records shared by unit and integration tests."""

from __future__ import annotations

from typing import Any

from local.envelopes import envelope_dict
from punk_records.envelope import Envelope, parse_event


def event_dict(**overrides: Any) -> dict[str, Any]:
    """A valid envelope as a satellite would send it (fresh ids, a fixed time); override any
    field."""
    return envelope_dict(**{"ts": "2026-11-26T06:00:00+02:00", **overrides})


def envelope(**overrides: Any) -> Envelope:
    """A validated envelope built from :func:`event_dict`."""
    return parse_event(event_dict(**overrides))
