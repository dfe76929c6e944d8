"""Kafka event source mapping events (MSK ``aws:kafka`` and ``SelfManagedKafka``) for the consumer.

Records are built from real envelopes exactly as the ingest producer writes them (key, value,
headers), then shaped as Lambda delivers them: grouped by ``topic-partition``, key and value in
base64, headers as ``[{name: [byte ints]}]``, timestamps in epoch milliseconds.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from local.samples import envelope_dict, fixed_id
from punk_records.config import DEFAULT_TOPIC
from punk_records.envelope import Envelope, parse_event

TOPIC = DEFAULT_TOPIC
MSK_ARN = (
    "arn:aws:kafka:us-east-1:123456789012:cluster/punk-records/"
    "8b3e1d2c-6f0a-4c51-9e07-1a2b3c4d5e6f-7"
)
MSK_BOOTSTRAP = (
    "b-1.punkrecords.x1y2z3.c7.kafka.us-east-1.amazonaws.com:9098,"
    "b-2.punkrecords.x1y2z3.c7.kafka.us-east-1.amazonaws.com:9098"
)
SMK_BOOTSTRAP = "kafka-1.punk.internal:9096,kafka-2.punk.internal:9096"
# 2026-11-26T06:00:00Z; record timestamps count up one second per record from here.
BASE_TIMESTAMP_MS = 1_795_672_800_000
_IDS = uuid.UUID("6f1c0e52-3b7a-4d8e-9a41-0c5d2e7f8b90")


def _id(name: str) -> str:
    return fixed_id(_IDS, name)


def envelope(name: str, **overrides: Any) -> Envelope:
    """A valid envelope whose ids derive from ``name``."""
    return parse_event(envelope_dict(_IDS, name, **overrides))


def record(
    partition: int,
    offset: int,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    topic: str = TOPIC,
) -> dict[str, Any]:
    """One record as the event source mapping delivers it."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": BASE_TIMESTAMP_MS + 1_000 * offset,
        "timestampType": "CREATE_TIME",
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": None if value is None else base64.b64encode(value).decode(),
        "headers": [{name: list(data)} for name, data in headers or []],
    }


def envelope_record(env: Envelope, partition: int, offset: int) -> dict[str, Any]:
    """The record the ingest producer writes for ``env``."""
    return record(partition, offset, env.kafka_value(), env.kafka_key(), env.kafka_headers())


def batch(source: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """An ESM event for ``source`` ("msk" or "smk") with records grouped by topic-partition."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in records:
        groups.setdefault(f"{item['topic']}-{item['partition']}", []).append(item)
    if source == "msk":
        return {
            "eventSource": "aws:kafka",
            "eventSourceArn": MSK_ARN,
            "bootstrapServers": MSK_BOOTSTRAP,
            "records": groups,
        }
    return {"eventSource": "SelfManagedKafka", "bootstrapServers": SMK_BOOTSTRAP, "records": groups}


def valid_records() -> list[dict[str, Any]]:
    """Five events over two partitions; one payload carries a secret the consumer must redact."""
    secret = envelope(
        "valid-4",
        workspace_id="ws-beta",
        type="risk.detected",
        severity="high",
        payload={"summary": "credentials in a config file", "password": "hunter2-sample-only"},
    )
    return [
        envelope_record(envelope("valid-1"), 0, 100),
        envelope_record(envelope("valid-2", type="task.created", severity="low"), 0, 101),
        envelope_record(envelope("valid-3", type="memory.candidate", confidence=1), 0, 102),
        envelope_record(secret, 1, 40),
        envelope_record(envelope("valid-5", workspace_id="ws-beta", confidence=0.0), 1, 41),
    ]


def duplicate_records() -> list[dict[str, Any]]:
    """Four records, two of them the same event produced twice (a producer retry)."""
    first = envelope("dup-1")
    return [
        envelope_record(first, 0, 200),
        envelope_record(envelope("dup-2"), 0, 201),
        envelope_record(first, 0, 202),
        envelope_record(envelope("dup-3", workspace_id="ws-beta"), 2, 7),
    ]


# Offsets of the poison records in the with-poison samples and how each reason starts.
POISON_EXPECTED_REASONS = {
    301: "value is not UTF-8",
    302: "value is not JSON",
    303: "not a valid envelope",
    304: "not a valid envelope",
    305: "record has no value",
    306: "not a valid envelope: payload: contains a NUL character",
}


def poison_records() -> list[dict[str, Any]]:
    """Two valid events around every kind of poison record the consumer must dead-letter."""
    bad_severity = json.loads(envelope("poison-severity").kafka_value())
    bad_severity["severity"] = "catastrophic"
    nul = json.loads(envelope("poison-nul").kafka_value())
    nul["payload"] = {"summary": "a NUL \u0000 here"}
    return [
        envelope_record(envelope("poison-ok-1"), 0, 300),
        record(0, 301, b"\xff\xfe not UTF-8", key=b"ws-alpha"),
        record(0, 302, b"{not json", key=b"ws-alpha"),
        record(0, 303, json.dumps(bad_severity).encode(), key=b"ws-alpha"),
        record(0, 304, b'["an array", "not an object"]'),
        record(0, 305, None, key=b"ws-alpha"),
        record(0, 306, json.dumps(nul).encode(), key=b"ws-alpha"),
        envelope_record(envelope("poison-ok-2", workspace_id="ws-beta"), 1, 50),
    ]


def memory_records() -> list[dict[str, Any]]:
    """Governed memory in one batch (docs/memory.md), out of order: a candidate promoted by a
    decision of its trace, one promoted explicitly then retracted (which arrives first), an
    ephemeral one, one referenced by two events (auto-promoted), and an invalid candidate."""
    decided = envelope(
        "mem-decided",
        type="memory.candidate",
        confidence=0.9,
        payload={"key": "deploy/cadence", "value": {"days": ["tue", "thu"]}, "bucket": "global"},
    )
    decision = envelope(
        "mem-decision",
        type="decision.recorded",
        ts="2026-11-26T09:00:00+01:00",
        trace_id=str(decided.trace_id),
        payload={"summary": "deploy on tuesdays and thursdays"},
    )
    reviewed = envelope(
        "mem-reviewed", type="memory.candidate", confidence=0.4, payload={"key": "owner/db"}
    )
    promoted = envelope(
        "mem-promote",
        type="memory.promoted",
        ts="2026-11-26T08:00:00+01:00",
        payload={"entry_id": str(reviewed.event_id), "reason": "confirmed by on-call"},
    )
    retracted = envelope(
        "mem-retract",
        type="memory.retracted",
        ts="2026-11-26T10:00:00+01:00",
        payload={"entry_id": str(reviewed.event_id), "reason": "team changed"},
    )
    ephemeral = envelope(
        "mem-ephemeral",
        type="memory.candidate",
        confidence=0.6,
        payload={"key": "incident/open", "bucket": "ephemeral", "ttl_hours": 6},
    )
    cited = envelope(
        "mem-cited", type="memory.candidate", confidence=0.8, payload={"key": "runbook/disk"}
    )
    refs = {"summary": "followed the runbook", "refs": [str(cited.event_id)]}
    first_ref = envelope("mem-ref-1", ts="2026-11-26T08:30:00+01:00", payload=refs)
    second_ref = envelope(
        "mem-ref-2", type="task.created", ts="2026-11-26T08:45:00+01:00", payload=refs
    )
    invalid = envelope(
        "mem-invalid", type="memory.candidate", payload={"key": "", "bucket": "attic"}
    )
    ordered = [
        retracted, decided, decision, promoted, reviewed, ephemeral, second_ref, cited,
        first_ref, invalid,
    ]  # fmt: skip
    return [envelope_record(env, 0, 400 + i) for i, env in enumerate(ordered)]


def samples() -> dict[str, dict[str, Any]]:
    """Every consumer sample event by file name."""
    scenarios = {
        "batch-valid": valid_records(),
        "batch-memory": memory_records(),
        "batch-with-duplicates": duplicate_records(),
        "batch-with-poison": poison_records(),
        "batch-empty": [],
    }
    return {
        f"{source}-{scenario}.json": batch(source, records)
        for source in ("msk", "smk")
        for scenario, records in scenarios.items()
    }
