"""Ingest function: ``POST /events`` and ``GET /health`` behind an API Gateway HTTP API (2.0).

Plain routes without Powertools' request validation: the token must be checked before the body
is read, and a ``400`` lists every error in our own format (docs/ingest.md, "Design notes").
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from punk_records.auth import Unauthorized
from punk_records.errors import InvalidEnvelope, ProduceError, PunkRecordsError, SecretUnavailable
from punk_records.health import GET_HEALTH_OPENAPI, check_health
from punk_records.ingest import (
    POST_EVENTS_OPENAPI,
    RETRY_AFTER_S,
    ErrorBody,
    IngestRequest,
    MalformedJson,
    TooLarge,
    UnsupportedMediaType,
    accept_events,
    error_body,
)
from punk_records.observability import logger, metrics, tracer

app = APIGatewayHttpResolver()
app.configure_openapi(
    title="Punk Records ingest API",
    version="1.0.0",
    description="Append-only event log for AI agents. See docs/ingest.md.",
    # A plain dict, validated when the document is rendered: importing Powertools' OpenAPI
    # models for HTTPBearer would add ~100 ms to every cold start for a document never served.
    security_schemes={
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the API tokens (docs/ingest.md)",
        }
    },  # type: ignore[dict-item]
)

# Error type -> HTTP status; anything else is a server fault (500 with a generic body).
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthorized, 401),
    (InvalidEnvelope, 400),
    (MalformedJson, 400),
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (ProduceError, 503),
    (SecretUnavailable, 503),
)


@app.post("/events", **POST_EVENTS_OPENAPI)
def post_events() -> Response[str]:
    event = app.current_event
    request = IngestRequest(
        headers=event.headers,
        body=event.body,
        base64_encoded=event.is_base64_encoded,
        request_id=event.request_context.request_id,
    )
    return _json(202, accept_events(request).model_dump_json())


@app.get("/health", **GET_HEALTH_OPENAPI)
def get_health() -> Response[str]:
    report = check_health()
    return _json(200 if report.ok else 503, report.model_dump_json())


@app.exception_handler(PunkRecordsError)
def on_error(exc: PunkRecordsError) -> Response[str]:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = exc.challenge
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return _json(status, error_body(exc).model_dump_json(exclude_none=True), headers)


@app.exception_handler(ServiceError)
def on_routing_error(exc: ServiceError) -> Response[str]:
    # Powertools' own errors (no such route: 404), in our error format.
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return _json(exc.status_code, ErrorBody(error=code, message=str(exc.msg)).model_dump_json())


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error", extra={"error": type(exc).__name__})
    return _json(500, error_body(exc).model_dump_json(exclude_none=True))


def _json(status: int, body: str, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, body, headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
