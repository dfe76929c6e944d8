"""Query function: ``GET /events``, ``GET /events/{event_id}``, ``GET /dead-letters``,
``GET /memory`` and ``GET /memory/{entry_id}`` behind the same HTTP API as ingest, on a
PostgreSQL login that can only ``SELECT`` (docs/query.md, docs/memory.md).

Each route authenticates the bearer token, calls one use case of ``punk_records.query`` and
returns its page; every error is rendered by ``punk_records.http_api``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

# Loaded at init, not by the first request: every read needs psycopg.
import punk_records.read_store  # noqa: F401
from punk_records import http_api, http_memory, http_query
from punk_records.auth import authorize
from punk_records.bootstrap import container
from punk_records.memory_query import get_memory_entry as get_memory_entry_use_case
from punk_records.memory_query import list_memory
from punk_records.observability import logger, metrics, tracer
from punk_records.query import get_event, list_dead_letters, list_events

app = APIGatewayHttpResolver()
app.configure_openapi(
    title="Punk Records query API",
    version="1.0.0",
    description="Read back the event log. See docs/query.md.",
    security_schemes=http_api.SECURITY_SCHEMES,
)


@app.get("/events", **http_query.GET_EVENTS_OPENAPI)
def get_events() -> Response[str]:
    event = app.current_event
    token = authorize(event.headers, container.tokens())
    params = http_query.query_params(event.raw_query_string)
    page = list_events(token, params, container.reader(), container.cursors())
    return http_query.page_response(page, "events")


@app.get("/events/<event_id>", **http_query.GET_EVENT_OPENAPI)
def get_one_event(event_id: str) -> Response[str]:
    token = authorize(app.current_event.headers, container.tokens())
    return http_query.event_response(get_event(token, event_id, container.reader()))


@app.get("/dead-letters", **http_query.GET_DEAD_LETTERS_OPENAPI)
def get_dead_letters() -> Response[str]:
    event = app.current_event
    token = authorize(event.headers, container.tokens())
    params = http_query.query_params(event.raw_query_string)
    page = list_dead_letters(token, params, container.reader(), container.cursors())
    return http_query.page_response(page, "dead_letters")


@app.get("/memory", **http_memory.GET_MEMORY_OPENAPI)
def get_memory() -> Response[str]:
    event = app.current_event
    token = authorize(event.headers, container.tokens())
    params = http_query.query_params(event.raw_query_string)
    markdown = http_memory.wants_markdown(event.headers)
    page = list_memory(token, params, container.memory_reader(), container.cursors(), markdown)
    return http_memory.memory_response(page, markdown)


@app.get("/memory/<entry_id>", **http_memory.GET_MEMORY_ENTRY_OPENAPI)
def get_memory_entry(entry_id: str) -> Response[str]:
    token = authorize(app.current_event.headers, container.tokens())
    return http_memory.entry_response(
        get_memory_entry_use_case(token, entry_id, container.memory_reader())
    )


http_api.install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
