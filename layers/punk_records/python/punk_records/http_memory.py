"""The HTTP edge of the memory routes: content negotiation (JSON or ``text/markdown``) and the
OpenAPI description of ``GET /memory`` and ``GET /memory/{entry_id}`` (docs/memory.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from punk_records.http_api import ErrorBody, response_doc
from punk_records.http_query import _ERRORS, _parameters
from punk_records.memory_query import MemoryEntryDetail, MemoryListPage, MemoryPage, MemoryQuery

MARKDOWN = "text/markdown; charset=utf-8"


def wants_markdown(headers: Mapping[str, str]) -> bool:
    """Whether the ``Accept`` header asks for ``text/markdown``."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    return any(part.split(";")[0].strip() == "text/markdown" for part in accept.split(","))


def memory_response(page: MemoryPage, markdown: bool) -> Response[str]:
    """``200`` with the page as JSON, or as a MEMORY.md document (next cursor also in the
    ``X-Next-Cursor`` header)."""
    if not markdown:
        return Response(200, content_types.APPLICATION_JSON, page.page().render("entries"))
    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None
    return Response(200, MARKDOWN, page.markdown(), headers=headers)


def entry_response(document: str) -> Response[str]:
    """``200`` with one entry and its audit trail."""
    return Response(200, content_types.APPLICATION_JSON, document)


_FORBIDDEN = response_doc(
    "The token lacks `memory:read` (`missing_scope`) or may not read this workspace "
    "(`workspace_forbidden`).",
    ErrorBody,
)

GET_MEMORY_OPENAPI: dict[str, Any] = {
    "summary": "Read a workspace's memory",
    "description": "Keyset pages of memory entries ordered by (`key`, `entry_id`); follow "
    "`next_cursor` with the same filters. With `Accept: text/markdown` the page is a MEMORY.md "
    "document: promoted entries (unless `status` says otherwise) grouped by bucket, ephemeral "
    "ones with their expiry. Needs `memory:read` on the workspace.",
    "operation_id": "listMemory",
    "tags": ["memory"],
    "security": [{"bearerAuth": []}],
    "openapi_extensions": {"parameters": _parameters(MemoryQuery)},
    "responses": {
        200: {
            **response_doc("One page of entries.", MemoryListPage),
            "content": {
                "application/json": {"model": MemoryListPage},
                "text/markdown": {"schema": {"type": "string"}},
            },
        },
        400: response_doc("Invalid parameter or cursor.", ErrorBody),
        403: _FORBIDDEN,
        **_ERRORS,
    },
}

GET_MEMORY_ENTRY_OPENAPI: dict[str, Any] = {
    "summary": "Read one memory entry and its audit trail",
    "description": "The entry (null for a candidate whose payload was invalid) and every change "
    "of it: the event that caused it, from/to status, when, by which satellite, why. Needs "
    "`memory:read` on its workspace.",
    "operation_id": "getMemoryEntry",
    "tags": ["memory"],
    "security": [{"bearerAuth": []}],
    "responses": {
        200: response_doc("The entry and its history.", MemoryEntryDetail),
        400: response_doc("`entry_id` is not a UUID (`invalid_query`).", ErrorBody),
        403: _FORBIDDEN,
        404: response_doc("No entry has this id (`not_found`).", ErrorBody),
        **_ERRORS,
    },
}
