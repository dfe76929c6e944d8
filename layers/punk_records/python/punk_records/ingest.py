"""The ingest use case: validate a parsed JSON document, redact it, produce it, say what was
accepted; and the one structured log line (plus metrics) every request ends in.

Knows nothing about HTTP: the edge (:mod:`punk_records.http`) authenticates, reads the body into
a :class:`JsonDocument` and renders the outcome or the error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, Field

from punk_records.acceptance import Limits, accept_all
from punk_records.auth import authorize
from punk_records.config import Settings
from punk_records.envelope import Envelope, parse_batch, parse_event
from punk_records.errors import (
    ConfigurationError,
    InvalidEnvelope,
    ProduceError,
    PunkRecordsError,
    TooLarge,
)
from punk_records.observability import NAMESPACE, SERVICE, logger, metrics
from punk_records.ports import Producer
from punk_records.tokens import Scope, Token, TokenSource

# Validation errors echoed into the log line (the response always carries all of them).
_LOGGED_ERRORS = 20


@dataclass(frozen=True, slots=True)
class JsonDocument:
    """A request body parsed as JSON: the value, its size in bytes, and whether the text was
    plain JSON (see :func:`~punk_records.envelope.plain_json`)."""

    value: Any
    size: int
    plain: bool = False


class Accepted(BaseModel):
    """Every event was acknowledged by Kafka (``acks=all``)."""

    accepted: int = Field(description="Number of events accepted.")
    event_ids: list[UUID] = Field(description="The accepted event ids, in request order.")


def envelopes_of(document: Any, settings: Settings, plain_json: bool = False) -> list[Envelope]:
    """Validate one envelope, a JSON array of envelopes or ``{"events": [...]}`` as a whole.

    Raise TooLarge over ``max_batch_events`` items, InvalidEnvelope listing every error (batch
    errors start their ``loc`` with the item index).
    """
    if isinstance(document, dict) and "events" in document:
        extra = [k for k in document if k != "events"]
        if extra or not isinstance(document["events"], list):
            errors = [
                {"loc": [k], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                for k in extra
            ]
            if not isinstance(document["events"], list):
                errors.append(
                    {"loc": ["events"], "msg": "Input should be a valid list", "type": "list_type"}
                )
            raise InvalidEnvelope(errors)
        document = document["events"]
    if not isinstance(document, dict | list):
        message = 'expected an event object, an array of events or {"events": [...]}'
        raise InvalidEnvelope([{"loc": [], "msg": message, "type": "model_type"}])
    if isinstance(document, dict):
        return [parse_event(document, plain_json)]
    if len(document) > settings.max_batch_events:
        raise TooLarge(
            f"the batch has {len(document)} events; the limit is {settings.max_batch_events} "
            "(MAX_BATCH_EVENTS)"
        )
    if not document:
        raise InvalidEnvelope([{"loc": [], "msg": "the batch is empty", "type": "too_short"}])
    return parse_batch(document, plain_json)


@dataclass(slots=True)
class RequestLog:
    """What the one log line per request says; filled in as the request progresses."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    count: int | None = None
    trace_ids: list[str] = field(default_factory=list)
    token_id: str | None = None

    def fields(self, outcome: str, **extra: Any) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "token_id": self.token_id,
            "outcome": outcome,
            "count": self.count,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "trace_ids": self.trace_ids,
            **extra,
        }


def _trace_ids(items: Sequence[Any]) -> list[str]:
    """Distinct trace ids that parse as UUIDs (so nothing else from the body reaches the log)."""
    # Only strings can parse; each distinct one is parsed once (a batch often shares a trace).
    texts = dict.fromkeys(
        value
        for item in items
        if isinstance(item, dict) and isinstance(value := item.get("trace_id"), str)
    )
    found: dict[str, None] = {}
    for text in texts:
        try:
            found[str(UUID(text))] = None
        except ValueError:
            continue
    return list(found)


def _items(document: Any) -> list[Any]:
    if isinstance(document, dict) and isinstance(events := document.get("events"), list):
        return events
    return document if isinstance(document, list) else [document]


@contextmanager
def request_log(request_id: str) -> Iterator[RequestLog]:
    """Write the request's one log line and its rejection metric, whatever the outcome; errors
    propagate for the edge to render."""
    log = RequestLog(request_id)
    try:
        yield log
    except PunkRecordsError as exc:
        _rejected(log, exc)
        raise
    except Exception as exc:
        _count_rejection("internal_error")
        # The edge logs the traceback; this is the request's one summary line.
        logger.error("ingest request", extra=log.fields("error", error=type(exc).__name__))
        raise
    logger.info("ingest request", extra=log.fields("accepted"))


def writer(headers: Mapping[str, str], tokens: TokenSource, log: RequestLog) -> Token:
    """The request's token, once it may write at all: raise Unauthorized or MissingScope
    (``events:write``) before the body is looked at. The log line names the token's id."""
    token = authorize(headers, tokens)
    log.token_id = token.id
    token.require_scope(Scope.EVENTS_WRITE)
    return token


def accept_events(
    document: JsonDocument,
    settings: Settings,
    producer: Producer,
    token: Token,
    log: RequestLog | None = None,
) -> Accepted:
    """Validate, redact and produce ``document``; return Accepted only once Kafka acknowledged
    every event.

    Raise TooLarge or InvalidEnvelope, then WorkspaceForbidden naming every event whose
    workspace ``token`` may not write, then InvalidEnvelope, RecordTooLarge or TooLarge when a
    limit fails on exactly what would be produced (:mod:`punk_records.acceptance`): nothing is
    produced in all these cases. ProduceError when Kafka did not acknowledge every record
    (CircuitOpen at once while no broker is reachable).
    """
    log = log or RequestLog("")
    items = _items(document.value)
    log.count, log.trace_ids = len(items), _trace_ids(items)
    envelopes = envelopes_of(document.value, settings, document.plain)
    single = isinstance(document.value, dict) and "events" not in document.value
    token.require_workspaces([env.workspace_id for env in envelopes], batch=not single)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(envelopes))
    clean = accept_all(envelopes, Limits.of(settings))
    produced = sum(len(record.value) for record in clean)
    if produced > settings.max_body_bytes:
        raise TooLarge(
            f"the events are {produced} bytes as produced (redacted, canonical JSON); the "
            f"limit is {settings.max_body_bytes} (MAX_BODY_BYTES)"
        )
    started = time.perf_counter()
    try:
        producer.produce(clean)
    finally:
        latency_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(
            name="ProduceLatency", unit=MetricUnit.Milliseconds, value=round(latency_ms, 3)
        )
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=len(clean))
    return Accepted(accepted=len(clean), event_ids=[record.envelope.event_id for record in clean])


def _rejected(log: RequestLog, exc: PunkRecordsError) -> None:
    code = exc.code
    _count_rejection(code)
    if isinstance(exc, ProduceError):
        logger.warning(
            "ingest request",
            extra=log.fields("unavailable", reason=code, not_acked=exc.not_acked, error=str(exc)),
        )
    elif exc.retriable or isinstance(exc, ConfigurationError):
        logger.error("ingest request", extra=log.fields("error", reason=code, error=str(exc)))
    elif isinstance(exc, InvalidEnvelope):
        errors = [{"loc": e["loc"], "type": e["type"]} for e in exc.errors[:_LOGGED_ERRORS]]
        logger.info(
            "ingest request",
            extra=log.fields("rejected", reason=code, error_count=len(exc.errors), errors=errors),
        )
    else:
        logger.info("ingest request", extra=log.fields("rejected", reason=code, error=str(exc)))


def _count_rejection(code: str) -> None:
    # A metric of its own (flushed now) so that "reason" is a dimension of this metric only.
    with single_metric(
        name="RequestsRejected",
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="reason", value=code)
