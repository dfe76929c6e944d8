"""Logger, metrics and tracer shared by every function: import them from here only."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "punk-records"
NAMESPACE = "PunkRecords"


def message_json(message: Any) -> Any:
    """Logger's ``json_deserializer``: a message that is a JSON object or array is logged as that
    object (Powertools' behaviour), any other message as its text.

    Powertools tries ``json.loads`` on every string message; ours are sentences, and the failed
    decode (an exception built and caught) was the dearest step of a log line (~8 of ~50 us).
    """
    if isinstance(message, str) and message.lstrip()[:1] in ("{", "["):
        return json.loads(message)
    return message


logger = Logger(service=SERVICE, json_deserializer=message_json)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# No patching at import: Tracer would patch every library X-Ray supports, importing botocore
# and psycopg into every cold start (~130 ms) whether the function uses them or not.
tracer = Tracer(service=SERVICE, auto_patch=False)


@cache
def trace_library(name: Literal["botocore", "psycopg"]) -> None:
    """Record the calls of client library ``name`` as X-Ray subsegments from now on.

    Each adapter calls this right before it first uses its client library. Once per library
    per container; nothing happens when tracing is off.
    """
    if tracer.disabled:
        return
    from aws_xray_sdk.core import patch

    # raise_errors=False as in Tracer's patch-everything default: X-Ray's psycopg patch also
    # wraps psycopg_pool, which is not installed, after it has wrapped psycopg.connect.
    patch([name], raise_errors=False)
