"""Bearer-token authentication: who is calling, from the ``Authorization`` header.

The token set and what each token may do live in :mod:`punk_records.tokens` (docs/tokens.md);
this module reads the header and answers ``401`` for a missing or unknown token. Scopes and
workspaces are checked by the use cases, on the :class:`~punk_records.tokens.Token` returned.
"""

from __future__ import annotations

from collections.abc import Mapping

from punk_records.errors import Unauthorized
from punk_records.tokens import Token, TokenSource

REALM = "punk-records"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case), else None."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(headers: Mapping[str, str], tokens: TokenSource) -> Token:
    """The token the request carries, or raise Unauthorized.

    The candidate is hashed once and compared with every entry's digest in constant time
    (:meth:`punk_records.tokens.TokenSet.match`). Raise SecretUnavailable / ConfigurationError
    when the token set cannot be read or is invalid.
    """
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("a bearer token is required", challenge=f'Bearer realm="{REALM}"')
    found = tokens.current().match(token)
    if found is None:
        raise Unauthorized(
            "the bearer token is not valid",
            challenge=f'Bearer realm="{REALM}", error="invalid_token"',
        )
    return found


__all__ = ["REALM", "Token", "TokenSource", "Unauthorized", "authorize", "bearer_token"]
