"""The one builder of envelope dicts (what a satellite POSTs) for tests, samples, ``make send``
and the benchmarks: each caller fixes what it needs (ids, time, fields), the rest is a valid
default."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def envelope_dict(**fields: Any) -> dict[str, Any]:
    """A valid envelope as JSON-ready data: fresh ids and the current time, valid defaults for
    the rest; ``fields`` replace any of them, even with an invalid value (keys keep their
    order, so samples render stably)."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspace_id": "ws-alpha",
        "satellite_id": "sat-1",
        "trace_id": str(uuid.uuid4()),
        "type": "finding.logged",
        "severity": "medium",
        "confidence": 0.75,
        "payload": {"summary": "disk usage above 90%", "host": "db-1"},
    }
    body.update(fields)
    return body
