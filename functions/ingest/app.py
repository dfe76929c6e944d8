"""Ingest function: ``POST /events`` and ``GET /health`` behind an API Gateway HTTP API (2.0).

Plain routes without Powertools' request validation: the token must be checked before the body
is read, and a ``400`` lists every error in our own format (docs/ingest.md, "Design notes").
Every error, ours or Powertools', is rendered by ``punk_records.http_api``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

# Loaded at init, not by the first POST: every POST needs kafka-python.
import punk_records.producer  # noqa: F401
from punk_records import http_api
from punk_records.bootstrap import container
from punk_records.ingest import accept_events, request_log, writer
from punk_records.observability import logger, metrics, tracer

app = APIGatewayHttpResolver()
app.configure_openapi(
    title="Punk Records ingest API",
    version="1.0.0",
    description="Append-only event log for AI agents. See docs/ingest.md.",
    security_schemes=http_api.SECURITY_SCHEMES,
)


@app.post("/events", **http_api.POST_EVENTS_OPENAPI)
def post_events() -> Response[str]:
    event = app.current_event
    with request_log(event.request_context.request_id) as log:
        settings = container.settings()
        token = writer(event.headers, container.tokens(), log)  # before the body is looked at
        document = http_api.read_json(
            event.headers, event.body, bool(event.is_base64_encoded), settings.max_body_bytes
        )
        accepted = accept_events(document, settings, container.producer(), token, log)
    return http_api.json_response(202, accepted)


@app.get("/health", **http_api.GET_HEALTH_OPENAPI)
def get_health() -> Response[str]:
    report = container.health()
    return http_api.json_response(200 if report.ok else 503, report)


http_api.install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
