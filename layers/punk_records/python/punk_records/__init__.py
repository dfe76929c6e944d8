"""Punk Records domain package: envelope, redaction, Kafka producer and PostgreSQL store.

Shared by every function through the Lambda layer. Nothing here knows about Lambda events.
Names are imported on first use (PEP 562), so a function pays at cold start only for what it
touches: the consumer never loads kafka-python, the ingest function never loads psycopg
unless its health check runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from punk_records.config import Settings, get_settings
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
    )
    from punk_records.producer import ProducerCache, get_producer
    from punk_records.redaction import redact, redact_payload
    from punk_records.store import DeadLetter, EventStore, StoredEvent, WriteResult, get_store

# Public name -> the module that defines it.
_MODULES = {
    "Settings": "config",
    "get_settings": "config",
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
    "ProducerCache": "producer",
    "get_producer": "producer",
    "redact": "redaction",
    "redact_payload": "redaction",
    "DeadLetter": "store",
    "EventStore": "store",
    "StoredEvent": "store",
    "WriteResult": "store",
    "get_store": "store",
}

__all__ = [
    "ConfigurationError",
    "DeadLetter",
    "Envelope",
    "EventStore",
    "EventType",
    "InvalidEnvelope",
    "ProduceError",
    "ProducerCache",
    "PunkRecordsError",
    "SecretUnavailable",
    "Settings",
    "Severity",
    "StoreUnavailable",
    "StoredEvent",
    "WriteResult",
    "decode",
    "get_producer",
    "get_settings",
    "get_store",
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
