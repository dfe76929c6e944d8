"""Opaque, tamper-evident page cursors: a position in a keyset order, bound to one query.

A cursor is ``base64url(version | position | mac)`` where ``mac`` is an HMAC-SHA256 (truncated
to 128 bits) over the version, the query's fingerprint and the position, keyed with the
deployment's cursor key. Changing a byte, or presenting the cursor with another query (other
filters, another workspace, another route), fails the check: the client gets a ``400``, never a
page of something else. The position itself is not secret (a timestamp and an id the client
already saw), only unforgeable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from punk_records.config import Settings
from punk_records.errors import ConfigurationError, InvalidCursor

_VERSION = 1
_MAC_BYTES = 16
# Enough entropy that the key cannot be guessed; a generated secret is 64 characters.
MIN_KEY_CHARS = 32
# The key changes only when someone rotates it (which ends every open cursor): read it rarely.
KEY_CACHE_S = 300


class CursorCodec:
    """Signs and checks cursors with one key (the same in every container of a deployment)."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"the cursor key must have at least {MIN_KEY_CHARS} characters")
        # Hashed so that any length of key gives a full-strength HMAC key.
        self._key = hashlib.sha256(key.encode()).digest()

    def _mac(self, fingerprint: bytes, position: bytes) -> bytes:
        message = bytes([_VERSION]) + hashlib.sha256(fingerprint).digest() + position
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, fingerprint: bytes, position: bytes) -> str:
        """The cursor for ``position`` in the query whose canonical form is ``fingerprint``."""
        raw = bytes([_VERSION]) + position + self._mac(fingerprint, position)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, cursor: str, fingerprint: bytes, size: int) -> bytes:
        """The ``size``-byte position in ``cursor``; raise InvalidCursor unless it was made by
        :meth:`encode` with this key for this same query."""
        invalid = InvalidCursor(
            "the cursor is not valid for this query: it was altered, or it comes from another "
            "query or workspace; start again without a cursor"
        )
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        # One spelling per cursor: base64 ignores the spare bits of its last character.
        canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cursor
        if not canonical or len(raw) != 1 + size + _MAC_BYTES or raw[0] != _VERSION:
            raise invalid
        position, mac = raw[1 : 1 + size], raw[1 + size :]
        if not hmac.compare_digest(mac, self._mac(fingerprint, position)):
            raise invalid
        return position


def cursor_codec(
    settings: Settings, read_secret: Callable[[str, int], dict[str, Any]]
) -> CursorCodec:
    """The codec keyed from ``CURSOR_KEY_SECRET_ARN`` (``{"key": "..."}``) or ``CURSOR_KEY``.

    Raise ConfigurationError naming the variable when the key is missing or too short,
    SecretUnavailable when the secret cannot be read.
    """
    if settings.cursor_key_secret_arn:
        key = read_secret(settings.cursor_key_secret_arn, KEY_CACHE_S).get("key")
        source = 'the cursor key secret\'s "key" field'
    else:
        key, source = settings.require("cursor_key"), "CURSOR_KEY"
    if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"{source} must be a string of at least {MIN_KEY_CHARS} characters"
        )
    return CursorCodec(key)
