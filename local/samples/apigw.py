"""API Gateway HTTP API (payload format 2.0) requests for the ingest function.

Bodies are built from real envelopes and carry the documented local development token
``local-dev-token`` (``API_TOKENS`` in the local configuration; see docs/ingest.md).
``EXPECTED_STATUS`` says what the function answers to each sample, for the tests and for runs
through the Lambda emulator.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from local.samples import envelope_dict, fixed_id
from punk_records.envelope import parse_event

DEV_TOKEN = "local-dev-token"  # noqa: S105 - the documented local token, not a secret
API_ID = "p4nkr3c0rd"
# 2026-11-26T06:00:00Z
TIME_EPOCH_MS = 1_795_672_800_000
_IDS = uuid.UUID("0b8f6d1e-2c4a-4f3b-8e5d-7a9c1b2d3e4f")

EXPECTED_STATUS: dict[str, int] = {
    "apigw-post-events-valid.json": 202,
    "apigw-post-events-batch.json": 202,
    "apigw-post-events-bad-token.json": 401,
    "apigw-post-events-missing-token.json": 401,
    "apigw-post-events-invalid-envelope.json": 400,
    "apigw-post-events-malformed-json.json": 400,
    "apigw-get-health.json": 200,
}


def _id(name: str) -> str:
    return fixed_id(_IDS, name)


def event(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid envelope as a satellite sends it; ids derive from ``name``."""
    return envelope_dict(_IDS, name, **overrides)


def request(
    method: str,
    path: str,
    scenario: str,
    body: str | None = None,
    token: str | None = DEV_TOKEN,
) -> dict[str, Any]:
    """One HTTP API v2 event as API Gateway sends it (headers lower-cased, ``$default`` stage)."""
    request_id = _id(f"request:{scenario}")
    headers = {
        "accept": "application/json",
        "host": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
        "user-agent": "punk-satellite/1.0",
        "x-amzn-trace-id": f"Root=1-{TIME_EPOCH_MS // 1000:08x}-{request_id.replace('-', '')[:24]}",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        headers["content-length"] = str(len(body.encode()))
        headers["content-type"] = "application/json"
    sample: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": dict(sorted(headers.items())),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": headers["host"],
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "26/Nov/2026:06:00:00 +0000",
            "timeEpoch": TIME_EPOCH_MS,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        sample["body"] = body
    return sample


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def samples() -> dict[str, dict[str, Any]]:
    """Every ingest sample by file name (see ``EXPECTED_STATUS``)."""
    # The password shows redaction on the way in: Kafka receives "[REDACTED:password]".
    single = event(
        "single",
        type="risk.detected",
        severity="high",
        payload={"summary": "staging credentials pasted in a ticket", "db_password": "hunter2"},
    )
    batch = [
        event("batch-1", type="task.created", payload={"title": "rotate staging credentials"}),
        event("batch-2", workspace_id="ws-beta", type="decision.recorded", confidence=1),
        event("batch-3", type="task.updated", payload={"title": "done", "status": "closed"}),
    ]
    for valid in (single, *batch):
        parse_event(valid)  # a sample that drifted from the contract fails here
    invalid = [
        event("invalid-1"),
        {**event("invalid-2", severity="critical"), "trace_id": None},
    ]
    files = {
        "apigw-post-events-valid.json": request("POST", "/events", "valid", _compact(single)),
        "apigw-post-events-batch.json": request("POST", "/events", "batch", _compact(batch)),
        "apigw-post-events-bad-token.json": request(
            "POST",
            "/events",
            "bad-token",
            _compact(single),
            token="not-a-valid-token",  # noqa: S106
        ),
        "apigw-post-events-missing-token.json": request(
            "POST", "/events", "missing-token", _compact(single), token=None
        ),
        "apigw-post-events-invalid-envelope.json": request(
            "POST", "/events", "invalid-envelope", _compact(invalid)
        ),
        "apigw-post-events-malformed-json.json": request(
            "POST", "/events", "malformed-json", _compact(single)[:60]
        ),
        "apigw-get-health.json": request("GET", "/health", "health", token=None),
    }
    assert files.keys() == EXPECTED_STATUS.keys()
    return files
