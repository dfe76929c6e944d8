"""Requests for the admin function (``sam remote invoke AdminFunction --event-file ...``):
memory replay and dead-letter redrive (docs/memory.md).

They carry the documented local token ``local-dev-token``; the local token set must give it
the ``admin`` scope on every workspace for them to run (the tests do). In AWS, put a real
admin token in place of it.
"""

from __future__ import annotations

from typing import Any

from local.samples.apigw import DEV_TOKEN
from punk_records.config import DEFAULT_TOPIC


def samples() -> dict[str, dict[str, Any]]:
    """Every admin sample event by file name."""
    return {
        "admin-replay-ws-alpha.json": {
            "operation": "replay",
            "workspace_id": "ws-alpha",
            "token": DEV_TOKEN,
        },
        "admin-replay-ws-alpha-dry-run.json": {
            "operation": "replay",
            "workspace_id": "ws-alpha",
            "dry_run": True,
            "token": DEV_TOKEN,
        },
        "admin-redrive-all.json": {"operation": "redrive", "token": DEV_TOKEN},
        "admin-redrive-topic-range.json": {
            "operation": "redrive",
            "topic": DEFAULT_TOPIC,
            "partition": 0,
            "from_offset": 0,
            "to_offset": 999,
            "reason": "payload is",
            "dry_run": False,
            "token": DEV_TOKEN,
        },
    }
