"""A circuit breaker for the Kafka producer: fail fast while no broker is reachable.

Without it, every request during a broker outage waits the whole produce budget before its
``503``, and clients pile up. Once a produce attempt failed, the circuit is open: calls are
refused at once (:class:`~punk_records.errors.CircuitOpen`) until ``probe_interval_s`` has
passed; then one caller runs a cheap probe, and only when the probe reaches a broker does the
circuit close and the call go ahead. A probe that fails keeps the circuit open for another
interval. Thread-safe; time comes from ``clock`` so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from punk_records.errors import CircuitOpen


class CircuitState(StrEnum):
    """``closed``: calls go through; ``open``: refused at once; ``probing``: a probe is running."""

    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"


class CircuitBreaker:
    """Guards calls to a dependency; see the module docstring for the states."""

    def __init__(
        self,
        probe: Callable[[], bool],
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState, CircuitState], None] | None = None,
    ) -> None:
        self._probe = probe
        self._interval = probe_interval_s
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def state(self) -> CircuitState:
        return self._state

    def _set(self, state: CircuitState) -> None:
        # Called with the lock held; the callback only records (log line, metric).
        previous, self._state = self._state, state
        if previous != state and self._on_change is not None:
            self._on_change(previous, state)

    def before_call(self) -> None:
        """Return when the call may go ahead; raise CircuitOpen while it must not.

        When the circuit is open and the interval has passed, this caller runs the probe (others
        are refused meanwhile); a probe that raises counts as a failed probe.
        """
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return
            now = self._clock()
            if self._state is CircuitState.PROBING or now < self._next_probe:
                raise CircuitOpen(retry_after_s=max(0.0, self._next_probe - now))
            self._set(CircuitState.PROBING)
        try:
            reachable = self._probe()
        except Exception:  # a probe that cannot run found no broker
            reachable = False
        with self._lock:
            if reachable:
                self._set(CircuitState.CLOSED)
                return
            self._next_probe = self._clock() + self._interval
            self._set(CircuitState.OPEN)
        raise CircuitOpen(retry_after_s=self._interval)

    def record_success(self) -> None:
        """The call reached the dependency: keep (or put) the circuit closed."""
        with self._lock:
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """The call found the dependency unreachable: open the circuit for one interval."""
        with self._lock:
            self._next_probe = self._clock() + self._interval
            self._set(CircuitState.OPEN)
