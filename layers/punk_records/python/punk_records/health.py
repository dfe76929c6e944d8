"""Dependency health: Kafka topic metadata and PostgreSQL ``SELECT 1``, each within a deadline.

The report names each dependency with a status, a latency and, on failure, a short reason code;
it never carries hosts, credentials or exception text (those go to the log only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError
from pydantic import BaseModel, Field

from punk_records.config import Settings, get_settings
from punk_records.errors import ConfigurationError, SecretUnavailable, StoreUnavailable
from punk_records.observability import logger
from punk_records.producer import security_options

if TYPE_CHECKING:
    from punk_records.store import EventStore

# Seconds each check may take. Checks run in parallel, so /health answers within about this.
CHECK_TIMEOUT_S = 2.0


class DependencyDown(Exception):
    """A check failed; ``code`` is the reason shown in the report."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        super().__init__(detail or code)


class DependencyHealth(BaseModel):
    """One dependency's state."""

    status: Literal["ok", "error"]
    latency_ms: float = Field(description="Time the check took, in milliseconds.")
    error: str | None = Field(
        default=None,
        description="Reason code when failing: timeout, unreachable, topic_not_found, "
        "not_configured, credentials_unavailable or unavailable.",
    )


class HealthReport(BaseModel):
    """Every dependency's state; ``status`` is ``ok`` only when all of them are."""

    status: Literal["ok", "error"]
    failing: list[str] = Field(description="Names of the failing dependencies.")
    dependencies: dict[str, DependencyHealth]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class KafkaProbe:
    """A metadata client kept for the container (like the producer), rebuilt after a failure."""

    def __init__(self, settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout_ms = int(timeout_s * 1000)
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._settings.require("kafka_bootstrap_servers").split(","),
                client_id="punk-records-health",
                bootstrap_timeout_ms=self._timeout_ms,
                request_timeout_ms=self._timeout_ms,
                **security_options(self._settings),
            )
        return self._admin

    def check(self) -> None:
        """Fetch the topic's metadata; raise DependencyDown unless it has partitions."""
        with self._lock:
            try:
                topics = self._client().describe_topics([self._settings.kafka_topic])
            except KafkaError as exc:
                self._reset()
                code = "unreachable" if isinstance(exc, KafkaTimeoutError) else "unavailable"
                raise DependencyDown(code, f"{type(exc).__name__}: {exc}") from exc
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


@lru_cache(maxsize=1)
def get_kafka_probe() -> KafkaProbe:
    """The container's Kafka probe (lazy: nothing connects until the first check)."""
    return KafkaProbe(get_settings())


def check_kafka() -> None:
    """Kafka answers with metadata for the configured topic; raise DependencyDown."""
    get_kafka_probe().check()


def get_store() -> EventStore:
    """The container's event store, imported on the first check rather than at cold start:
    the ingest function needs psycopg for nothing else."""
    from punk_records import store

    return store.get_store()


def check_postgres() -> None:
    """``SELECT 1`` on the container's connection, retried once on a fresh one (the database
    may have restarted since the last use); raise DependencyDown."""
    store = get_store()
    try:
        store.ping()
    except StoreUnavailable:
        try:
            store.ping()
        except StoreUnavailable as exc:
            raise DependencyDown("unavailable", str(exc)) from exc


def _run(check: Callable[[], None]) -> tuple[float, str | None, str]:
    started = time.perf_counter()
    try:
        check()
    except DependencyDown as exc:
        return time.perf_counter() - started, exc.code, str(exc)
    except ConfigurationError as exc:
        return time.perf_counter() - started, "not_configured", str(exc)
    except SecretUnavailable as exc:
        return time.perf_counter() - started, "credentials_unavailable", str(exc)
    except Exception as exc:  # a health check reports every failure, it never fails itself
        return time.perf_counter() - started, "unavailable", f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, None, ""


def check_health(
    checks: Mapping[str, Callable[[], None]] | None = None, timeout_s: float = CHECK_TIMEOUT_S
) -> HealthReport:
    """Run every check (default: kafka, postgres) in parallel, each bounded by ``timeout_s``.

    A check still running at its deadline is reported as ``timeout`` and left to finish in the
    background, so a hung dependency cannot hold the response.
    """
    if checks is None:
        checks = {"kafka": check_kafka, "postgres": check_postgres}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
    started = time.perf_counter()
    futures = {name: pool.submit(_run, check) for name, check in checks.items()}
    dependencies: dict[str, DependencyHealth] = {}
    try:
        for name, future in futures.items():
            remaining = max(0.0, started + timeout_s - time.perf_counter())
            try:
                elapsed, code, detail = future.result(timeout=remaining)
            except FutureTimeout:
                elapsed, code, detail = time.perf_counter() - started, "timeout", "no answer"
            if code:
                logger.warning(
                    "dependency unhealthy",
                    extra={"dependency": name, "reason": code, "detail": detail},
                )
            dependencies[name] = DependencyHealth(
                status="error" if code else "ok", latency_ms=round(elapsed * 1000, 1), error=code
            )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    failing = [name for name, dep in dependencies.items() if dep.status == "error"]
    return HealthReport(
        status="error" if failing else "ok", failing=failing, dependencies=dependencies
    )


# OpenAPI description of GET /health, passed to the route decorator (see docs/openapi.json).
GET_HEALTH_OPENAPI: dict[str, Any] = {
    "summary": "Dependency health",
    "description": "Checks Kafka (topic metadata) and PostgreSQL (`SELECT 1`) in parallel, each "
    f"within {CHECK_TIMEOUT_S:g} s. No authentication; the body names no host or credential.",
    "operation_id": "getHealth",
    "tags": ["health"],
    "responses": {
        200: {
            "description": "Every dependency is healthy.",
            "content": {"application/json": {"model": HealthReport}},
        },
        503: {
            "description": "At least one dependency is failing; `failing` names it.",
            "content": {"application/json": {"model": HealthReport}},
        },
    },
}
