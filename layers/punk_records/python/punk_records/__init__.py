"""Punk Records domain package: envelope, redaction, Kafka producer and PostgreSQL store.

Shared by every function through the Lambda layer. Nothing here knows about Lambda events.
Names are imported on first use (PEP 562), so a function pays at cold start only for what it
touches: the consumer never loads kafka-python, the ingest function never loads psycopg
unless its health check runs. :mod:`punk_records.bootstrap` wires the container's clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from punk_records.bootstrap import Container, container
    from punk_records.config import Settings
    from punk_records.envelope import (
        Envelope,
        EventType,
        Severity,
        decode,
        parse_batch,
        parse_event,
    )
    from punk_records.errors import (
        ConfigurationError,
        InvalidEnvelope,
        ProduceError,
        PunkRecordsError,
        SecretUnavailable,
        StoreUnavailable,
        Unauthorized,
    )
    from punk_records.ports import DeadLetter, Producer, Store, StoredEvent, WriteResult
    from punk_records.producer import ProducerCache
    from punk_records.redaction import redact, redact_payload
    from punk_records.store import EventStore

# Public name -> the module that defines it.
_MODULES = {
    "Container": "bootstrap",
    "container": "bootstrap",
    "Settings": "config",
    "Envelope": "envelope",
    "EventType": "envelope",
    "Severity": "envelope",
    "decode": "envelope",
    "parse_batch": "envelope",
    "parse_event": "envelope",
    "ConfigurationError": "errors",
    "InvalidEnvelope": "errors",
    "ProduceError": "errors",
    "PunkRecordsError": "errors",
    "SecretUnavailable": "errors",
    "StoreUnavailable": "errors",
    "Unauthorized": "errors",
    "DeadLetter": "ports",
    "Producer": "ports",
    "Store": "ports",
    "StoredEvent": "ports",
    "WriteResult": "ports",
    "ProducerCache": "producer",
    "redact": "redaction",
    "redact_payload": "redaction",
    "EventStore": "store",
}

__all__ = [
    "ConfigurationError",
    "Container",
    "DeadLetter",
    "Envelope",
    "EventStore",
    "EventType",
    "InvalidEnvelope",
    "ProduceError",
    "Producer",
    "ProducerCache",
    "PunkRecordsError",
    "SecretUnavailable",
    "Settings",
    "Severity",
    "Store",
    "StoreUnavailable",
    "StoredEvent",
    "Unauthorized",
    "WriteResult",
    "container",
    "decode",
    "parse_batch",
    "parse_event",
    "redact",
    "redact_payload",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'punk_records' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"punk_records.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
