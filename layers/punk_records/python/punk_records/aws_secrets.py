"""Secrets Manager reads through Powertools Parameters (cached, so warm invocations are free)."""

from __future__ import annotations

from typing import Any

from punk_records.errors import SecretUnavailable
from punk_records.observability import trace_library

# Short enough that a rotated secret is picked up within minutes, long enough to cost nothing.
SECRET_CACHE_SECONDS = 60


def read_json_secret(arn: str, max_age: int = SECRET_CACHE_SECONDS) -> dict[str, Any]:
    """The JSON object stored in secret ``arn``; raise SecretUnavailable (never with its value)."""
    # Imported here, not at module level: Powertools Parameters loads boto3 (~100 ms of cold
    # start), which only a function with a secret ARN configured ever needs.
    trace_library("botocore")
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import (
        GetParameterError,
        TransformParameterError,
    )

    try:
        value = parameters.get_secret(arn, transform="json", max_age=max_age)
    except (GetParameterError, TransformParameterError) as exc:
        raise SecretUnavailable(f"cannot read secret {arn}: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise SecretUnavailable(f"secret {arn} is not a JSON object")
    return value
