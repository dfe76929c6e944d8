"""The event envelope: the one contract between satellites, Kafka and PostgreSQL."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from punk_records.errors import InvalidEnvelope
from punk_records.redaction import FirstMatch, credential_family, redact_if_needed

SUPPORTED_SCHEMA_VERSIONS = (1,)
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
# Deeper payloads would exhaust the stack of the JSON encoder and of redaction.
MAX_PAYLOAD_DEPTH = 64
CONTENT_TYPE = b"application/json"

# Characters PostgreSQL text/jsonb cannot hold (NUL) or UTF-8 cannot encode (lone surrogates).
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")
# For JSON text Python's json module parsed with NaN and Infinity refused: a NUL or a lone
# surrogate can only come from an escape, as raw control characters are invalid JSON.
_RISKY_TEXT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class EventType(StrEnum):
    """The nine event types, ``namespace.action``."""

    PROPOSAL_CREATED = "proposal.created"
    DECISION_RECORDED = "decision.recorded"
    RISK_DETECTED = "risk.detected"
    FINDING_LOGGED = "finding.logged"
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    MEMORY_CANDIDATE = "memory.candidate"
    MEMORY_PROMOTED = "memory.promoted"
    MEMORY_RETRACTED = "memory.retracted"


class Severity(StrEnum):
    """How much attention an event asks for."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def _storable_text(value: str) -> str:
    if _UNSTORABLE_CHARS.search(value):
        raise PydanticCustomError("unstorable", "contains a NUL character or a lone surrogate")
    return value


# What "trimming" removes from an identifier: ASCII blanks, the same set the published pattern
# names (Python's own str.strip() would also take characters JSON Schema's \s leaves alone).
_BLANKS = " \t\n\r\x0b\x0c"
_B = "[ \\t\\n\\r\\x0b\\x0c]"
_NOT_B = "[^ \\t\\n\\r\\x0b\\x0c\\x00]"
IDENTIFIER_MAX_CHARS = 128
# 1 to 128 characters once trimmed, no NUL: the validator's rule, as a JSON Schema pattern.
IDENTIFIER_PATTERN = f"^{_B}*{_NOT_B}(?:[^\\x00]{{0,{IDENTIFIER_MAX_CHARS - 2}}}{_NOT_B})?{_B}*$"


def _identifier(value: str) -> str:
    value = value.strip(_BLANKS)
    if not value:
        raise PydanticCustomError("string_too_short", "String should have at least 1 character")
    if len(value) > IDENTIFIER_MAX_CHARS:
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters",
            {"max_length": IDENTIFIER_MAX_CHARS},
        )
    return _storable_text(value)


Identifier = Annotated[
    str,
    AfterValidator(_identifier),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": IDENTIFIER_PATTERN,
            "description": f"1 to {IDENTIFIER_MAX_CHARS} characters once leading and trailing "
            "blanks (space, tab, CR, LF, VT, FF) are trimmed; no NUL; not a credential (a "
            "token or key the redaction recognises is refused: identifiers are stored verbatim).",
        }
    ),
]


def _payload_problem(payload: dict[str, Any]) -> PydanticCustomError | None:
    """Why ``payload`` cannot travel as JSON into PostgreSQL, or None.

    Iterative, so a hostile payload cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_PAYLOAD_DEPTH:
                return PydanticCustomError(
                    "too_deep", "payload is nested more than {limit} levels deep",
                    {"limit": MAX_PAYLOAD_DEPTH},
                )  # fmt: skip
            if isinstance(node, dict):
                stack.extend((key, depth) for key in node)
                node = node.values()
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            if _UNSTORABLE_CHARS.search(node):
                return PydanticCustomError(
                    "unstorable", "contains a NUL character or a lone surrogate"
                )
        elif isinstance(node, float) and not math.isfinite(node):
            return PydanticCustomError("finite_number", "holds NaN or Infinity, which JSON forbids")
    return None


class Envelope(BaseModel):
    """One event. Unknown fields are rejected; ``ts`` is normalised to UTC.

    Validate with :func:`parse_event` / :func:`parse_batch` (JSON-like input) or
    :func:`decode` (Kafka bytes). Size limits are not the model's: they hold on the redacted,
    canonical form, which :func:`punk_records.acceptance.accept` checks.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID
    schema_version: Annotated[
        StrictInt,
        Field(
            json_schema_extra={"const": SUPPORTED_SCHEMA_VERSIONS[0]},
            description="Only 1 is supported.",
        ),
    ]
    ts: Annotated[
        datetime,
        Field(description="ISO-8601 timestamp; without an offset it is taken as UTC."),
    ]
    workspace_id: Annotated[Identifier, Field(description="The Kafka partition key.")]
    satellite_id: Identifier
    trace_id: UUID
    type: EventType
    severity: Severity
    confidence: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Any JSON object, nested at most {MAX_PAYLOAD_DEPTH} levels, no NUL "
        "character. Secrets are redacted; once redacted and serialised it must fit "
        "MAX_PAYLOAD_BYTES (default 262144).",
    )

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
            raise ValueError(f"schema_version {value} is not supported; supported: {supported}")
        return value

    @field_validator("workspace_id", "satellite_id")
    @classmethod
    def _not_a_credential(cls, value: str) -> str:
        # Identifiers travel verbatim (Kafka key, indexed columns): they cannot be redacted
        # without breaking ordering and lookups, so one that is a credential is refused.
        family = credential_family(value)
        if family is not None:
            raise PydanticCustomError(
                "credential",
                "looks like a credential ({family}); identifiers are stored verbatim, "
                "so send an id that is not a secret",
                {"family": family},
            )
        return value

    @field_validator("ts", mode="before")
    @classmethod
    def _iso_string(cls, value: Any) -> Any:
        # pydantic would also take a number as Unix time; the contract says ISO-8601 only.
        if not isinstance(value, str | datetime):
            raise ValueError("ts must be an ISO-8601 timestamp string")
        return value

    @field_validator("ts")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00:00+14:00 is a valid ISO-8601 time before year 1 in UTC. pydantic
            # turns only ValueError into a validation error: this one would escape as a 500
            # at ingest and fail every retry of a consumer batch.
            raise PydanticCustomError(
                "datetime_out_of_range", "ts is outside years 1 to 9999 once converted to UTC"
            ) from None

    @field_validator("payload")
    @classmethod
    def _storable(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not (info.context or {}).get("plain_json"):
            problem = _payload_problem(value)
            if problem is not None:
                raise problem
        return value

    def redacted(self, flagged: bytes | None = None) -> Envelope:
        """This envelope with secrets removed from ``payload`` (idempotent); itself when there
        is nothing to remove. ``flagged``: the payload's compact JSON, already found not clean
        (see :func:`~punk_records.redaction.redact_if_needed`)."""
        clean = redact_if_needed(self.payload, flagged)
        if clean is None or clean == self.payload:
            return self
        return self.model_copy(update={"payload": clean})

    def kafka_key(self) -> bytes:
        """Partition key: ``workspace_id`` in UTF-8, so each workspace stays in order."""
        return self.workspace_id.encode()

    def kafka_value(self) -> bytes:
        """Canonical compact UTF-8 JSON, fields in contract order, ``ts`` in UTC."""
        return self.model_dump_json().encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Record headers per the design: ids and type for routing without decoding."""
        return [
            ("event_id", str(self.event_id).encode()),
            ("trace_id", str(self.trace_id).encode()),
            ("type", self.type.value.encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("content-type", CONTENT_TYPE),
        ]


def error_list(exc: ValidationError, prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """Turn a pydantic error into ``[{loc, msg, type}]``; the input is never echoed back."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def plain_json(text: str, document: Any) -> bool:
    """True when no payload in ``document``, parsed from ``text`` by ``json.loads`` with NaN
    and Infinity refused, can hold what validation walks every payload for (a NUL, a lone
    surrogate, nesting over MAX_PAYLOAD_DEPTH), so the walk can be skipped: pass the result as
    ``plain_json`` to :func:`parse_event` / :func:`parse_batch`.

    Much cheaper than that walk: one regex over the text, and a walk over containers only.
    Conservative: depth counts from the document's root, and an escaped backslash before
    ``u0000`` only costs the full walk.
    """
    if _RISKY_TEXT.search(text):
        return False
    # Level by level, one list comprehension per container: half the time of a stack of
    # (node, depth) pairs. json.loads builds exact dicts and lists, hence ``type(...) is``.
    level = [document] if type(document) is dict or type(document) is list else []
    depth = 1
    while level:
        if depth > MAX_PAYLOAD_DEPTH:
            return False
        below: list[Any] = []
        for node in level:
            below += [
                child
                for child in (node.values() if type(node) is dict else node)
                if type(child) is dict or type(child) is list
            ]
        level = below
        depth += 1
    return True


def parse_event(data: Any, plain_json: bool = False) -> Envelope:
    """Validate one JSON-like object; raise InvalidEnvelope with every error.

    ``plain_json`` says the object comes from text that :func:`plain_json` cleared.
    """
    try:
        return Envelope.model_validate(data, context={"plain_json": plain_json})
    except ValidationError as exc:
        raise InvalidEnvelope(error_list(exc)) from None


def parse_batch(items: Iterable[Any], plain_json: bool = False) -> list[Envelope]:
    """Validate a batch as a whole: any bad item raises InvalidEnvelope listing every error,
    each ``loc`` starting with the item's index."""
    envelopes: list[Envelope] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            envelopes.append(parse_event(item, plain_json))
        except InvalidEnvelope as exc:
            errors.extend({**err, "loc": [index, *err["loc"]]} for err in exc.errors)
    if errors:
        raise InvalidEnvelope(errors)
    return envelopes


# In raw JSON, the only spellings that can produce what the payload walk looks for besides
# depth: an escaped NUL, NaN, Infinity. A lone surrogate escape is refused by the parser itself.
_UNUSUAL_JSON = (rb"\\u0000", rb"NaN", rb"Infinity")
_unusual_json: FirstMatch | None = None


def _holds_unusual_json(value: bytes) -> bool:
    """Whether raw JSON ``value`` may hold an escaped NUL, NaN or Infinity.

    One Hyperscan pass over the bytes (compiled on first use, about 4 ms): 0.6 us for a
    1.3 KB record where three ``in`` tests took 2.6.
    """
    global _unusual_json
    if _unusual_json is None:
        _unusual_json = FirstMatch(_UNUSUAL_JSON)
    return _unusual_json.found_in(value)


def decode(value: bytes) -> Envelope:
    """Validate a Kafka record value (UTF-8 JSON bytes); raise InvalidEnvelope.

    Bytes that are not UTF-8 or not JSON are reported as an error of type ``json_invalid``.
    """
    context = {
        "plain_json": value.count(b"{") + value.count(b"[") <= MAX_PAYLOAD_DEPTH
        and not _holds_unusual_json(value)
    }
    try:
        return Envelope.model_validate_json(value, context=context)
    except ValidationError as exc:
        raise InvalidEnvelope(error_list(exc)) from None
