"""The acceptance rule: what ingest produces and what the consumer stores, one function.

An event is accepted once it is validated, redacted and serialised canonically, and every limit
holds on exactly those bytes: the payload as it will be stored, and the Kafka record as the
producer and the broker count it. Ingest applies :func:`accept` before it produces anything; the
consumer applies the same function to what it reads back. Both sides therefore agree on every
event: whatever ingest answered ``202`` for, the consumer stores as an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from punk_records.config import Settings
from punk_records.envelope import DEFAULT_MAX_PAYLOAD_BYTES, Envelope
from punk_records.errors import InvalidEnvelope, RecordTooLarge
from punk_records.redaction import payload_json_clean

# kafka-python's default max_request_size, and about the brokers' default message.max.bytes.
DEFAULT_MAX_RECORD_BYTES = 1_048_576

# The canonical value ends with the payload; this marks where it starts. Every field before it
# is a scalar, and a quote inside a JSON string is always escaped, so the first occurrence is
# the top-level key.
_PAYLOAD_KEY = b',"payload":'

# A record batch of one record, as kafka-python's DefaultRecordBatchBuilder sizes it: the batch
# header (61 bytes) plus the most a record's own framing can take (21 bytes).
_BATCH_OVERHEAD = 61 + 21
# More than the five headers of any envelope can take with their framing (names, two UUIDs, the
# longest type, a schema version, the content type, every length as a 5-byte varint).
_HEADERS_BOUND = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """The size limits an accepted event meets, named after their settings."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits configured in ``settings``."""
        return cls(settings.max_payload_bytes, settings.max_record_bytes)


DEFAULT_LIMITS = Limits()


class Record(NamedTuple):
    """An accepted event: the redacted envelope, the exact Kafka record it travels as, and its
    payload as compact UTF-8 JSON, exactly as inside ``value`` (what is stored)."""

    envelope: Envelope
    key: bytes
    value: bytes
    payload_json: bytes

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The record's headers (built on demand: the consumer never needs them)."""
        return self.envelope.kafka_headers()

    @property
    def size(self) -> int:
        """Bytes this record takes as a batch of its own: what ``max_request_size`` and the
        topic's ``max.message.bytes`` are compared with."""
        return record_size(self.key, self.value, self.headers)


def _varint_size(value: int) -> int:
    """Bytes of ``value`` (not negative) as a zigzag varint (Kafka's record format)."""
    value <<= 1
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> int:
    """Upper bound of a one-record batch's size, computed as kafka-python's producer computes it
    before it sends (so a record within the limit never raises MessageSizeTooLargeError)."""
    size = _BATCH_OVERHEAD + _varint_size(len(headers))
    for part in (key, value):
        size += 1 if part is None else _varint_size(len(part)) + len(part)
    for name, header in headers:
        encoded = len(name.encode())
        size += _varint_size(encoded) + encoded + _varint_size(len(header)) + len(header)
    return size


def accept(envelope: Envelope, limits: Limits = DEFAULT_LIMITS) -> Record:
    """Redact ``envelope``, serialise it canonically and check every limit on those bytes.

    The canonical bytes are written first and their payload is scanned once
    (:func:`~punk_records.redaction.payload_json_clean`): most events hold nothing to redact,
    and then the payload is never walked. Only an event the scan flags is redacted (and
    serialised again if that changed it).

    Raise InvalidEnvelope (``loc`` ``["payload"]``, type ``too_large``) when the stored payload
    would exceed ``max_payload_bytes``, and RecordTooLarge when the Kafka record would exceed
    ``max_record_bytes``. Neither can ever pass by retrying.
    """
    clean, value = envelope, envelope.kafka_value()
    payload = _payload_of(value)
    if not payload_json_clean(payload):
        clean = envelope.redacted(payload)
        if clean is not envelope:
            value = clean.kafka_value()
            payload = _payload_of(value)
    record = Record(clean, clean.kafka_key(), value, payload)
    if len(payload) > limits.max_payload_bytes:
        raise InvalidEnvelope(
            [
                {
                    "loc": ["payload"],
                    "msg": f"payload is {len(payload)} bytes as stored (redacted, canonical "
                    f"JSON); the limit is {limits.max_payload_bytes} (MAX_PAYLOAD_BYTES)",
                    "type": "too_large",
                }
            ]
        )
    # Most records are far below the limit: an upper bound spares building the headers.
    bound = _BATCH_OVERHEAD + len(record.key) + len(record.value) + _HEADERS_BOUND
    if bound > limits.max_record_bytes:
        size = record.size
        if size > limits.max_record_bytes:
            raise RecordTooLarge(size, limits.max_record_bytes)
    return record


def _payload_of(value: bytes) -> bytes:
    """The payload's JSON inside a canonical value (which ends with it)."""
    return value[value.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY) : -1]


def accept_all(envelopes: Sequence[Envelope], limits: Limits = DEFAULT_LIMITS) -> list[Record]:
    """:func:`accept` for a batch as a whole: InvalidEnvelope lists every failing item by index
    (``loc`` starts with it); otherwise RecordTooLarge names every record over the limit."""
    records: list[Record] = []
    errors: list[dict[str, Any]] = []
    too_large: list[tuple[int, int]] = []
    for index, envelope in enumerate(envelopes):
        try:
            records.append(accept(envelope, limits))
        except RecordTooLarge as exc:
            too_large.append((index, exc.size))
        except InvalidEnvelope as exc:
            errors.extend({**err, "loc": [index, *err["loc"]]} for err in exc.errors)
    if errors:
        # A 400 lists every problem of the batch, records over the limit included.
        errors.extend(
            {"loc": [index], "msg": f"the Kafka record would be {size} bytes; the limit is "
             f"{limits.max_record_bytes} (MAX_RECORD_BYTES)", "type": "record_too_large"}
            for index, size in too_large
        )  # fmt: skip
        raise InvalidEnvelope(errors)
    if too_large:
        raise RecordTooLarge(max(size for _, size in too_large), limits.max_record_bytes,
                             indexes=[index for index, _ in too_large])  # fmt: skip
    return records
