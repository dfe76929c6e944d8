"""The admin function's requests: replay a workspace's memory projection, or redrive dead
letters. Run by an operator with ``sam remote invoke`` (docs/memory.md); never behind the HTTP
API. Each request carries a token with the ``admin`` scope: for a replay, on the workspace;
for a redrive, on every workspace (``*``), since dead letters can belong to any.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from punk_records.auth import TokenSource, authorize
from punk_records.config import Settings
from punk_records.envelope import Identifier, error_list
from punk_records.errors import Forbidden, InvalidQuery, PunkRecordsError
from punk_records.memory import MemoryRules
from punk_records.redrive import RedriveFilter, classifier, redrive
from punk_records.replay import replay_workspace
from punk_records.tokens import Scope


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr = Field(description="An API token with the admin scope.")
    dry_run: bool = Field(default=False, description="Compute and report; change nothing.")


class ReplayRequest(_Request):
    """``{"operation": "replay", "workspace_id": "ws-a", "dry_run": false, "token": "..."}``"""

    operation: Literal["replay"]
    workspace_id: Identifier


class RedriveRequest(_Request):
    """``{"operation": "redrive", "topic": ..., "partition": ..., "from_offset": ...,
    "to_offset": ..., "reason": ..., "limit": ..., "dry_run": false, "token": "..."}``"""

    operation: Literal["redrive"]
    topic: str | None = Field(default=None, min_length=1, max_length=249)
    partition: int | None = Field(default=None, ge=0)
    from_offset: int | None = Field(default=None, ge=0)
    to_offset: int | None = Field(default=None, ge=0)
    reason: str | None = Field(default=None, min_length=1, max_length=1_000)
    limit: int | None = Field(default=None, ge=1)


_REQUEST: TypeAdapter[ReplayRequest | RedriveRequest] = TypeAdapter(
    Annotated[ReplayRequest | RedriveRequest, Field(discriminator="operation")]
)


def run(
    event: Mapping[str, Any],
    settings: Settings,
    tokens: TokenSource,
    connection: Callable[[], psycopg.Connection],
) -> dict[str, Any]:
    """Check the request and its token, run it, and return its report; an error is returned as
    ``{"error": code, "message": ...}`` (with ``errors`` for an invalid request), never raised,
    so ``sam remote invoke`` prints it as it prints a report."""
    try:
        try:
            request = _REQUEST.validate_python(event)
        except ValidationError as exc:
            raise InvalidQuery(error_list(exc)) from None
        token = authorize({"authorization": f"Bearer {request.token.get_secret_value()}"}, tokens)
        token.require_scope(Scope.ADMIN)
        rules = MemoryRules.from_settings(settings)
        if isinstance(request, ReplayRequest):
            token.require_workspace(request.workspace_id)
            return replay_workspace(
                connection(), request.workspace_id, rules, request.dry_run
            ).as_dict()
        if not token.all_workspaces:
            raise Forbidden(
                f"the token {token.id!r} may not redrive: dead letters can belong to any "
                "workspace, so it needs the workspaces ['*']"
            )
        selection = RedriveFilter(
            request.topic, request.partition, request.from_offset, request.to_offset,
            request.reason, request.limit,
        )  # fmt: skip
        return redrive(
            connection(), selection, rules, classifier(settings), request.dry_run
        ).as_dict()
    except PunkRecordsError as exc:
        body: dict[str, Any] = {"error": exc.code, "message": exc.client_message()}
        errors = getattr(exc, "errors", None)
        if errors:
            body["errors"] = errors
        return body
