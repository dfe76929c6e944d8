"""Admin function: replay one workspace's memory projection or redrive dead letters.

Not behind the HTTP API: an operator runs it with ``sam remote invoke`` and an ``admin`` token
in the request (docs/memory.md; samples in ``events/admin-*.json``). It writes with the
consumer's database login.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from punk_records import admin
from punk_records.bootstrap import container
from punk_records.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The operation's report, or ``{"error": ..., "message": ...}``."""
    store = container.store()
    return admin.run(event, container.settings(), container.tokens(), store.connection)
