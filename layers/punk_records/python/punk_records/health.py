"""Dependency health: every check in parallel, each within a deadline, in one report.

The report names each dependency with a status, a latency and, on failure, a short reason code;
it never carries hosts, credentials or exception text (those go to the log only). The checks
themselves come from the wiring (:mod:`punk_records.bootstrap`): Kafka topic metadata and
PostgreSQL ``SELECT 1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Literal

from pydantic import BaseModel, Field

from punk_records.errors import ConfigurationError, SecretUnavailable, StoreUnavailable
from punk_records.observability import logger
from punk_records.ports import Store

# Seconds each check may take. Checks run in parallel, so /health answers within about this.
CHECK_TIMEOUT_S = 2.0
# Threads shared by every /health of the container: enough for each check once, plus one that
# a hung check may still hold (a check whose previous run has not finished is not started).
_POOL_THREADS = 4


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
    producer_circuit: Literal["closed", "open", "probing"] = Field(
        default="closed",
        description="This container's Kafka circuit breaker: `open` while produce is refused "
        "at once because the last attempt found no broker, `probing` while a probe runs.",
    )

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_postgres(store: Store) -> None:
    """``SELECT 1`` on the store's connection, retried once on a fresh one (the database may
    have restarted since the last use); raise DependencyDown."""
    try:
        store.ping()
    except StoreUnavailable:
        try:
            store.ping()
        except StoreUnavailable as exc:
            raise DependencyDown("unavailable", str(exc)) from exc


Outcome = tuple[float, str | None, str]


def _run(check: Callable[[], None]) -> Outcome:
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


class HealthChecker:
    """Runs named checks on a thread pool kept for the container.

    A check still running at its deadline is reported as ``timeout`` and left to finish in the
    background; until it does, later reports say ``timeout`` for it at once rather than start
    it again, so a hung dependency holds one thread, never the response.
    """

    def __init__(self, threads: int = _POOL_THREADS) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[str, Future[Outcome]] = {}
        self._lock = threading.Lock()

    def _submit(self, name: str, check: Callable[[], None]) -> Future[Outcome] | None:
        with self._lock:
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="health")
            future = self._running[name] = self._pool.submit(_run, check)
            return future

    def check(
        self, checks: Mapping[str, Callable[[], None]], timeout_s: float = CHECK_TIMEOUT_S
    ) -> HealthReport:
        """Run every check in parallel, each bounded by ``timeout_s``."""
        started = time.perf_counter()
        futures = {name: self._submit(name, check) for name, check in checks.items()}
        dependencies: dict[str, DependencyHealth] = {}
        for name, future in futures.items():
            code: str | None
            if future is None:
                elapsed, code, detail = 0.0, "timeout", "the previous check is still running"
            else:
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
        failing = [name for name, dep in dependencies.items() if dep.status == "error"]
        return HealthReport(
            status="error" if failing else "ok", failing=failing, dependencies=dependencies
        )

    def close(self) -> None:
        """Stop the pool without waiting for a hung check (tests, shutdown)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._running.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def check_health(
    checks: Mapping[str, Callable[[], None]], timeout_s: float = CHECK_TIMEOUT_S
) -> HealthReport:
    """Run ``checks`` once on a pool of their own (tools and tests; the function uses the
    container's :class:`HealthChecker`)."""
    checker = HealthChecker(threads=len(checks) or 1)
    try:
        return checker.check(checks, timeout_s)
    finally:
        checker.close()
