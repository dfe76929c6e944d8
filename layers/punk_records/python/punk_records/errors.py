"""Error hierarchy of punk_records: every error says whether retrying can help, and what it means
to a client: ``status`` (the HTTP status), ``code`` (the ``error`` field and the metric
dimension) and, for server-side failures, the fixed ``public_message`` a client sees instead of
the exception text (which may name hosts or variables). The HTTP edge renders every error from
these attributes alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class PunkRecordsError(Exception):
    """Base class. ``retriable`` tells callers whether the same input may succeed later."""

    retriable: ClassVar[bool] = False
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # None: the message is safe to show (it describes the client's own request).
    public_message: ClassVar[str | None] = "internal error"

    def client_message(self) -> str:
        """What the client is told: the exception text for its own mistakes, else a fixed one."""
        return str(self) if self.public_message is None else self.public_message

    def client_headers(self) -> dict[str, str]:
        """Response headers this error needs (for example a ``WWW-Authenticate`` challenge)."""
        return {}


class ConfigurationError(PunkRecordsError):
    """A setting is missing or invalid; the message names the environment variable."""

    code = "misconfigured"


class RequestRejected(PunkRecordsError):
    """The request can never succeed as sent; the message says why, for the client."""

    status = 400
    code = "bad_request"
    public_message = None


class UnsupportedMediaType(RequestRejected):
    """The body is not declared as JSON (``Content-Type: application/json``)."""

    status = 415
    code = "unsupported_media_type"


class MalformedJson(RequestRejected):
    """The body is not UTF-8 JSON (or not valid base64 when the gateway encoded it)."""

    code = "malformed_json"


class TooLarge(RequestRejected):
    """The body exceeds ``MAX_BODY_BYTES`` or the batch exceeds ``MAX_BATCH_EVENTS``."""

    status = 413
    code = "too_large"


class InvalidEnvelope(RequestRejected):
    """One or more envelopes broke the contract. ``errors`` is a list of ``{loc, msg, type}``."""

    code = "invalid_envelope"

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} validation error(s)")


class Unauthorized(RequestRejected):
    """The request carries no bearer token, or one that is not in the token set.

    ``challenge`` is the ``WWW-Authenticate`` value to send back (RFC 6750).
    """

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, challenge: str) -> None:
        self.challenge = challenge
        super().__init__(message)

    def client_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.challenge}


class Forbidden(RequestRejected):
    """The token is valid but may not do this. ``errors`` (``{loc, msg, type}``) names the
    offending items of a batch; it is empty otherwise."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str, errors: Sequence[dict[str, Any]] = ()) -> None:
        self.errors = list(errors)
        super().__init__(message)


class MissingScope(Forbidden):
    """The token lacks the scope the route needs; the message names it."""

    code = "missing_scope"


class WorkspaceForbidden(Forbidden):
    """The token may not use a workspace of the request (for a batch: each one, by index)."""

    code = "workspace_forbidden"


class InvalidQuery(RequestRejected):
    """Query or path parameters are missing, unknown or invalid; ``errors`` lists each."""

    code = "invalid_query"

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} invalid parameter(s)")


class InvalidCursor(RequestRejected):
    """The page cursor was altered, or belongs to another query or workspace."""

    code = "invalid_cursor"


class NotFound(RequestRejected):
    """No such resource (an event id that is not stored)."""

    status = 404
    code = "not_found"


class ProduceError(PunkRecordsError):
    """Kafka did not acknowledge every record in time. ``not_acked`` lists their event ids."""

    retriable = True
    status = 503
    code = "kafka_unavailable"
    public_message = (
        "Kafka did not acknowledge every event in time; nothing is confirmed, retry the whole "
        "request (duplicates are harmless)"
    )

    def __init__(self, message: str, not_acked: Sequence[str]) -> None:
        self.not_acked = list(not_acked)
        super().__init__(message)


class StoreUnavailable(PunkRecordsError):
    """PostgreSQL could not be reached or the transaction failed for a transient reason."""

    retriable = True
    status = 503
    code = "store_unavailable"
    public_message = "the event store cannot be reached right now; retry later"


class SecretUnavailable(PunkRecordsError):
    """A secret (API tokens, database credentials) could not be read."""

    retriable = True
    status = 503
    code = "tokens_unavailable"
    public_message = "the API tokens cannot be read right now; retry later"


class RecordTooLarge(InvalidEnvelope):
    """A Kafka record would exceed ``MAX_RECORD_BYTES``, or the broker refused it as too large:
    it can never be produced. ``indexes`` names the batch items, when the input was a batch;
    ``refused_by_broker`` says the broker, not our own check, refused it."""

    status = 413
    code = "record_too_large"

    def __init__(
        self, size: int, limit: int, indexes: Sequence[int] = (), detail: str = ""
    ) -> None:
        self.size = size
        self.limit = limit
        self.indexes = list(indexes)
        self.refused_by_broker = False
        where = f" (items {', '.join(map(str, self.indexes))})" if self.indexes else ""
        message = detail or (
            f"the Kafka record{'s' if len(self.indexes) > 1 else ''}{where} would be up to "
            f"{size} bytes; the limit is {limit} (MAX_RECORD_BYTES)"
        )
        super().__init__([{"loc": ["record"], "msg": message, "type": "record_too_large"}])
        self.args = (message,)


class CircuitOpen(ProduceError):
    """No Kafka broker was reachable on the last attempt: produce is refused at once until a
    probe finds one again. ``retry_after_s`` is when the next probe may run."""

    code = "kafka_unreachable"
    public_message = (
        "no Kafka broker was reachable on the last attempt; requests are refused at once until "
        "one is, retry after Retry-After seconds (duplicates are harmless)"
    )

    def __init__(self, retry_after_s: float, not_acked: Sequence[str] = ()) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            "Kafka was unreachable on the last attempt; refusing at once until a probe reaches "
            "a broker again",
            not_acked,
        )
