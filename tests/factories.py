"""Small factories for envelopes and Kafka records shared by unit and integration tests."""

from __future__ import annotations

import uuid
from typing import Any

from punk_records.envelope import Envelope, parse_event


def event_dict(**overrides: Any) -> dict[str, Any]:
    """A valid envelope as a satellite would send it; override any field."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "ts": "2026-11-26T06:00:00+02:00",
        "workspace_id": "ws-alpha",
        "satellite_id": "sat-1",
        "trace_id": str(uuid.uuid4()),
        "type": "finding.logged",
        "severity": "medium",
        "confidence": 0.75,
        "payload": {"summary": "disk usage above 90%", "host": "db-1"},
    }
    event.update(overrides)
    return event


def envelope(**overrides: Any) -> Envelope:
    """A validated envelope built from :func:`event_dict`."""
    return parse_event(event_dict(**overrides))
