"""The HTTP edge of the ingest API: media types, base64 bodies, status codes, response bodies and
headers, and the OpenAPI description of every route.

The only module of the package that knows HTTP. Errors are rendered from their own ``status``,
``code`` and client message (:mod:`punk_records.errors`), by :func:`error_response` alone.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from pydantic import BaseModel, Field

from punk_records.envelope import Envelope, plain_json
from punk_records.errors import (
    Forbidden,
    InvalidEnvelope,
    InvalidQuery,
    MalformedJson,
    PunkRecordsError,
    TooLarge,
    UnsupportedMediaType,
)
from punk_records.health import CHECK_TIMEOUT_S, HealthReport
from punk_records.ingest import Accepted, JsonDocument
from punk_records.observability import logger

# Seconds a client should wait before retrying after a 503: long enough for a broker
# leader election or restart, short enough that satellites do not buffer much.
RETRY_AFTER_S = 5

# A plain dict, validated when the document is rendered: importing Powertools' OpenAPI models
# for HTTPBearer would add ~100 ms to every cold start for a document never served.
SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the API tokens (docs/ingest.md)",
    }
}


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
        default=None,
        description="Every error, each with its location: 400 invalid_envelope and "
        "invalid_query, 403 workspace_forbidden (one per offending batch item).",
    )


def json_response(
    status: int, body: BaseModel, headers: dict[str, str] | None = None, exclude_none: bool = False
) -> Response[str]:
    """A JSON response of ``body`` (without its ``None`` fields when ``exclude_none``)."""
    text = body.model_dump_json(exclude_none=exclude_none)
    return Response(status, content_types.APPLICATION_JSON, text, headers)


def error_body(exc: BaseException) -> ErrorBody:
    """The response body for ``exc``. Server-side failures get a fixed message, so nothing about
    the deployment (hosts, variables, exception text) reaches the client."""
    if not isinstance(exc, PunkRecordsError):
        return ErrorBody(error=PunkRecordsError.code, message="internal error")
    errors = None
    if isinstance(exc, InvalidEnvelope | InvalidQuery | Forbidden) and exc.errors:
        errors = [FieldError.model_validate(e) for e in exc.errors]
    return ErrorBody(error=exc.code, message=exc.client_message(), errors=errors)


def error_response(exc: BaseException) -> Response[str]:
    """Every error as the client sees it: its status, its body, its headers."""
    if not isinstance(exc, PunkRecordsError):
        return json_response(HTTPStatus.INTERNAL_SERVER_ERROR, error_body(exc), exclude_none=True)
    headers = exc.client_headers()
    if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return json_response(exc.status, error_body(exc), headers, exclude_none=True)


def routing_error_response(exc: ServiceError) -> Response[str]:
    """Powertools' own errors (no such route: 404), in our error format."""
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return json_response(exc.status_code, ErrorBody(error=code, message=str(exc.msg)))


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    """Render errors alike on every HTTP function: ours with their status and code, routing
    errors in our format, anything else as a logged 500 that says nothing of the cause."""
    app.exception_handler(PunkRecordsError)(error_response)
    app.exception_handler(ServiceError)(routing_error_response)
    app.exception_handler(Exception)(_unexpected_error_response)


def _unexpected_error_response(exc: Exception) -> Response[str]:
    logger.exception("unhandled error", extra={"error": type(exc).__name__})
    return error_response(exc)


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


class _DuplicateKey(ValueError):
    """An object repeats a key (the message never names it: a key may be a secret)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last value of a repeated key, silently: "event_id" twice
    # would store an event nobody can tell apart from the one the client meant.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey
    return document


def read_json(
    headers: Mapping[str, str], body: str | None, base64_encoded: bool, max_body_bytes: int
) -> JsonDocument:
    """The request body parsed as JSON, as the gateway delivered it (base64 or not).

    Raise UnsupportedMediaType, TooLarge (over ``max_body_bytes``) or MalformedJson.
    """
    content_type = _header(headers, "content-type")
    if content_type is None or not _is_json_media_type(content_type):
        raise UnsupportedMediaType("Content-Type must be application/json (UTF-8)")
    encoding = (_header(headers, "content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        # A compressed body would be "not JSON"; say what is wrong instead.
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:40]} is not supported; send the body uncompressed"
        )
    text = body or ""
    try:
        raw = base64.b64decode(text, validate=True) if base64_encoded else text.encode()
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedJson("the body is not valid UTF-8 JSON") from None
    if len(raw) > max_body_bytes:
        raise TooLarge(
            f"the body is {len(raw)} bytes; the limit is {max_body_bytes} (MAX_BODY_BYTES)"
        )
    try:
        if base64_encoded:
            text = raw.decode()
        # NaN and Infinity are not JSON; accepting them would put invalid JSON into Kafka.
        document = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        # The position only: the message never quotes the body.
        raise MalformedJson(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise MalformedJson(
            f"the body is not valid UTF-8: invalid byte at position {exc.start}"
        ) from None
    except _DuplicateKey:
        raise MalformedJson(
            "an object in the body has the same key twice; JSON objects must have unique keys"
        ) from None
    except (UnicodeError, ValueError):
        raise MalformedJson("the body is not valid UTF-8 JSON") from None
    except RecursionError:
        raise MalformedJson("the body is nested too deeply") from None
    return JsonDocument(document, len(raw), plain_json(text, document))


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
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

    inlined: dict[str, Any] = resolve(schema)
    return inlined


def response_doc(description: str, model: type[BaseModel], **headers: str) -> dict[str, Any]:
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


# What API Gateway answers by itself (no route, request too long, a crashed invocation).
_GATEWAY = {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
    "additionalProperties": False,
    "description": "An answer of the gateway itself, e.g. Request Too Long.",
}

_ENVELOPE_SCHEMA = {
    **inline_refs(Envelope.model_json_schema()),
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
        202: response_doc("Every event acknowledged by Kafka.", Accepted),
        400: response_doc(
            "Malformed JSON (`malformed_json`) or invalid events "
            "(`invalid_envelope`, every error listed); nothing produced.",
            ErrorBody,
        ),
        401: response_doc(
            "Missing or invalid bearer token; the body was not read.",
            ErrorBody,
            **{"WWW-Authenticate": "`Bearer` challenge (RFC 6750)."},
        ),
        403: response_doc(
            "The token lacks `events:write` (`missing_scope`), or may not write to the "
            "workspace of some events (`workspace_forbidden`, one error per offending item, "
            "`loc` starting with its index); nothing produced.",
            ErrorBody,
        ),
        413: {
            "description": "Body over MAX_BODY_BYTES (as sent or as produced), batch over "
            "MAX_BATCH_EVENTS (`too_large`), or a record over MAX_RECORD_BYTES "
            '(`record_too_large`); or, from the gateway itself, `{"message": "Request Too '
            'Long"}` when the request exceeds the 6 MB Lambda invoke payload. Not worth '
            "retrying as sent.",
            "content": {
                "application/json": {
                    "schema": {"oneOf": [inline_refs(ErrorBody.model_json_schema()), _GATEWAY]}
                }
            },
        },
        415: response_doc(
            "Content-Type is not application/json, or the body has a Content-Encoding.",
            ErrorBody,
        ),
        500: {
            "description": "Unexpected server error (generic body); or, from the gateway "
            'itself, `{"message": "Internal Server Error"}` when the invocation crashed.',
            "content": {
                "application/json": {
                    "schema": {"oneOf": [inline_refs(ErrorBody.model_json_schema()), _GATEWAY]}
                }
            },
        },
        503: response_doc(
            "Kafka did not acknowledge every event in time (`kafka_unavailable`), no broker "
            "was reachable on the last attempt (`kafka_unreachable`, answered at once), or "
            "the API tokens could not be read; retry the whole request.",
            ErrorBody,
            **{"Retry-After": "Seconds to wait before retrying."},
        ),
    },
}


# OpenAPI description of GET /health, passed to the route decorator (see docs/openapi.json).
GET_HEALTH_OPENAPI: dict[str, Any] = {
    "summary": "Dependency health",
    "description": "Checks Kafka (topic metadata) and PostgreSQL (`SELECT 1`) in parallel, each "
    f"within {CHECK_TIMEOUT_S:g} s. No authentication; the body names no host or credential.",
    "operation_id": "getHealth",
    "tags": ["health"],
    "responses": {
        200: {
            "description": "Every dependency is healthy.",
            "content": {"application/json": {"model": HealthReport}},
        },
        503: {
            "description": "At least one dependency is failing; `failing` names it.",
            "content": {"application/json": {"model": HealthReport}},
        },
    },
}
