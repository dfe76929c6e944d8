"""API Gateway HTTP API (payload format 2.0) requests for the query function.

They carry the local development token ``local-dev-token`` like the ingest samples; to answer
them as ``EXPECTED_STATUS`` says, the query function's ``API_TOKENS`` must give that token
``events:read`` and ``dead_letters:read`` (:func:`dev_token_set` builds such a set; see
docs/local-invoke.md). On an empty database.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from local.samples.apigw import DEV_TOKEN, request

EXPECTED_STATUS: dict[str, int] = {
    "apigw-get-events-page.json": 200,
    "apigw-get-events-missing-workspace.json": 400,
    "apigw-get-events-bad-cursor.json": 400,
    "apigw-get-event-unknown.json": 404,
    "apigw-get-dead-letters.json": 200,
}
UNKNOWN_EVENT_ID = "00000000-0000-4000-8000-00000000beef"


def dev_token_set() -> str:
    """``API_TOKENS`` under which the samples answer as documented: the development token,
    all workspaces, reading scopes."""
    entry = {
        "id": "local-dev",
        "sha256": hashlib.sha256(DEV_TOKEN.encode()).hexdigest(),
        "workspaces": ["*"],
        "scopes": ["events:read", "dead_letters:read"],
    }
    return json.dumps({"tokens": [entry]})


def _get(path: str, scenario: str, route: str | None = None, **params: Any) -> dict[str, Any]:
    sample = request("GET", path, scenario)
    query = urlencode(params, doseq=True)
    sample["rawQueryString"] = query
    if params:
        # As API Gateway: repeated keys joined with commas.
        sample["queryStringParameters"] = {
            k: ",".join(v) if isinstance(v, list) else str(v) for k, v in params.items()
        }
    if route is not None:
        sample["routeKey"] = sample["requestContext"]["routeKey"] = f"GET {route}"
        sample["pathParameters"] = {"event_id": path.rsplit("/", 1)[1]}
    return sample


def samples() -> dict[str, dict[str, Any]]:
    """Every query sample by file name (see ``EXPECTED_STATUS``)."""
    files = {
        "apigw-get-events-page.json": _get(
            "/events",
            "events-page",
            workspace_id="ws-alpha",
            type=["risk.detected", "finding.logged"],
            since="2026-11-26T00:00:00Z",
            limit=50,
        ),
        "apigw-get-events-missing-workspace.json": _get(
            "/events", "events-missing-workspace", limit=10
        ),
        "apigw-get-events-bad-cursor.json": _get(
            "/events", "events-bad-cursor", workspace_id="ws-alpha", cursor="AQ-not-a-cursor"
        ),
        "apigw-get-event-unknown.json": _get(
            f"/events/{UNKNOWN_EVENT_ID}", "event-unknown", route="/events/{event_id}"
        ),
        "apigw-get-dead-letters.json": _get(
            "/dead-letters", "dead-letters", topic="punk-records.events.v1", limit=20
        ),
    }
    assert files.keys() == EXPECTED_STATUS.keys()
    return files
