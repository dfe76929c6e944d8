"""The read API's use cases: list events, fetch one event, list dead letters.

Each takes the caller's :class:`~punk_records.tokens.Token`, the query parameters as sent
(name -> every value) and a :class:`Reader`; it checks the scope, then the parameters, then the
workspace, and returns a page. Pages are keyset pages ordered by (``ts``, ``event_id``) (dead
letters by (``received_at``, ``id``)) with an opaque cursor bound to the query
(:mod:`punk_records.cursor`); there is no ``OFFSET`` and no total count, so every page costs
the same however deep the client reads. Nothing here knows HTTP or SQL.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar
from uuid import UUID

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from punk_records.cursor import CursorCodec
from punk_records.envelope import EventType, Identifier, Severity, error_list
from punk_records.errors import InvalidQuery, NotFound, PunkRecordsError
from punk_records.observability import logger, metrics
from punk_records.redaction import redact
from punk_records.tokens import Scope, Token

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# A dead letter's preview: enough to see what went wrong, bounded so a page stays small.
PREVIEW_CHARS = 2_048
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_POSITION = struct.Struct(">q16s")  # ts in microseconds since the epoch, event_id
_LETTER_POSITION = struct.Struct(">qq")  # received_at in microseconds, id


def _iso_only(value: Any) -> Any:
    # pydantic would read "1700000000" as Unix time; the API speaks ISO-8601 only.
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "").isdigit():
        raise ValueError("expected an ISO-8601 timestamp, e.g. 2026-11-26T06:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_only)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 has no UTC time
        raise ValueError("the timestamp is out of range in UTC") from None


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size (1-500).")
    cursor: str | None = Field(
        default=None,
        max_length=256,
        description="`next_cursor` of the previous page of this same query.",
    )
    since: Timestamp | None = Field(
        default=None, description="Inclusive lower bound (ISO-8601; without offset: UTC)."
    )

    @field_validator("since", "until", mode="after", check_fields=False)
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    def fingerprint(self) -> bytes:
        """The query's canonical form without paging: what a cursor is bound to."""
        fields = self.model_dump(mode="json", exclude={"limit", "cursor"})
        return json.dumps([type(self).__name__, fields], sort_keys=True).encode()


class EventQuery(_Query):
    """``GET /events`` parameters. ``type`` may repeat (or hold a comma-separated list)."""

    workspace_id: Identifier = Field(description="The workspace to read (required).")
    type: list[EventType] = Field(
        default_factory=list, description="Event types to include (repeatable); default all."
    )
    satellite_id: Identifier | None = Field(default=None, description="Only this satellite.")
    trace_id: UUID | None = Field(default=None, description="Only this trace.")
    severity: Severity | None = Field(default=None, description="Only this severity.")
    until: Timestamp | None = Field(default=None, description="Exclusive upper bound on `ts`.")

    @field_validator("type", mode="after")
    @classmethod
    def _canonical_types(cls, value: list[EventType]) -> list[EventType]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _ordered_bounds(self) -> EventQuery:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self


class DeadLetterQuery(_Query):
    """``GET /dead-letters`` parameters; ``since`` bounds ``received_at``."""

    topic: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9._-]{1,249}$",
        description="Only records of this Kafka topic.",
    )


# (parameter name -> every value it was given) as parsed from a query string.
Params = Mapping[str, Sequence[str]]
_REPEATABLE = {"type"}
Q = TypeVar("Q", bound=BaseModel)


def parse_query(model: type[Q], params: Params) -> Q:
    """Validate ``params`` into ``model``; raise InvalidQuery listing every problem."""
    data: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, values in params.items():
        if name in _REPEATABLE:
            data[name] = [part.strip() for value in values for part in value.split(",")]
        elif len(values) > 1:
            errors.append(
                {"loc": ["query", name], "msg": "given more than once", "type": "repeated"}
            )
        else:
            data[name] = values[0]
    try:
        query = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidQuery(errors + error_list(exc, ("query",))) from None
    if errors:
        raise InvalidQuery(errors)
    return query


# One event as the reader returns it: (its JSON text, ts, event_id), the last two being its
# keyset position. A plain tuple, exactly as the driver fetched it: a page is 100+ rows and
# only the last one's position is ever read, so nothing is copied into per-row objects.
EventRow = tuple[str, datetime, UUID]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One dead letter as stored."""

    id: int
    topic: str
    partition: int
    offset: int
    error: str
    received_at: datetime
    value: bytes | None
    key: bytes | None


class Reader(Protocol):
    """What the read API needs from the event store (read-only)."""

    def events(
        self, query: EventQuery, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[EventRow]:
        """Up to ``limit`` events matching ``query`` after ``after``, ordered by (ts, event_id)."""
        ...

    def event(self, event_id: UUID) -> tuple[str, str] | None:
        """(workspace_id, JSON text) of one event, or None."""
        ...

    def dead_letters(
        self,
        query: DeadLetterQuery,
        keys: frozenset[bytes] | None,
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[DeadLetterRow]:
        """Up to ``limit`` dead letters after ``after`` by (received_at, id); ``keys`` limits
        them to records with one of these Kafka keys (None: all)."""
        ...


@dataclass(frozen=True, slots=True)
class Page:
    """One page: the items' JSON texts and the cursor of the next page (None on the last)."""

    items: list[str]
    next_cursor: str | None

    def render(self, key: str) -> str:
        """``{"<key>": [...], "next_cursor": ...}``, the items spliced in as rendered."""
        return f'{{"{key}":[{",".join(self.items)}],"next_cursor":{json.dumps(self.next_cursor)}}}'


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


@contextmanager
def _request(route: str, token: Token, **fields: Any) -> Iterator[dict[str, Any]]:
    """One log line per read request, with the token's id (never the token) and the outcome."""
    started = time.perf_counter()
    record: dict[str, Any] = {"route": route, "token_id": token.id, **fields}
    try:
        yield record
    except PunkRecordsError as exc:
        record["outcome"] = "rejected" if exc.status < 500 else "error"
        record["reason"] = exc.code
        raise
    except Exception as exc:
        record["outcome"], record["reason"] = "error", type(exc).__name__
        raise
    else:
        record["outcome"] = "served"
    finally:
        record["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        logger.info("query request", extra=record)
        metrics.add_metric(
            name="QueryLatency", unit=MetricUnit.Milliseconds, value=record["latency_ms"]
        )


def list_events(token: Token, params: Params, reader: Reader, cursors: CursorCodec) -> Page:
    """``GET /events``: one page of the workspace's events matching the filters.

    Raise MissingScope (no ``events:read``), InvalidQuery, WorkspaceForbidden, InvalidCursor;
    StoreUnavailable when PostgreSQL cannot answer.
    """
    with _request("GET /events", token) as log:
        token.require_scope(Scope.EVENTS_READ)
        query = parse_query(EventQuery, params)
        log["workspace_id"] = query.workspace_id
        token.require_workspace(query.workspace_id)
        fingerprint = query.fingerprint()
        after = None
        if query.cursor:
            micros, raw_id = _EVENT_POSITION.unpack(
                cursors.decode(query.cursor, fingerprint, _EVENT_POSITION.size)
            )
            after = (_from_micros(micros), UUID(bytes=raw_id))
        rows = reader.events(query, after, query.limit + 1)
        next_cursor = None
        if len(rows) > query.limit:
            del rows[query.limit :]
            _, ts, event_id = rows[-1]
            position = _EVENT_POSITION.pack(_micros(ts), event_id.bytes)
            next_cursor = cursors.encode(fingerprint, position)
        log["count"] = len(rows)
        return Page([row[0] for row in rows], next_cursor)


def path_uuid(name: str, value: str) -> UUID:
    """The UUID in path parameter ``name``; raise InvalidQuery (400) when it is not one."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidQuery(
            [{"loc": ["path", name], "msg": "must be a UUID", "type": "uuid_parsing"}]
        ) from None


def get_event(token: Token, event_id: str, reader: Reader) -> str:
    """``GET /events/{event_id}``: the event as stored, as JSON text.

    Raise MissingScope, InvalidQuery (not a UUID), NotFound, WorkspaceForbidden.
    """
    with _request("GET /events/{event_id}", token) as log:
        token.require_scope(Scope.EVENTS_READ)
        key = path_uuid("event_id", event_id)
        found = reader.event(key)
        if found is None:
            raise NotFound(f"no event has the id {key}")
        workspace, document = found
        log["workspace_id"] = workspace
        token.require_workspace(workspace)
        return document


class KafkaCoordinates(BaseModel):
    """Where the consumer read the event."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    partition: int
    offset: int


class EventView(BaseModel):
    """One event as stored: the envelope's fields (payload already redacted), where it was read
    from in Kafka, and when PostgreSQL received it. The reader renders exactly this shape."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID
    ts: datetime = Field(description="UTC, microseconds, e.g. 2026-11-26T04:00:00.000000Z.")
    workspace_id: str
    satellite_id: str
    trace_id: UUID
    type: EventType
    severity: Severity
    confidence: float
    payload: dict[str, Any] = Field(description="The payload as stored: secrets redacted.")
    kafka: KafkaCoordinates | None = Field(description="None for rows not read from Kafka.")
    received_at: datetime = Field(description="When the row was committed (UTC).")


class EventPage(BaseModel):
    """One page of ``GET /events``."""

    events: list[EventView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (same filters) for the next page; null on the last page."
    )


class DeadLetterView(BaseModel):
    """A record that could never become an event, as ``GET /dead-letters`` shows it."""

    id: int = Field(description="Position in the dead-letter table.")
    reason: str = Field(description="Why the record was rejected.")
    topic: str
    partition: int
    offset: int
    received_at: datetime
    key: str | None = Field(description="The Kafka key as UTF-8 (the workspace), if any.")
    value_base64: str | None = Field(
        description="The record's raw bytes, base64: exactly what was in Kafka, secrets "
        "included (which is why this route needs its own scope)."
    )
    preview: str | None = Field(
        description=f"The value as UTF-8 with secrets redacted, at most {PREVIEW_CHARS} characters."
    )
    preview_truncated: bool = Field(description="Whether the preview was cut.")


class DeadLetterPage(BaseModel):
    """One page of ``GET /dead-letters``."""

    dead_letters: list[DeadLetterView]
    next_cursor: str | None = Field(description="As for events; null on the last page.")


def preview(value: bytes | None) -> tuple[str | None, bool]:
    """A readable, redacted rendering of a raw value and whether it was cut.

    JSON is redacted as a document (secret-named keys too), anything else as text. Redaction
    runs on the whole value before the cut, so a secret cannot survive by straddling it.
    """
    if value is None:
        return None, False
    text = value.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        clean = str(redact(text))
    else:
        clean = json.dumps(redact(document), ensure_ascii=False)
    return clean[:PREVIEW_CHARS], len(clean) > PREVIEW_CHARS


def _view(row: DeadLetterRow) -> DeadLetterView:
    text, cut = preview(row.value)
    return DeadLetterView(
        id=row.id,
        reason=row.error,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        received_at=row.received_at,
        key=None if row.key is None else row.key.decode("utf-8", errors="replace"),
        value_base64=None if row.value is None else base64.b64encode(row.value).decode(),
        preview=text,
        preview_truncated=cut,
    )


def list_dead_letters(token: Token, params: Params, reader: Reader, cursors: CursorCodec) -> Page:
    """``GET /dead-letters``: one page of dead letters, previews redacted.

    A token limited to some workspaces sees the dead letters keyed by one of them (ingest
    keys every record by its workspace); a ``*`` token sees all. Raise MissingScope (no
    ``dead_letters:read``), InvalidQuery, InvalidCursor, StoreUnavailable.
    """
    with _request("GET /dead-letters", token) as log:
        token.require_scope(Scope.DEAD_LETTERS_READ)
        query = parse_query(DeadLetterQuery, params)
        keys = None
        if not token.all_workspaces:
            keys = frozenset(ws.encode() for ws in token.workspaces)
        # Bound to the token's workspaces too: a cursor cannot widen what another token sees.
        fingerprint = query.fingerprint() + b"|" + b",".join(sorted(keys or [b"*"]))
        after = None
        if query.cursor:
            micros, letter_id = _LETTER_POSITION.unpack(
                cursors.decode(query.cursor, fingerprint, _LETTER_POSITION.size)
            )
            after = (_from_micros(micros), letter_id)
        rows = reader.dead_letters(query, keys, after, query.limit + 1)
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            position = _LETTER_POSITION.pack(_micros(last.received_at), last.id)
            next_cursor = cursors.encode(fingerprint, position)
        log["count"] = len(rows)
        return Page([_view(row).model_dump_json() for row in rows], next_cursor)
