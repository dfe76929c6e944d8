"""Property: what ingest answers 202 for, the consumer stores as an event; a 4xx produces nothing.

The real ingest handler (API Gateway event in, HTTP response out) and the real consumer domain
run on generated requests: numbers in exponent form (``1e15`` grows to ``1000000000000000.0``
when serialised), long unicode, nesting near the depth limit, many short secrets (redaction
grows them), and payloads sized to the limit plus or minus a few bytes as sent. Only Kafka and
PostgreSQL are stand-ins: a producer that refuses a record exactly as kafka-python does
(``max_request_size``), and an in-memory store. Small limits keep every example fast; the rule
is the same at any size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as observe
from hypothesis import strategies as st
from kafka.errors import MessageSizeTooLargeError
from kafka.record.default_records import DefaultRecordBatchBuilder

from local.samples.apigw import request
from punk_records import bootstrap
from punk_records.acceptance import Limits, Record
from punk_records.config import Settings
from punk_records.consumer import KafkaRecord, consume
from punk_records.envelope import MAX_PAYLOAD_DEPTH
from punk_records.errors import RecordTooLarge
from punk_records.ports import Batch, DeadLetter, StoredEvent, WriteResult
from tests.lambda_util import lambda_context, load_function

TOKEN = "property-token"
LIMITS = {"MAX_PAYLOAD_BYTES": 1_024, "MAX_RECORD_BYTES": 1_536, "MAX_BODY_BYTES": 4_096}


class KafkaLikeProducer:
    """Sends records in order and refuses one over ``max_request_size`` as kafka-python does:
    with MessageSizeTooLargeError at its ``send``, after the records before it went out."""

    def __init__(self, max_request_size: int) -> None:
        self.max_request_size = max_request_size
        self.sent: list[Record] = []

    def produce(self, records: Sequence[Record]) -> None:
        for record in records:
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
                record.key, record.value, record.headers
            )
            if size > self.max_request_size:
                # What punk_records.producer.produce makes of the error.
                raise RecordTooLarge(size, self.max_request_size) from MessageSizeTooLargeError()
            self.sent.append(record)


class MemoryStore:
    """Keeps what the consumer would write."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.letters: list[DeadLetter] = []

    def write(self, batch: Batch) -> WriteResult:
        self.events.extend(batch.events())  # read first: dead letters are known after
        self.letters.extend(batch.dead_letters())
        return WriteResult(len(self.events), 0, len(self.letters))

    def ping(self) -> None:
        return None


@pytest.fixture(scope="module")
def ingest_app() -> Any:
    return load_function("ingest")


@pytest.fixture(scope="module")
def configured() -> Iterator[Settings]:
    """The ingest container's environment, for the whole module (hypothesis runs many
    examples per test, and function-scoped fixtures would be shared between them anyway)."""
    mp = pytest.MonkeyPatch()
    env = {
        "API_TOKENS": TOKEN,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "MAX_BATCH_EVENTS": "5",
        **{name: str(value) for name, value in LIMITS.items()},
    }
    for name, value in env.items():
        mp.setenv(name, value)
    mp.delenv("API_TOKENS_SECRET_ARN", raising=False)
    bootstrap.reset()
    yield Settings.from_env(env)
    bootstrap.reset()
    mp.undo()


def ingest(app: Any, body: str) -> tuple[int, dict[str, Any], list[Record]]:
    """POST ``body`` through the real handler; the status, the body and what was produced."""
    producer = KafkaLikeProducer(LIMITS["MAX_RECORD_BYTES"])
    mp = pytest.MonkeyPatch()
    mp.setattr(bootstrap.container, "producer", lambda: producer)
    try:
        response = app.handler(
            request("POST", "/events", "property", body=body, token=TOKEN),
            lambda_context("punk-records-ingest"),
        )
    finally:
        mp.undo()
    return response["statusCode"], json.loads(response["body"]), producer.sent


def stored(records: Sequence[Record], limits: Limits) -> MemoryStore:
    """What the consumer stores when the ESM delivers ``records``."""
    store = MemoryStore()
    batch = [KafkaRecord("topic", 0, offset, r.key, r.value) for offset, r in enumerate(records)]
    consume(batch, store, limits)
    return store


# ---------------------------------------------------------------------------- the JSON as sent


@dataclass(frozen=True)
class Exponent:
    """A number written in exponent form, e.g. ``1e15`` (parsed as a float)."""

    text: str


def render(node: Any) -> str:
    """JSON text for ``node``, with :class:`Exponent` numbers written as they were drawn."""
    if isinstance(node, Exponent):
        return node.text
    if isinstance(node, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ",".join(render(v) for v in node) + "]"
    return json.dumps(node, ensure_ascii=False)


exponents = st.builds(
    lambda m, e, sign: Exponent(f"{m}{sign}{e}"),
    st.integers(1, 9),
    st.integers(0, 300),
    st.sampled_from(["e", "E", "e+", "e-"]),
)
unicode_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=300,
)
secrets = st.one_of(
    st.builds(
        lambda s: "AKIA" + s, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16)
    ),
    st.builds(lambda s: f"password={s}", st.text("abcdefgh12345", min_size=1, max_size=12)),
    st.builds(lambda s: f"ghp_{s}", st.text("abcdefABCDEF0123456789", min_size=36, max_size=36)),
)
leaves = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    exponents,
    unicode_text,
    secrets,
    st.booleans(),
    st.none(),
)
keys = st.one_of(
    st.sampled_from(["password", "api_key", "token", "secret", "note", "n", "payload"]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested close to MAX_PAYLOAD_DEPTH (one level either side included)."""
    depth = draw(st.integers(MAX_PAYLOAD_DEPTH - 3, MAX_PAYLOAD_DEPTH + 1))
    node: Any = draw(leaves)
    for _ in range(depth - 1):  # the payload object itself is the outermost level
        node = [node] if draw(st.booleans()) else {"k": node}
    return node


@st.composite
def many_secrets(draw: st.DrawFn) -> dict[str, Any]:
    """Many short secrets, named by their key or recognised by their form."""
    count = draw(st.integers(1, 80))
    return {
        f"{draw(st.sampled_from(['password', 'token', 'item']))}_{i}": draw(secrets)
        for i in range(count)
    }


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    """A payload, often padded to MAX_PAYLOAD_BYTES plus or minus a few bytes as sent."""
    payload = draw(
        st.one_of(
            st.dictionaries(keys, trees, max_size=8),
            many_secrets(),
            st.builds(lambda v: {"deep": v}, deep()),
            st.builds(lambda xs: {"n": xs}, st.lists(exponents, max_size=200)),
            st.builds(lambda t: {"text": t}, unicode_text),
        )
    )
    if draw(st.booleans()):
        payload = dict(payload)
        payload["pad"] = ""
        target = LIMITS["MAX_PAYLOAD_BYTES"] + draw(st.integers(-6, 6))
        missing = target - len(render(payload).encode())
        payload["pad"] = "x" * max(0, missing)
    return payload


def envelope_text(payload: Any, workspace: str) -> str:
    head = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "ts": "2026-11-29T12:00:00Z",
        "workspace_id": workspace,
        "satellite_id": "sat-1",
        "trace_id": str(uuid.uuid4()),
        "type": "finding.logged",
        "severity": "low",
        "confidence": 0.5,
    }
    return json.dumps(head, ensure_ascii=False)[:-1] + ',"payload":' + render(payload) + "}"


bodies = st.builds(
    lambda items, batch: items[0] if not batch else "[" + ",".join(items) + "]",
    st.lists(
        st.builds(envelope_text, payloads(), st.sampled_from(["ws-a", "w" * 128, "é" * 64])),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
).filter(lambda text: text.count("[") < 1_000)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies)
def test_202_means_stored_as_an_event_and_4xx_means_nothing_produced(
    ingest_app: Any, configured: Settings, body: str
) -> None:
    status, answer, produced = ingest(ingest_app, body)
    observe(f"{status} {answer.get('error', '')}")

    assert status < 500, answer
    if status == 202:
        store = stored(produced, Limits.of(configured))
        assert [letter.error for letter in store.letters] == []
        assert [str(e.envelope.event_id) for e in store.events] == answer["event_ids"]
        for event, record in zip(store.events, produced, strict=True):
            assert event.envelope == record.envelope
            assert event.payload_json == record.payload_json
    else:
        assert produced == [], f"{status} {answer} but {len(produced)} record(s) produced"
