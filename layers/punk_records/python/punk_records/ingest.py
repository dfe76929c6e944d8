"""The ingest API's domain: authenticate, read and bound the body, validate, redact, produce.

Knows HTTP requests only as headers plus a body; nothing here looks at a Lambda event. Every
request ends in exactly one structured log line and its metrics, whatever the outcome.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, Field

from punk_records import health as _health
from punk_records import producer as _producer
from punk_records.auth import Unauthorized, authorize
from punk_records.config import Settings, get_settings
from punk_records.envelope import Envelope, parse_batch, parse_event, plain_json
from punk_records.errors import (
    ConfigurationError,
    InvalidEnvelope,
    ProduceError,
    PunkRecordsError,
    SecretUnavailable,
)
from punk_records.observability import NAMESPACE, SERVICE, logger, metrics
from punk_records.producer import get_producer

# Seconds a client should wait before retrying after a 503: long enough for a broker
# leader election or restart, short enough that satellites do not buffer much.
RETRY_AFTER_S = 5
# Validation errors echoed into the log line (the response always carries all of them).
_LOGGED_ERRORS = 20


class RequestRejected(PunkRecordsError):
    """The request can never succeed as sent. ``reason`` is its code in bodies and metrics."""

    reason: ClassVar[str] = "bad_request"


class UnsupportedMediaType(RequestRejected):
    """The body is not declared as JSON (``Content-Type: application/json``)."""

    reason = "unsupported_media_type"


class MalformedJson(RequestRejected):
    """The body is not UTF-8 JSON (or not valid base64 when the gateway encoded it)."""

    reason = "malformed_json"


class TooLarge(RequestRejected):
    """The body exceeds ``MAX_BODY_BYTES`` or the batch exceeds ``MAX_BATCH_EVENTS``."""

    reason = "too_large"


class Producer(Protocol):
    """What ingest needs from Kafka: produce every envelope or raise ProduceError."""

    def produce(self, envelopes: Sequence[Envelope]) -> None: ...


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """One ``POST /events`` request: headers (any case), the body as received, and whether the
    gateway base64-encoded it. ``request_id`` only correlates the log line."""

    headers: Mapping[str, str]
    body: str | None
    base64_encoded: bool = False
    request_id: str = ""


class Accepted(BaseModel):
    """Every event was acknowledged by Kafka (``acks=all``)."""

    accepted: int = Field(description="Number of events accepted.")
    event_ids: list[UUID] = Field(description="The accepted event ids, in request order.")


class FieldError(BaseModel):
    """One validation error: ``loc`` starts with the item index when the request is a batch."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: str = Field(description="Machine-readable reason, e.g. invalid_envelope.")
    message: str = Field(description="What went wrong, for humans.")
    errors: list[FieldError] | None = Field(
        default=None, description="Every validation error (400 invalid_envelope only)."
    )


_REASONS: dict[type[BaseException], str] = {
    InvalidEnvelope: "invalid_envelope",
    ProduceError: "kafka_unavailable",
    SecretUnavailable: "tokens_unavailable",
    ConfigurationError: "misconfigured",
}

_MESSAGES = {
    "kafka_unavailable": "Kafka did not acknowledge every event in time; nothing is "
    "confirmed, retry the whole request (duplicates are harmless)",
    "tokens_unavailable": "the API tokens cannot be read right now; retry later",
    "internal_error": "internal error",
}


def reason(exc: BaseException) -> str:
    """The machine-readable reason for ``exc``: the ``error`` field and metric dimension."""
    if isinstance(exc, RequestRejected | Unauthorized):
        return exc.reason
    return next((r for cls, r in _REASONS.items() if isinstance(exc, cls)), "internal_error")


def error_body(exc: BaseException) -> ErrorBody:
    """The response body for ``exc``. Server-side failures get a fixed message, so nothing about
    the deployment (hosts, variables, exception text) reaches the client."""
    code = reason(exc)
    if isinstance(exc, InvalidEnvelope):
        return ErrorBody(
            error=code,
            message=str(exc),
            errors=[FieldError.model_validate(e) for e in exc.errors],
        )
    if isinstance(exc, RequestRejected | Unauthorized):
        return ErrorBody(error=code, message=str(exc))
    return ErrorBody(error=code, message=_MESSAGES.get(code, _MESSAGES["internal_error"]))


def _is_json_media_type(content_type: str) -> bool:
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return False
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "")
    return charset in ("", "utf-8", "utf8")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as infinity
        raise ValueError("number out of range")
    return value


def read_json(request: IngestRequest, settings: Settings) -> tuple[Any, int, bool]:
    """The parsed JSON body, its size in bytes and whether it is plain JSON (see
    :func:`~punk_records.envelope.plain_json`).

    Raise UnsupportedMediaType, TooLarge (over ``max_body_bytes``) or MalformedJson.
    """
    content_type = _header(request.headers, "content-type")
    if content_type is None or not _is_json_media_type(content_type):
        raise UnsupportedMediaType("Content-Type must be application/json (UTF-8)")
    text = request.body or ""
    try:
        raw = base64.b64decode(text, validate=True) if request.base64_encoded else text.encode()
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedJson("the body is not valid UTF-8 JSON") from None
    if len(raw) > settings.max_body_bytes:
        raise TooLarge(
            f"the body is {len(raw)} bytes; the limit is {settings.max_body_bytes} (MAX_BODY_BYTES)"
        )
    try:
        if request.base64_encoded:
            text = raw.decode()
        # NaN and Infinity are not JSON; accepting them would put invalid JSON into Kafka.
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        # The position only: the message never quotes the body.
        raise MalformedJson(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (UnicodeError, ValueError):
        raise MalformedJson("the body is not valid UTF-8 JSON") from None
    except RecursionError:
        raise MalformedJson("the body is nested too deeply") from None
    return document, len(raw), plain_json(text, document)


def envelopes_of(
    document: Any, body_bytes: int, settings: Settings, plain_json: bool = False
) -> list[Envelope]:
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
        return [parse_event(document, settings.max_payload_bytes, body_bytes, plain_json)]
    if len(document) > settings.max_batch_events:
        raise TooLarge(
            f"the batch has {len(document)} events; the limit is {settings.max_batch_events} "
            "(MAX_BATCH_EVENTS)"
        )
    if not document:
        raise InvalidEnvelope([{"loc": [], "msg": "the batch is empty", "type": "too_short"}])
    return parse_batch(document, settings.max_payload_bytes, body_bytes, plain_json)


@dataclass(slots=True)
class _RequestLog:
    """What the one log line per request says; filled in as the request progresses."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    count: int | None = None
    trace_ids: list[str] = field(default_factory=list)

    def fields(self, outcome: str, **extra: Any) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
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
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        return document["events"]
    return document if isinstance(document, list) else [document]


def accept_events(
    request: IngestRequest, settings: Settings | None = None, producer: Producer | None = None
) -> Accepted:
    """Handle ``POST /events``: return Accepted only once Kafka acknowledged every event.

    Raise Unauthorized before the body is looked at; then UnsupportedMediaType, TooLarge,
    MalformedJson or InvalidEnvelope (nothing produced); ProduceError when Kafka did not
    acknowledge every record; SecretUnavailable / ConfigurationError for server-side problems.
    """
    log = _RequestLog(request.request_id)
    try:
        settings = settings or get_settings()
        authorize(request.headers, settings)
        document, size, plain = read_json(request, settings)
        items = _items(document)
        log.count, log.trace_ids = len(items), _trace_ids(items)
        envelopes = envelopes_of(document, size, settings, plain)
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(envelopes))
        clean = [env.redacted() for env in envelopes]
        started = time.perf_counter()
        try:
            (producer or get_producer()).produce(clean)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            metrics.add_metric(
                name="ProduceLatency", unit=MetricUnit.Milliseconds, value=round(latency_ms, 3)
            )
    except PunkRecordsError as exc:
        _rejected(log, exc)
        raise
    except Exception as exc:
        _count_rejection("internal_error")
        # The handler logs the traceback; this is the request's one summary line.
        logger.error("ingest request", extra=log.fields("error", error=type(exc).__name__))
        raise
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=len(clean))
    logger.info("ingest request", extra=log.fields("accepted"))
    return Accepted(accepted=len(clean), event_ids=[env.event_id for env in clean])


def _rejected(log: _RequestLog, exc: PunkRecordsError) -> None:
    code = reason(exc)
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


def reset() -> None:
    """Close and forget the container's settings and clients (producer, Kafka probe, store);
    the next request rebuilds them from the environment. For tests and tools."""
    # Through the modules, so that a test which replaced a name here still resets the real one.
    if _producer.get_producer.cache_info().currsize:
        _producer.get_producer().reset()
    if _health.get_kafka_probe.cache_info().currsize:
        _health.get_kafka_probe().close()
    factories = [_producer.get_producer, _health.get_kafka_probe, get_settings]
    # The store module is imported on the first health check only; before that, nothing to do.
    store = sys.modules.get("punk_records.store")
    if store is not None:
        if store.get_store.cache_info().currsize:
            store.get_store().reset()
        factories.append(store.get_store)
    for factory in factories:
        factory.cache_clear()


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references inlined: an OpenAPI document resolves ``$ref``
    against its own root, where pydantic's ``#/$defs/...`` do not exist."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def _response(description: str, model: type[BaseModel], **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"model": model}},
    }
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


_ENVELOPE_SCHEMA = {
    **_inline(Envelope.model_json_schema()),
    "description": "One event; unknown fields are rejected (see the envelope contract).",
}

# OpenAPI description of POST /events, passed to the route decorator (see docs/openapi.json).
POST_EVENTS_OPENAPI: dict[str, Any] = {
    "summary": "Append events to the log",
    "description": 'One envelope, a JSON array of envelopes, or `{"events": [...]}`. The batch '
    "is validated as a whole; `202` only once Kafka acknowledged every event (`acks=all`). "
    "Retrying is always safe: events are deduplicated by `event_id` downstream.",
    "operation_id": "postEvents",
    "tags": ["events"],
    "security": [{"bearerAuth": []}],
    "openapi_extensions": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            _ENVELOPE_SCHEMA,
                            {"type": "array", "items": _ENVELOPE_SCHEMA, "minItems": 1},
                            {
                                "type": "object",
                                "properties": {
                                    "events": {
                                        "type": "array",
                                        "items": _ENVELOPE_SCHEMA,
                                        "minItems": 1,
                                    }
                                },
                                "required": ["events"],
                                "additionalProperties": False,
                            },
                        ]
                    }
                }
            },
        }
    },
    "responses": {
        202: _response("Every event acknowledged by Kafka.", Accepted),
        400: _response(
            "Malformed JSON (`malformed_json`) or invalid events "
            "(`invalid_envelope`, every error listed); nothing produced.",
            ErrorBody,
        ),
        401: _response(
            "Missing or invalid bearer token; the body was not read.",
            ErrorBody,
            **{"WWW-Authenticate": "`Bearer` challenge (RFC 6750)."},
        ),
        413: _response("Body over MAX_BODY_BYTES or batch over MAX_BATCH_EVENTS.", ErrorBody),
        415: _response("Content-Type is not application/json.", ErrorBody),
        500: _response("Unexpected server error (generic body).", ErrorBody),
        503: _response(
            "Kafka did not acknowledge every event in time, or the API tokens could "
            "not be read; retry the whole request.",
            ErrorBody,
            **{"Retry-After": "Seconds to wait before retrying."},
        ),
    },
}
