"""Kafka adapter: the producer (one per container, ``acks=all``, idempotent, bounded by the time
budget) and the health check's metadata probe."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.net.sasl.oauth import AbstractTokenProvider

from punk_records.acceptance import Record
from punk_records.aws_secrets import read_json_secret
from punk_records.breaker import CircuitBreaker, CircuitState
from punk_records.config import Settings
from punk_records.errors import ProduceError, RecordTooLarge
from punk_records.health import CHECK_TIMEOUT_S, DependencyDown
from punk_records.kafka_ca import server_ca_options
from punk_records.observability import logger, metrics

# How long the circuit stays open before a probe may look for a broker again, and how long
# that probe's TCP connect may take: together well under a second per refused request.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 0.5
# kafka-python's default batch size; smaller when records must be smaller (a batch of several
# records must fit the topic's max.message.bytes as well).
_BATCH_BYTES = 16_384


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
            # The same limit as the acceptance rule and the topic's max.message.bytes.
            max_request_size=settings.max_record_bytes,
            batch_size=min(_BATCH_BYTES, settings.max_record_bytes),
            **security_options(settings),
        )
    except KafkaError as exc:
        raise ProduceError(f"cannot connect to Kafka: {type(exc).__name__}", not_acked=[]) from exc


def produce(
    producer: KafkaProducer,
    topic: str,
    records: Sequence[Record],
    timeout_s: float,
    max_record_bytes: int | None = None,
) -> None:
    """Send every record and wait for all acknowledgements.

    Raise RecordTooLarge when the producer or the broker refuses a record as too large (no
    retry can help), else ProduceError naming the event ids Kafka did not acknowledge within
    ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    pending: list[tuple[Record, Any]] = []
    not_acked: list[str] = []
    cause: BaseException | None = None
    too_large: list[Record] = []
    refused_by_broker = False
    for record in records:
        if cause is not None:
            not_acked.append(str(record.envelope.event_id))
            continue
        try:
            future = producer.send(
                topic, value=record.value, key=record.key, headers=record.headers
            )
        except MessageSizeTooLargeError:
            too_large.append(record)
            not_acked.append(str(record.envelope.event_id))
            continue
        except KafkaError as exc:
            cause = exc
            not_acked.append(str(record.envelope.event_id))
            continue
        pending.append((record, future))
    for record, future in pending:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except MessageSizeTooLargeError:
            too_large.append(record)
            not_acked.append(str(record.envelope.event_id))
            refused_by_broker = True
        except KafkaError as exc:
            cause = cause or exc
            not_acked.append(str(record.envelope.event_id))
    if too_large:
        size = max(r.size for r in too_large)
        limit = max_record_bytes or size
        detail = (
            f"Kafka refused a record of up to {size} bytes as too large: the topic's "
            f"max.message.bytes is below MAX_RECORD_BYTES ({limit}); nothing is confirmed"
            if refused_by_broker
            else f"a record of up to {size} bytes is over the producer's max_request_size; "
            f"the limit is {limit} (MAX_RECORD_BYTES); nothing is confirmed"
        )
        error = RecordTooLarge(size, limit, detail=detail)
        error.refused_by_broker = refused_by_broker
        raise error from cause
    if not_acked:
        reason = type(cause).__name__ if cause else "unknown"
        raise ProduceError(
            f"Kafka did not acknowledge {len(not_acked)} of {len(records)} record(s): {reason}",
            not_acked=not_acked,
        ) from cause


def reachable(bootstrap_servers: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether any bootstrap server accepts a TCP connection within ``timeout_s``: the circuit
    breaker's probe, cheap enough to run while requests wait."""
    deadline = time.monotonic() + timeout_s
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=remaining):
                return True
        except (OSError, ValueError):
            continue
    return False


def _circuit_changed(old: CircuitState, new: CircuitState) -> None:
    if new is CircuitState.OPEN and old is CircuitState.CLOSED:
        metrics.add_metric(name="ProducerCircuitOpened", unit=MetricUnit.Count, value=1)
        logger.warning("producer circuit opened: refusing at once until a broker is reachable")
    elif new is CircuitState.CLOSED:
        logger.info("producer circuit closed: a broker is reachable again")


class ProducerCache:
    """The container's producer: created on first use, dropped after a failed produce so the
    next invocation starts with a fresh connection (for example after a broker restart).

    A circuit breaker sits in front: after a failed produce, requests are refused at once
    (CircuitOpen, a ProduceError) until a probe reaches a broker again.
    """

    def __init__(self, settings: Settings, breaker: CircuitBreaker | None = None) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        servers = settings.kafka_bootstrap_servers
        self.breaker = breaker or CircuitBreaker(
            lambda: reachable(servers), PROBE_INTERVAL_S, on_change=_circuit_changed
        )

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

    def produce(self, records: Sequence[Record]) -> None:
        """Produce to the configured topic within the configured budget.

        Raise CircuitOpen at once while no broker is known to be reachable, RecordTooLarge
        (the producer stays) or ProduceError (the producer is dropped, the circuit opens).
        """
        settings = self._settings
        budget_s = settings.kafka_produce_timeout_ms / 1000
        self.breaker.before_call()
        try:
            producer = self.get()
        except ProduceError as exc:
            self.breaker.record_failure()
            raise ProduceError(
                str(exc), not_acked=[str(r.envelope.event_id) for r in records]
            ) from exc
        try:
            produce(producer, settings.kafka_topic, records, budget_s, settings.max_record_bytes)
        except RecordTooLarge as exc:
            self.breaker.record_success()  # a broker answered: the way to Kafka is fine
            if exc.refused_by_broker:
                # kafka-python's idempotent producer refuses every later record of the
                # partition once the broker refused a batch: start a fresh one.
                self.reset()
            raise
        except ProduceError:
            self.breaker.record_failure()
            self.reset()
            raise
        self.breaker.record_success()


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
