"""The HTTP edge of the read API: query strings in, JSON pages out, and the OpenAPI description
of ``GET /events``, ``GET /events/{event_id}`` and ``GET /dead-letters``.

Errors are rendered by :mod:`punk_records.http_api` like every other; this module only adds
what reading needs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel

from punk_records.http_api import ErrorBody, inline_refs, response_doc
from punk_records.query import (
    DeadLetterPage,
    DeadLetterQuery,
    EventPage,
    EventQuery,
    EventView,
    Page,
)


def query_params(raw_query_string: str | None) -> dict[str, list[str]]:
    """Every query parameter with all its values, decoded (``a=1&a=2`` gives both).

    The raw query string, not the gateway's ``queryStringParameters``, which joins repeated
    values with commas.
    """
    return parse_qs(raw_query_string or "", keep_blank_values=True)


def page_response(page: Page, key: str) -> Response[str]:
    """``200`` with ``{"<key>": [...], "next_cursor": ...}``."""
    return Response(200, content_types.APPLICATION_JSON, page.render(key))


def event_response(document: str) -> Response[str]:
    """``200`` with one event, as the store rendered it."""
    return Response(200, content_types.APPLICATION_JSON, document)


def _parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters from a query model: one source for validation and docs."""
    schema = inline_refs(model.model_json_schema())
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", "")
        field.pop("title", None)
        # A query string has no null: an optional parameter is simply left out.
        options = [o for o in field.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            field.update(options[0])
        elif options:
            field["anyOf"] = options
        parameter = {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": description,
            "schema": field,
        }
        if field.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return sorted(parameters, key=lambda p: not p["required"])


_ERRORS = {
    401: response_doc(
        "Missing or invalid bearer token.",
        ErrorBody,
        **{"WWW-Authenticate": "`Bearer` challenge (RFC 6750)."},
    ),
    500: response_doc("Unexpected server error (generic body).", ErrorBody),
    503: response_doc(
        "PostgreSQL or the API tokens cannot be reached; retry later.",
        ErrorBody,
        **{"Retry-After": "Seconds to wait before retrying."},
    ),
}

GET_EVENTS_OPENAPI: dict[str, Any] = {
    "summary": "Read a workspace's events",
    "description": "Keyset pages ordered by (`ts`, `event_id`). Filters combine with AND; "
    "`type` may repeat. Follow `next_cursor` (with the same filters) until it is null. No "
    "total count: every page costs the same however deep you read. Needs `events:read` on "
    "the workspace.",
    "operation_id": "listEvents",
    "tags": ["events"],
    "security": [{"bearerAuth": []}],
    "openapi_extensions": {"parameters": _parameters(EventQuery)},
    "responses": {
        200: response_doc("One page of events.", EventPage),
        400: response_doc(
            "A parameter is missing, unknown or invalid (`invalid_query`, each listed), or the "
            "cursor belongs to another query or was altered (`invalid_cursor`).",
            ErrorBody,
        ),
        403: response_doc(
            "The token lacks `events:read` (`missing_scope`) or may not read this workspace "
            "(`workspace_forbidden`).",
            ErrorBody,
        ),
        **_ERRORS,
    },
}

GET_EVENT_OPENAPI: dict[str, Any] = {
    "summary": "Read one event",
    "description": "The event as stored: redacted payload, Kafka coordinates, `received_at`. "
    "Needs `events:read` on its workspace.",
    "operation_id": "getEvent",
    "tags": ["events"],
    "security": [{"bearerAuth": []}],
    "responses": {
        200: response_doc("The event.", EventView),
        400: response_doc("`event_id` is not a UUID (`invalid_query`).", ErrorBody),
        403: response_doc(
            "The token lacks `events:read` or may not read the event's workspace.", ErrorBody
        ),
        404: response_doc("No event has this id (`not_found`).", ErrorBody),
        **_ERRORS,
    },
}

GET_DEAD_LETTERS_OPENAPI: dict[str, Any] = {
    "summary": "Read dead letters",
    "description": "Records the consumer could never turn into events, oldest first: the "
    "reason, where they were in Kafka, the raw value (base64) and a redacted UTF-8 preview. "
    "Needs `dead_letters:read`; a token limited to some workspaces sees the records keyed "
    "by one of them.",
    "operation_id": "listDeadLetters",
    "tags": ["dead letters"],
    "security": [{"bearerAuth": []}],
    "openapi_extensions": {"parameters": _parameters(DeadLetterQuery)},
    "responses": {
        200: response_doc("One page of dead letters.", DeadLetterPage),
        400: response_doc("Invalid parameter or cursor.", ErrorBody),
        403: response_doc("The token lacks `dead_letters:read` (`missing_scope`).", ErrorBody),
        **_ERRORS,
    },
}
