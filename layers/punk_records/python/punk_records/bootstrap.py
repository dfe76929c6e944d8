"""The one place that wires the container: settings, token source, Kafka producer and probe,
PostgreSQL store and health checker, each built on first use and kept for the container.

Handlers ask :data:`container` for what they need and pass it to the use cases, which never pick
their own defaults; :meth:`Container.reset` closes and forgets all of it, so the next request
rebuilds everything from the environment (tests, tools). Client libraries are imported on first
use only: the consumer never loads kafka-python, the ingest function never loads psycopg unless
its health check runs. (Each function imports the adapter it always needs at init, where it
did before.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from punk_records.config import Settings
from punk_records.tokens import TokenSource

if TYPE_CHECKING:
    from punk_records.cursor import CursorCodec
    from punk_records.health import HealthChecker, HealthReport
    from punk_records.memory_store import MemoryReadStore
    from punk_records.producer import KafkaProbe, ProducerCache
    from punk_records.read_store import ReadStore
    from punk_records.store import EventStore


class Container:
    """The clients of one Lambda container (or one test), built lazily from ``environ``
    (default ``os.environ``, read when first needed)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._lock = threading.RLock()
        self._settings: Settings | None = None
        self._tokens: TokenSource | None = None
        self._producer: ProducerCache | None = None
        self._probe: KafkaProbe | None = None
        self._store: EventStore | None = None
        self._health: HealthChecker | None = None
        self._reader: ReadStore | None = None
        self._memory_reader: MemoryReadStore | None = None
        self._cursors: CursorCodec | None = None

    def settings(self) -> Settings:
        """The settings, read once; raise ConfigurationError naming a bad variable."""
        with self._lock:
            if self._settings is None:
                self._settings = Settings.from_env(self._environ)
            return self._settings

    def tokens(self) -> TokenSource:
        """The API token set (``API_TOKENS`` or the Secrets Manager secret)."""
        with self._lock:
            if self._tokens is None:
                from punk_records import aws_secrets

                self._tokens = TokenSource(self.settings(), aws_secrets.read_json_secret)
            return self._tokens

    def producer(self) -> ProducerCache:
        """The Kafka producer (lazy: nothing connects until the first produce)."""
        with self._lock:
            if self._producer is None:
                from punk_records.producer import ProducerCache

                self._producer = ProducerCache(self.settings())
            return self._producer

    def kafka_probe(self) -> KafkaProbe:
        """The health check's Kafka metadata client (lazy)."""
        with self._lock:
            if self._probe is None:
                from punk_records.producer import KafkaProbe

                self._probe = KafkaProbe(self.settings())
            return self._probe

    def store(self) -> EventStore:
        """The PostgreSQL event store (lazy: no connection until first use)."""
        with self._lock:
            if self._store is None:
                from punk_records.memory import MemoryRules
                from punk_records.store import EventStore, database_conninfo

                settings = self.settings()
                self._store = EventStore(
                    lambda: database_conninfo(settings),
                    settings.database_connect_timeout_s,
                    MemoryRules.from_settings(settings),
                )
            return self._store

    def reader(self) -> ReadStore:
        """The read API's queries, on the store's connection (the query function's store is
        its read-only login)."""
        with self._lock:
            if self._reader is None:
                from punk_records.read_store import ReadStore

                self._reader = ReadStore(self.store())
            return self._reader

    def memory_reader(self) -> MemoryReadStore:
        """The memory routes' queries, on the store's (read-only) connection."""
        with self._lock:
            if self._memory_reader is None:
                from punk_records.memory_store import MemoryReadStore

                self._memory_reader = MemoryReadStore(self.store())
            return self._memory_reader

    def cursors(self) -> CursorCodec:
        """The page-cursor signer (``CURSOR_KEY`` or its secret)."""
        with self._lock:
            if self._cursors is None:
                from punk_records import aws_secrets
                from punk_records.cursor import cursor_codec

                self._cursors = cursor_codec(self.settings(), aws_secrets.read_json_secret)
            return self._cursors

    def provision_query_login(self) -> str | None:
        """Create or update the query function's SELECT-only login from the secret in
        ``QUERY_DATABASE_SECRET_ARN`` (the migrate step); None when that is not set."""
        arn = self.settings().query_database_secret_arn
        if not arn:
            return None
        from punk_records import aws_secrets
        from punk_records.read_store import provision_reader_login

        secret = aws_secrets.read_json_secret(arn)
        return provision_reader_login(self.store().connection(), secret)

    def health_checks(self) -> dict[str, Callable[[], None]]:
        """The dependencies ``/health`` reports: Kafka topic metadata, PostgreSQL ``SELECT 1``."""
        from punk_records.health import check_postgres

        return {
            "kafka": lambda: self.kafka_probe().check(),
            "postgres": lambda: check_postgres(self.store()),
        }

    def health(self, timeout_s: float | None = None) -> HealthReport:
        """Run :meth:`health_checks` on the container's checker (default deadline:
        ``health.CHECK_TIMEOUT_S``)."""
        from punk_records.health import CHECK_TIMEOUT_S, HealthChecker

        with self._lock:
            if self._health is None:
                self._health = HealthChecker()
            checker = self._health
        report = checker.check(self.health_checks(), timeout_s or CHECK_TIMEOUT_S)
        with self._lock:
            producer = self._producer
        if producer is None:  # nothing produced yet: the circuit is closed
            return report
        return report.model_copy(update={"producer_circuit": producer.breaker.state.value})

    def reset(self) -> None:
        """Close and forget every client and the settings; the next use rebuilds them."""
        with self._lock:
            producer, probe, store, health = self._producer, self._probe, self._store, self._health
            self._settings = self._tokens = self._reader = self._cursors = None
            self._memory_reader = None
            self._producer = self._probe = self._store = self._health = None
        if producer is not None:
            producer.reset()
        if probe is not None:
            probe.close()
        if store is not None:
            store.reset()
        if health is not None:
            health.close()


container = Container()


def reset() -> None:
    """Reset the process's :data:`container` (tests and tools)."""
    container.reset()
