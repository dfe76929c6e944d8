"""Punk Records domain package: envelope, redaction, Kafka producer and PostgreSQL store.

Shared by every function through the Lambda layer. Nothing here knows about Lambda events.
"""

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
