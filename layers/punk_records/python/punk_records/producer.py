"""Kafka adapter: the producer (one per container, ``acks=all``, idempotent, bounded by the time
budget) and the health check's metadata probe."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.net.sasl.oauth import AbstractTokenProvider

from punk_records.aws_secrets import read_json_secret
from punk_records.config import Settings
from punk_records.envelope import Envelope
from punk_records.errors import ProduceError
from punk_records.health import CHECK_TIMEOUT_S, DependencyDown


class _MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # untyped library
    """OAUTHBEARER tokens signed with the function's IAM role (MSK IAM auth)."""

    def __init__(self, region: str) -> None:
        super().__init__()
        self._region = region

    def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # only needed with IAM auth

        token, _expiry_ms = MSKAuthTokenProvider.generate_auth_token(self._region)
        return str(token)


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python security settings for the configured auth mode (none, scram, iam)."""
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


class KafkaProbe:
    """A metadata client kept for the container (like the producer), rebuilt after a failure.

    One check at a time: a check that finds the previous one still holding the client (a hung
    broker) reports ``timeout`` at its own deadline instead of queueing behind it.
    """

    def __init__(self, settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            timeout_ms = int(self._timeout_s * 1000)
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._settings.require("kafka_bootstrap_servers").split(","),
                client_id="punk-records-health",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                **security_options(self._settings),
            )
        return self._admin

    def check(self) -> None:
        """Fetch the topic's metadata; raise DependencyDown unless it has partitions."""
        if not self._lock.acquire(timeout=self._timeout_s):
            raise DependencyDown("timeout", "the previous Kafka check is still running")
        try:
            topics = self._client().describe_topics([self._settings.kafka_topic])
        except KafkaError as exc:
            self._reset()
            code = "unreachable" if isinstance(exc, KafkaTimeoutError) else "unavailable"
            raise DependencyDown(code, f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._lock.release()
        topic = next((t for t in topics if t.get("name") == self._settings.kafka_topic), None)
        if topic is None or topic.get("error_code") or not topic.get("partitions"):
            raise DependencyDown("topic_not_found")

    def _reset(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()

    def close(self) -> None:
        """Close the metadata client (tests, shutdown)."""
        with self._lock:
            self._reset()
