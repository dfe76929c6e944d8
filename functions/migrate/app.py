"""Migrate function: the CloudFormation custom resource that applies the PostgreSQL migrations.

Create and Update apply what is pending (idempotent) and create or update the query function's
SELECT-only login from its secret; Delete leaves the database alone. Every
outcome is PUT to the pre-signed ``ResponseURL``, so a failure fails the stack operation at
once instead of leaving CloudFormation waiting for the service timeout. Lock waits and
statements are bounded by the invocation's remaining time less what the answer needs, so even
a lock held elsewhere ends in a FAILED answer with the reason, never in a timeout.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

import punk_records.store  # noqa: F401  # loaded at init, as every invocation needs it
from punk_records.bootstrap import container
from punk_records.observability import logger

PHYSICAL_ID = "punk-records-migrations"
RESPONSE_TIMEOUT_S = 10
# Kept back from the invocation's remaining time: the answer's PUT, and the margin before it.
RESERVE_MS = (RESPONSE_TIMEOUT_S + 2) * 1000


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Apply pending migrations on Create/Update and report the outcome to CloudFormation."""
    request_type = event.get("RequestType")
    login = None
    try:
        if request_type != "Delete":
            applied = container.store().migrate(
                lambda: context.get_remaining_time_in_millis() - RESERVE_MS
            )
            login = container.provision_query_login()
        else:
            applied = []
    except Exception as exc:  # every failure must reach CloudFormation, not only ours
        # The reason is shown in the stack events: the error type and the driver's first line,
        # which names the failure but never a password.
        reason = _reason(exc)
        logger.exception("migrations failed", extra={"request_type": request_type})
        _respond(event, context, "FAILED", reason=reason)
        return
    logger.info(
        "migrations applied",
        extra={"request_type": request_type, "applied": applied, "query_login": login},
    )
    _respond(event, context, "SUCCESS", data={"Applied": ",".join(applied) or "none"})


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first_line}"[:1000]


def _respond(
    event: dict[str, Any],
    context: LambdaContext,
    status: str,
    reason: str = "",
    data: dict[str, str] | None = None,
) -> None:
    body = {
        "Status": status,
        "Reason": reason or f"see log stream {context.log_stream_name}",
        # Keep the id CloudFormation knows: a new one on Update would make it Delete the old.
        "PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID),
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
    }
    payload = json.dumps(body).encode()
    # The pre-signed S3 URL is signed for an empty content type.
    request = urllib.request.Request(  # noqa: S310 (CloudFormation's https ResponseURL)
        event["ResponseURL"],
        data=payload,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(payload))},
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S) as response:  # noqa: S310
        logger.info("reported to CloudFormation", extra={"status": status, "http": response.status})
