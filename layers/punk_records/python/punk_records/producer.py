"""Kafka producer: one per container, ``acks=all``, idempotent, bounded by the time budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.net.sasl.oauth import AbstractTokenProvider

from punk_records.aws_secrets import read_json_secret
from punk_records.config import Settings, get_settings
from punk_records.envelope import Envelope
from punk_records.errors import ProduceError
from punk_records.kafka_ca import server_ca_options


class _MskIamTokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens signed with the function's IAM role (MSK IAM auth)."""

    def __init__(self, region: str) -> None:
        super().__init__()
        self._region = region

    def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # only needed with IAM auth

        token, _expiry_ms = MSKAuthTokenProvider.generate_auth_token(self._region)
        return token


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python security settings for the configured auth mode (none, scram, iam), with
    the brokers' private root CA when one is configured."""
    return {**_auth_options(settings), **server_ca_options(settings)}


def _auth_options(settings: Settings) -> dict[str, Any]:
    if settings.kafka_auth_mode == "iam":
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": _MskIamTokenProvider(settings.aws_region),
        }
    if settings.kafka_auth_mode == "scram":
        secret = read_json_secret(settings.require("kafka_scram_secret_arn"))
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": secret.get("username"),
            "sasl_plain_password": secret.get("password"),
        }
    return {"security_protocol": "SSL" if settings.kafka_tls else "PLAINTEXT"}


def create_producer(settings: Settings) -> KafkaProducer:
    """A producer whose every wait fits inside ``kafka_produce_timeout_ms``.

    Raise ProduceError if no broker answers within half of that budget.
    """
    budget = settings.kafka_produce_timeout_ms
    try:
        return KafkaProducer(
            bootstrap_servers=settings.require("kafka_bootstrap_servers").split(","),
            client_id="punk-records-ingest",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            retry_backoff_ms=100,
            request_timeout_ms=budget // 2,
            delivery_timeout_ms=budget,
            max_block_ms=budget // 2,
            bootstrap_timeout_ms=budget // 2,
            **security_options(settings),
        )
    except KafkaError as exc:
        raise ProduceError(f"cannot connect to Kafka: {type(exc).__name__}", not_acked=[]) from exc


def produce(
    producer: KafkaProducer, topic: str, envelopes: Sequence[Envelope], timeout_s: float
) -> None:
    """Send every envelope and wait for all acknowledgements; raise ProduceError naming the
    event ids Kafka did not acknowledge within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pending: list[tuple[str, Any]] = []
    not_acked: list[str] = []
    cause: BaseException | None = None
    for env in envelopes:
        event_id = str(env.event_id)
        if cause is not None:
            not_acked.append(event_id)
            continue
        try:
            future = producer.send(
                topic, value=env.kafka_value(), key=env.kafka_key(), headers=env.kafka_headers()
            )
        except KafkaError as exc:
            cause = exc
            not_acked.append(event_id)
            continue
        pending.append((event_id, future))
    for event_id, future in pending:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            cause = cause or exc
            not_acked.append(event_id)
    if not_acked:
        reason = type(cause).__name__ if cause else "unknown"
        raise ProduceError(
            f"Kafka did not acknowledge {len(not_acked)} of {len(envelopes)} record(s): {reason}",
            not_acked=not_acked,
        ) from cause


class ProducerCache:
    """The container's producer: created on first use, dropped after a failed produce so the
    next invocation starts with a fresh connection (for example after a broker restart)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def get(self) -> KafkaProducer:
        """The cached producer, created if needed; raise ProduceError if Kafka is unreachable."""
        with self._lock:
            if self._producer is None:
                self._producer = create_producer(self._settings)
            return self._producer

    def reset(self) -> None:
        """Close the producer without waiting for records still in flight."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except KafkaError:
                # kafka-python 3.0 flushes inside close() and raises while records are still
                # pending (the broker is gone). Those records already failed for our caller:
                # stop the sender thread without sending them, or it would linger.
                producer._sender.force_close()

    def produce(self, envelopes: Sequence[Envelope]) -> None:
        """Produce to the configured topic within the configured budget; raise ProduceError."""
        budget_s = self._settings.kafka_produce_timeout_ms / 1000
        try:
            producer = self.get()
        except ProduceError as exc:
            raise ProduceError(str(exc), not_acked=[str(e.event_id) for e in envelopes]) from exc
        try:
            produce(producer, self._settings.kafka_topic, envelopes, budget_s)
        except ProduceError:
            self.reset()
            raise


@lru_cache(maxsize=1)
def get_producer() -> ProducerCache:
    """The container's producer cache (lazy: nothing connects until the first produce)."""
    return ProducerCache(get_settings())
