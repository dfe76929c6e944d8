"""Reading what landed in a real topic."""

from __future__ import annotations

import time

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, until ``expected`` arrived or timeout."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=1000,
    )  # fmt: skip
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(consumer)
    finally:
        consumer.close()
    return records
