"""Scoped API tokens: who may call which route for which workspaces.

A token set is ``{"tokens": [entry, ...]}`` where an entry is
``{"id", "sha256", "workspaces", "scopes"}``: the SHA-256 of the token (never the token), the
workspaces it may use (``["*"]`` for all) and its scopes. The set comes from the Secrets Manager
secret ``API_TOKENS_SECRET_ARN`` (re-read at most every ``API_TOKENS_CACHE_S``) or, locally,
from ``API_TOKENS`` holding the same JSON. The older forms still work with a deprecation
warning in the log: ``{"tokens": ["plain", ...]}`` in the secret and comma-separated plain
tokens in ``API_TOKENS``; each such token may write (``events:write``) to every workspace.

``python -m punk_records.tokens new --id ci --workspace ws-a --scope events:read`` prints a new
random token and its entry (docs/tokens.md).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from punk_records.config import Settings
from punk_records.errors import ConfigurationError, MissingScope, WorkspaceForbidden
from punk_records.observability import logger

ALL_WORKSPACES = "*"
# New tokens start with this, so secret scanners and people recognise one in a paste.
TOKEN_PREFIX = "prk_"  # noqa: S105 (a prefix, not a secret)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_WORKSPACE_CHARS = 128  # as the envelope's workspace_id

# Reads a JSON secret by ARN with a cache age in seconds (punk_records.aws_secrets in AWS).
SecretReader = Callable[[str, int], dict[str, Any]]


class Scope(StrEnum):
    """What a token may do. ``admin`` does not imply the others: list each scope needed."""

    EVENTS_WRITE = "events:write"
    EVENTS_READ = "events:read"
    DEAD_LETTERS_READ = "dead_letters:read"
    MEMORY_READ = "memory:read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Token:
    """One entry of the token set. ``digest`` is the SHA-256 of the token's UTF-8 bytes."""

    id: str
    digest: bytes
    workspaces: frozenset[str]
    scopes: frozenset[Scope]
    legacy: bool = False

    @property
    def all_workspaces(self) -> bool:
        return ALL_WORKSPACES in self.workspaces

    def may_use(self, workspace: str) -> bool:
        """Whether this token may read or write ``workspace``."""
        return self.all_workspaces or workspace in self.workspaces

    def require_scope(self, scope: Scope) -> None:
        """Raise MissingScope unless the token has ``scope``."""
        if scope not in self.scopes:
            raise MissingScope(f"the token {self.id!r} lacks the scope {scope.value!r}")

    def require_workspace(self, workspace: str) -> None:
        """Raise WorkspaceForbidden unless the token may use ``workspace``."""
        if not self.may_use(workspace):
            raise WorkspaceForbidden(
                f"the token {self.id!r} may not use the workspace {workspace!r}"
            )

    def require_workspaces(self, workspaces: Sequence[str], batch: bool) -> None:
        """Raise WorkspaceForbidden naming every item whose workspace the token may not use.

        ``batch`` says whether the request was a batch: then each error's ``loc`` starts with
        the item's index, as validation errors do.
        """
        if self.all_workspaces:
            return
        bad = [i for i, ws in enumerate(workspaces) if ws not in self.workspaces]
        if not bad:
            return
        names = sorted({workspaces[i] for i in bad})
        errors = [
            {
                "loc": [i, "workspace_id"] if batch else ["workspace_id"],
                "msg": f"the token {self.id!r} may not write to the workspace {workspaces[i]!r}",
                "type": "workspace_forbidden",
            }
            for i in bad
        ]
        where = f" (items {', '.join(map(str, bad))})" if batch else ""
        raise WorkspaceForbidden(
            f"the token {self.id!r} may not write to {', '.join(map(repr, names))}{where}; "
            "nothing was accepted",
            errors,
        )

    def entry(self) -> dict[str, Any]:
        """The entry as stored in the secret."""
        return {
            "id": self.id,
            "sha256": self.digest.hex(),
            "workspaces": sorted(self.workspaces),
            "scopes": sorted(s.value for s in self.scopes),
        }


def digest_of(token: str) -> bytes:
    """SHA-256 of the token's UTF-8 bytes: what the secret stores and lookups compare.

    A lone surrogate (possible in a header decoded from JSON) is hashed as is instead of
    failing: such a candidate can never equal a real token's digest.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Every valid token. ``legacy_count`` counts plain (deprecated) tokens among them."""

    tokens: tuple[Token, ...]

    @property
    def legacy_count(self) -> int:
        return sum(t.legacy for t in self.tokens)

    def match(self, candidate: str) -> Token | None:
        """The token whose digest equals the candidate's, else None.

        The candidate is hashed once and its digest compared with every entry's, always all of
        them, with ``hmac.compare_digest``: the time taken says nothing about which entry, or
        how much of one, matched.
        """
        digest = digest_of(candidate)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def _fail(source: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"{source}: {message}")


def _legacy(value: str) -> Token:
    digest = digest_of(value)
    return Token(
        id=f"legacy-{digest.hex()[:8]}",
        digest=digest,
        workspaces=frozenset({ALL_WORKSPACES}),
        scopes=frozenset({Scope.EVENTS_WRITE}),
        legacy=True,
    )


def _strings(value: object, field: str, where: str, source: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(source, f"{where}: {field!r} must be a non-empty list of strings")
    return value


def _entry(item: Mapping[str, Any], index: int, source: str) -> Token:
    where = f"entry {index}"
    extra = sorted(set(item) - {"id", "sha256", "workspaces", "scopes"})
    if extra:
        raise _fail(source, f"{where}: unknown field(s) {', '.join(extra)}")
    token_id = item.get("id")
    if not isinstance(token_id, str) or not _ID.match(token_id):
        raise _fail(source, f"{where}: 'id' must be 1-64 letters, digits or ._:@- characters")
    where = f"entry {index} ({token_id})"
    sha = item.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _fail(source, f"{where}: 'sha256' must be 64 hexadecimal characters")
    workspaces = [w.strip() for w in _strings(item.get("workspaces"), "workspaces", where, source)]
    for ws in workspaces:
        if not ws or len(ws) > _MAX_WORKSPACE_CHARS:
            raise _fail(source, f"{where}: a workspace must be 1-128 characters")
    scopes = _strings(item.get("scopes"), "scopes", where, source)
    known = {s.value for s in Scope}
    unknown = sorted(set(scopes) - known)
    if unknown:
        raise _fail(
            source, f"{where}: unknown scope(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return Token(
        id=token_id,
        digest=bytes.fromhex(sha),
        workspaces=frozenset(workspaces),
        scopes=frozenset(Scope(s) for s in scopes),
    )


def parse_token_set(document: object, source: str) -> TokenSet:
    """The token set of ``{"tokens": [...]}`` (entries, plain tokens, or both).

    Raise ConfigurationError naming ``source`` and the offending entry (never a token).
    """
    if not isinstance(document, dict) or set(document) != {"tokens"}:
        raise _fail(source, 'expected {"tokens": [...]}')
    items = document["tokens"]
    if not isinstance(items, list):
        raise _fail(source, '"tokens" must be a list')
    tokens: list[Token] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            if item.strip():
                tokens.append(_legacy(item.strip()))
        elif isinstance(item, dict):
            tokens.append(_entry(item, index, source))
        else:
            raise _fail(source, f"entry {index}: expected an object or a string")
    if not tokens:
        raise _fail(source, "holds no token; every request would be refused")
    _check_unique(tokens, source)
    return TokenSet(tuple(tokens))


def _check_unique(tokens: Iterable[Token], source: str) -> None:
    ids: set[str] = set()
    digests: set[bytes] = set()
    for token in tokens:
        if token.id in ids:
            raise _fail(source, f"the id {token.id!r} appears twice; ids must be unique")
        if token.digest in digests:
            raise _fail(source, f"the entry {token.id!r} repeats the sha256 of another entry")
        ids.add(token.id)
        digests.add(token.digest)


def parse_api_tokens(value: str) -> TokenSet:
    """``API_TOKENS``: the secret's JSON, or comma-separated plain tokens (deprecated)."""
    text = value.strip()
    if not text:
        raise ConfigurationError("set API_TOKENS or API_TOKENS_SECRET_ARN")
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            # Position only: the value may hold tokens.
            raise ConfigurationError(
                f"API_TOKENS is not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        return parse_token_set(document, "API_TOKENS")
    return parse_token_set({"tokens": text.split(",")}, "API_TOKENS")


class TokenSource:
    """The container's token set: parsed once per version of its source, so a warm request
    only hashes its candidate. Rotation: the secret is re-read at most every
    ``api_tokens_cache_s`` seconds (through the reader's cache)."""

    def __init__(self, settings: Settings, read_secret: SecretReader) -> None:
        self._settings = settings
        self._read_secret = read_secret
        self._raw: object = None
        self._set: TokenSet | None = None

    def current(self) -> TokenSet:
        """The token set now in force.

        Raise SecretUnavailable when the secret cannot be read, ConfigurationError when no
        token is configured or the document is invalid.
        """
        settings = self._settings
        if settings.api_tokens_secret_arn:
            raw: object = self._read_secret(
                settings.api_tokens_secret_arn, settings.api_tokens_cache_s
            )
            source = "the API tokens secret"
        else:
            raw, source = settings.api_tokens, "API_TOKENS"
        if self._set is not None and (raw is self._raw or raw == self._raw):
            return self._set
        parsed = parse_api_tokens(raw) if isinstance(raw, str) else parse_token_set(raw, source)
        if parsed.legacy_count:
            logger.warning(
                "deprecated plain API tokens",
                extra={
                    "source": source,
                    "legacy_tokens": parsed.legacy_count,
                    "token_ids": [t.id for t in parsed.tokens if t.legacy],
                    "hint": "replace each with an entry {id, sha256, workspaces, scopes}: "
                    "python -m punk_records.tokens hash (docs/tokens.md)",
                },
            )
        self._raw, self._set = raw, parsed
        return parsed


def new_token(token_id: str, workspaces: Sequence[str], scopes: Sequence[str]) -> tuple[str, Token]:
    """A new random token and its entry; raise ConfigurationError for a bad id/workspace/scope."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = {
        "id": token_id,
        "sha256": digest_of(token).hex(),
        "workspaces": list(dict.fromkeys(workspaces)),
        "scopes": list(dict.fromkeys(scopes)),
    }
    return token, _entry(entry, 0, "the new entry")


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m punk_records.tokens",
        description="Create and check scoped API tokens (docs/tokens.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="print a new random token and its entry")
    new.add_argument("--id", required=True, help="name shown in logs, e.g. ci or team-a-agents")
    new.add_argument(
        "--workspace",
        action="append",
        required=True,
        help="a workspace it may use (repeat; '*' for all)",
    )
    new.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="a scope it holds (repeat)",
    )
    hashed = commands.add_parser(
        "hash", help="read a token on stdin, print its entry (to convert a plain token)"
    )
    hashed.add_argument("--id", required=True)
    hashed.add_argument("--workspace", action="append", default=None)
    hashed.add_argument("--scope", action="append", default=None, choices=[s.value for s in Scope])
    check = commands.add_parser(
        "check", help='validate a {"tokens": [...]} document (file or stdin), list its entries'
    )
    check.add_argument("file", nargs="?", help="the JSON document; stdin when absent")
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            token, entry = new_token(args.id, args.workspace, args.scope)
            print(f"token: {token}")
            print(f"entry: {json.dumps(entry.entry())}")
            print(
                "Store the token now (it is not shown again) and add the entry to the "
                '"tokens" list of the API tokens secret, or of API_TOKENS locally.',
                file=sys.stderr,
            )
        elif args.command == "hash":
            value = sys.stdin.readline().strip()
            if not value:
                parser.error("no token on stdin")
            entry = _entry(
                {
                    "id": args.id,
                    "sha256": digest_of(value).hex(),
                    "workspaces": args.workspace or [ALL_WORKSPACES],
                    "scopes": args.scope or [Scope.EVENTS_WRITE.value],
                },
                0,
                "the entry",
            )
            print(json.dumps(entry.entry()))
        else:
            text = Path(args.file).read_text() if args.file else sys.stdin.read()
            try:
                document = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
            for listed in parse_token_set(document, "the document").tokens:
                kind = "  (plain token: deprecated)" if listed.legacy else ""
                print(
                    f"{listed.id}: workspaces {','.join(sorted(listed.workspaces))}; "
                    f"scopes {','.join(sorted(listed.scopes))}{kind}"
                )
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
