"""Bearer-token authentication of the ingest API: a rotatable token set, compared in constant time.

Tokens come from ``API_TOKENS`` (comma-separated, for local use) or, when
``API_TOKENS_SECRET_ARN`` is set, from a Secrets Manager secret holding
``{"tokens": ["...", "..."]}``. Several tokens are valid at once, so a new token can be rolled
out before the old one is removed. The secret is re-read at most every ``API_TOKENS_CACHE_S``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from punk_records.config import Settings
from punk_records.errors import ConfigurationError, Unauthorized

REALM = "punk-records"

# Reads a JSON secret by ARN with a cache age in seconds (punk_records.aws_secrets in AWS).
SecretReader = Callable[[str, int], dict[str, Any]]


def _parse(values: object, source: str) -> tuple[bytes, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigurationError(f"{source} must be a list of strings")
    tokens = tuple(v.strip().encode() for v in values if v.strip())
    if not tokens:
        raise ConfigurationError(f"{source} holds no token; every request would be refused")
    return tokens


class TokenSource:
    """The container's token set: ``API_TOKENS``, or the secret read through ``read_secret``."""

    def __init__(self, settings: Settings, read_secret: SecretReader) -> None:
        self._settings = settings
        self._read_secret = read_secret

    def tokens(self) -> tuple[bytes, ...]:
        """The current token set (UTF-8 bytes).

        Raise SecretUnavailable when the secret cannot be read, ConfigurationError when no
        token is configured or the secret is not ``{"tokens": [...]}``.
        """
        settings = self._settings
        if settings.api_tokens_secret_arn:
            secret = self._read_secret(settings.api_tokens_secret_arn, settings.api_tokens_cache_s)
            return _parse(secret.get("tokens"), 'the API tokens secret\'s "tokens" field')
        if not settings.api_tokens.strip():
            raise ConfigurationError("set API_TOKENS or API_TOKENS_SECRET_ARN")
        return _parse(settings.api_tokens.split(","), "API_TOKENS")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case), else None."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(headers: Mapping[str, str], tokens: TokenSource) -> None:
    """Accept the request's bearer token or raise Unauthorized.

    The candidate is compared with every valid token, always all of them, with
    ``hmac.compare_digest``, so the time taken says nothing about which token nearly matched.
    """
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("a bearer token is required", challenge=f'Bearer realm="{REALM}"')
    candidate = token.encode()
    matched = False
    for valid in tokens.tokens():
        matched |= hmac.compare_digest(candidate, valid)
    if not matched:
        raise Unauthorized(
            "the bearer token is not valid",
            challenge=f'Bearer realm="{REALM}", error="invalid_token"',
        )


__all__ = ["REALM", "TokenSource", "Unauthorized", "authorize", "bearer_token"]
