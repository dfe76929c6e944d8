"""The memory read routes' use cases: ``GET /memory`` (JSON or a MEMORY.md document) and
``GET /memory/{entry_id}`` with its audit trail. Scope ``memory:read`` on the workspace.

Pages are keyset pages ordered by (``key``, ``entry_id``) with a cursor bound to the query
(:mod:`punk_records.cursor`), as the other read routes. Nothing here knows HTTP or SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from punk_records.cursor import CursorCodec
from punk_records.envelope import Identifier
from punk_records.errors import NotFound
from punk_records.memory import MAX_KEY_CHARS, Bucket, Status
from punk_records.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    Params,
    _request,
    parse_query,
    path_uuid,
)
from punk_records.tokens import Scope, Token

_POSITION_BYTES = 16  # the entry_id of the page's last entry


class MemoryQuery(BaseModel):
    """``GET /memory`` parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_id: Identifier = Field(description="The workspace to read (required).")
    bucket: Bucket | None = Field(default=None, description="Only this bucket.")
    status: Status | None = Field(
        default=None,
        description="Only this status. Default: candidate and promoted entries (JSON), "
        "promoted entries (markdown); ask for `retracted` to see those.",
    )
    key: str | None = Field(
        default=None, min_length=1, max_length=MAX_KEY_CHARS, description="Key prefix."
    )
    include_expired: bool = Field(
        default=False, description="Include ephemeral entries whose TTL has passed."
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size (1-500).")
    cursor: str | None = Field(
        default=None, max_length=256, description="`next_cursor` of the previous page."
    )

    def fingerprint(self, markdown: bool) -> bytes:
        """The query's canonical form without paging: what a cursor is bound to."""
        fields = self.model_dump(mode="json", exclude={"limit", "cursor"})
        return json.dumps(["MemoryQuery", markdown, fields], sort_keys=True).encode()

    def statuses(self, markdown: bool) -> tuple[Status, ...]:
        """The statuses listed."""
        if self.status is not None:
            return (self.status,)
        return (Status.PROMOTED,) if markdown else (Status.CANDIDATE, Status.PROMOTED)


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """One entry as the reader renders it: its JSON text and what MEMORY.md shows."""

    json: str
    entry_id: UUID
    key: str
    bucket: str
    status: str
    value_json: str
    confidence: float
    expires_at: datetime | None


class MemoryReader(Protocol):
    """What the memory routes need from the store (read-only)."""

    def entries(
        self, query: MemoryQuery, statuses: tuple[Status, ...], after: UUID | None, limit: int
    ) -> list[MemoryRow]:
        """Up to ``limit`` entries after the entry ``after``, ordered by (key, entry_id)."""
        ...

    def entry(self, entry_id: UUID) -> tuple[str, str | None, str] | None:
        """(workspace_id, entry JSON or None, audit rows JSON array) or None."""
        ...


@dataclass(frozen=True, slots=True)
class MemoryPage:
    """One page of entries and the cursor of the next one."""

    workspace_id: str
    rows: list[MemoryRow]
    next_cursor: str | None

    def page(self) -> Page:
        return Page([row.json for row in self.rows], self.next_cursor)

    def markdown(self) -> str:
        """A MEMORY.md document: entries grouped by bucket, ephemeral ones with their expiry."""
        lines = [f"# Memory of {self.workspace_id}", ""]
        for bucket in Bucket:
            rows = [row for row in self.rows if row.bucket == bucket.value]
            if not rows:
                continue
            lines += [f"## {bucket.value.capitalize()}", ""]
            for row in rows:
                line = f"- {_code(row.key)}: {_code(row.value_json)}"
                notes = [f"confidence {row.confidence:g}"]
                if row.status != Status.PROMOTED.value:
                    notes.insert(0, row.status)
                if row.expires_at is not None:
                    notes.append(f"expires {row.expires_at.isoformat().replace('+00:00', 'Z')}")
                lines.append(f"{line} ({', '.join(notes)})")
            lines.append("")
        if not self.rows:
            lines += ["_No entries._", ""]
        if self.next_cursor:
            lines += [f"<!-- next_cursor: {self.next_cursor} -->", ""]
        return "\n".join(lines)


def _code(text: str) -> str:
    """``text`` as a markdown code span, whatever backticks it holds."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace(chr(10), ' ')}{pad}{fence}"


def list_memory(
    token: Token, params: Params, reader: MemoryReader, cursors: CursorCodec, markdown: bool
) -> MemoryPage:
    """``GET /memory``: one page of the workspace's entries.

    Raise MissingScope (no ``memory:read``), InvalidQuery, WorkspaceForbidden, InvalidCursor;
    StoreUnavailable when PostgreSQL cannot answer.
    """
    with _request("GET /memory", token, markdown=markdown) as log:
        token.require_scope(Scope.MEMORY_READ)
        query = parse_query(MemoryQuery, params)
        log["workspace_id"] = query.workspace_id
        token.require_workspace(query.workspace_id)
        fingerprint = query.fingerprint(markdown)
        after = None
        if query.cursor:
            after = UUID(bytes=cursors.decode(query.cursor, fingerprint, _POSITION_BYTES))
        rows = reader.entries(query, query.statuses(markdown), after, query.limit + 1)
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            next_cursor = cursors.encode(fingerprint, rows[-1].entry_id.bytes)
        log["count"] = len(rows)
        return MemoryPage(query.workspace_id, rows, next_cursor)


def get_memory_entry(token: Token, entry_id: str, reader: MemoryReader) -> str:
    """``GET /memory/{entry_id}``: ``{"entry": {...} | null, "history": [...]}`` as JSON text;
    ``entry`` is null for a candidate whose payload was invalid (its history says why).

    Raise MissingScope, InvalidQuery (not a UUID), NotFound, WorkspaceForbidden.
    """
    with _request("GET /memory/{entry_id}", token) as log:
        token.require_scope(Scope.MEMORY_READ)
        key = path_uuid("entry_id", entry_id)
        found = reader.entry(key)
        if found is None:
            raise NotFound(f"no memory entry has the id {key}")
        workspace, entry, history = found
        log["workspace_id"] = workspace
        token.require_workspace(workspace)
        return f'{{"entry":{entry or "null"},"history":{history}}}'


class MemoryEntryView(BaseModel):
    """One memory entry as the API returns it."""

    entry_id: UUID = Field(description="The event_id of the memory.candidate that created it.")
    workspace_id: str
    key: str
    value: dict[str, Any]
    bucket: Bucket
    status: Status
    confidence: float
    trace_id: UUID
    satellite_id: str = Field(description="The satellite that proposed it.")
    created_at: datetime = Field(description="The candidate's ts.")
    updated_at: datetime = Field(description="The ts of the last change of status.")
    expires_at: datetime | None = Field(description="Ephemeral entries: ts + ttl_hours.")
    expired: bool
    last_event_id: UUID = Field(description="The event that made the last change.")


class MemoryChangeView(BaseModel):
    """One row of an entry's audit trail."""

    event_id: UUID = Field(description="The event that caused it.")
    action: str = Field(description="created, promoted, retracted, refused or invalid.")
    from_status: Status | None
    to_status: Status | None
    at: datetime = Field(description="The event's ts.")
    satellite_id: str
    reason: str | None


class MemoryListPage(BaseModel):
    """``GET /memory`` (JSON)."""

    entries: list[MemoryEntryView]
    next_cursor: str | None


class MemoryEntryDetail(BaseModel):
    """``GET /memory/{entry_id}``."""

    entry: MemoryEntryView | None = Field(description="Null when the candidate was invalid.")
    history: list[MemoryChangeView] = Field(description="Ordered by (at, event_id).")
