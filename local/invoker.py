"""How the local gateway and event source mapping call a function: one callable per instance."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("local.invoker")

Invoke = Callable[[dict[str, Any]], Any]
"""Run the function once on an event and return its decoded result; raise FunctionError."""


class FunctionError(Exception):
    """The invocation failed (unhandled exception, timeout, crashed runtime)."""


def raising(invoke: Callable[[dict[str, Any]], Any]) -> Invoke:
    """Wrap an invoke that returns Lambda's error payload so that a function error raises.

    The runtime interface emulator answers an unhandled exception with a 200 and a body of
    ``{"errorMessage", "errorType", ...}`` (no X-Amz-Function-Error header), so the payload
    shape is the only signal.
    """

    def call(event: dict[str, Any]) -> Any:
        try:
            result = invoke(event)
        except FunctionError:
            raise
        except Exception as exc:  # the emulator or the runtime process failed
            raise FunctionError(f"{type(exc).__name__}: {exc}") from exc
        if isinstance(result, dict) and "errorType" in result and "statusCode" not in result:
            raise FunctionError(f"{result['errorType']}: {result.get('errorMessage', '')}")
        return result

    return call


@contextlib.contextmanager
def emulated(
    function: str,
    env: Mapping[str, str] | None = None,
    count: int = 1,
    env_vars: Path | None = None,
) -> Iterator[list[Invoke]]:
    """``count`` instances of template function ``function`` under the Lambda runtime emulator,
    with the overrides of the ``sam local invoke --env-vars`` file ``env_vars``, then ``env``.

    Each instance's output (the function's log lines, START/END/REPORT) is copied to stdout,
    prefixed with the function name, so the caller's log holds everything.
    """
    from local.emulator import LambdaFunction

    with contextlib.ExitStack() as stack:
        instances = []
        for number in range(count):
            fn = LambdaFunction(function, env_vars=env_vars, env_overrides=dict(env or {}))
            forwarder = _LogForwarder(fn.logs, f"{function}#{number}")
            stack.callback(forwarder.close)  # after the instance stopped: its last lines too
            stack.enter_context(fn)
            forwarder.start()
            instances.append(fn)
        yield [raising(fn.invoke) for fn in instances]


class _LogForwarder(threading.Thread):
    """Copies the complete new lines of a growing log to stdout, about once a second."""

    def __init__(self, read: Callable[[], str], prefix: str) -> None:
        super().__init__(name=f"logs-{prefix}", daemon=True)
        self._read = read
        self._prefix = prefix
        self._seen = 0
        self._closed = threading.Event()

    def run(self) -> None:
        while not self._closed.wait(1.0):
            self._forward()

    def close(self) -> None:
        """Forward what is left (called after the instance stopped) and end the thread."""
        self._closed.set()
        if self.is_alive():
            self.join(timeout=5)
        self._forward(final=True)

    def _forward(self, final: bool = False) -> None:
        text = self._read()
        if len(text) < self._seen:  # a new log file: start over
            self._seen = 0
        end = len(text) if final else text.rfind("\n", self._seen) + 1
        if end <= self._seen:
            return
        chunk, self._seen = text[self._seen : end], end
        out = "".join(f"[{self._prefix}] {line}\n" for line in chunk.splitlines())
        sys.stdout.write(out)
        sys.stdout.flush()


class Instance(Protocol):
    """One function instance as the pool manages it (a started ``LambdaFunction``)."""

    @property
    def pid(self) -> int | None: ...

    def invoke(self, event: Any) -> Any: ...

    def alive(self) -> bool: ...

    def exit_status(self) -> int | None: ...

    def stop(self) -> None: ...


@dataclass
class _Slot:
    number: int
    instance: Instance
    started: float = field(default_factory=time.time)
    invocations: int = 0


class InstancePool:
    """Function instances that are replaced when they die, as Lambda replaces a sandbox.

    Each invocation takes a free instance (further ones wait, like Lambda's concurrency). An
    instance found dead, by the invocation that hit it or by the periodic check of idle ones,
    is logged, stopped and replaced by a fresh one started with ``start(number)``; the
    invocation that hit it fails with FunctionError (the gateway answers it as API Gateway
    answers a crashed invocation) and the next one is served by the replacement. ``state_file``,
    when given, always holds the instances and the restart count (``make status`` shows them).
    """

    def __init__(
        self,
        start: Callable[[int], Instance],
        count: int,
        check_interval_s: float = 2.0,
        state_file: Path | None = None,
        name: str = "function",
    ) -> None:
        if count < 1:
            raise ValueError("at least one function instance is needed")
        self._start = start
        self._name = name
        self._state_file = state_file
        self._lock = threading.Lock()
        self._slots = [_Slot(n, start(n)) for n in range(count)]
        self.restarts = 0
        self._free: queue.Queue[_Slot] = queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._closed = threading.Event()
        self._write_state()
        self._watcher = threading.Thread(
            target=self._watch, args=(check_interval_s,), name="instance-check", daemon=True
        )
        self._watcher.start()

    def __call__(self, event: dict[str, Any]) -> Any:
        slot = self._free.get()
        try:
            slot.invocations += 1
            return raising(slot.instance.invoke)(event)
        except FunctionError:
            if not slot.instance.alive():
                slot = self._replace(slot, "died during an invocation")
            raise
        finally:
            self._free.put(slot)

    def instances(self) -> list[dict[str, Any]]:
        """Each slot's instance: number, pid, start time, invocations served."""
        with self._lock:
            return [
                {
                    "number": slot.number,
                    "pid": slot.instance.pid,
                    "started": slot.started,
                    "invocations": slot.invocations,
                }
                for slot in self._slots
            ]

    def _replace(self, slot: _Slot, why: str) -> _Slot:
        old_pid, status = slot.instance.pid, slot.instance.exit_status()
        slot.instance.stop()
        fresh = _Slot(slot.number, self._start(slot.number))
        with self._lock:
            self._slots[slot.number] = fresh
            self.restarts += 1
        log.warning(
            "%s instance #%d (pid %s) %s (exit status %s); replaced by pid %s (restart %d)",
            self._name,
            slot.number,
            old_pid,
            why,
            status,
            fresh.instance.pid,
            self.restarts,
        )
        self._write_state()
        return fresh

    def _watch(self, interval_s: float) -> None:
        """Check the idle instances every ``interval_s``; busy ones are checked by their call."""
        while not self._closed.wait(interval_s):
            idle: list[_Slot] = []
            while True:
                try:
                    idle.append(self._free.get_nowait())
                except queue.Empty:
                    break
            for slot in idle:
                try:
                    if not self._closed.is_set() and not slot.instance.alive():
                        slot = self._replace(slot, "died while idle")
                except Exception:  # the check must survive a failed restart; retried next round
                    log.exception("could not replace %s instance #%d", self._name, slot.number)
                finally:
                    self._free.put(slot)

    def _write_state(self) -> None:
        if self._state_file is None:
            return
        state = {"function": self._name, "restarts": self.restarts, "instances": self.instances()}
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self._state_file)

    def close(self) -> None:
        """Stop checking and stop every instance."""
        self._closed.set()
        self._watcher.join(timeout=10)
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            slot.instance.stop()


@contextlib.contextmanager
def instance_pool(
    function: str,
    count: int,
    env_vars: Path | None = None,
    state_file: Path | None = None,
    check_interval_s: float = 2.0,
) -> Iterator[InstancePool]:
    """``count`` self-replacing instances of template function ``function``, configured from
    the ``sam local invoke --env-vars`` file ``env_vars`` (logs as with :func:`emulated`)."""
    from local.emulator import LambdaFunction

    forwarders: list[_LogForwarder] = []

    def start(number: int) -> Instance:
        fn = LambdaFunction(function, env_vars=env_vars)
        fn.start()
        forwarder = _LogForwarder(fn.logs, f"{function}#{number}")
        forwarder.start()
        forwarders.append(forwarder)
        return fn

    pool = InstancePool(start, count, check_interval_s, state_file, function)
    try:
        yield pool
    finally:
        pool.close()
        for forwarder in forwarders:
            forwarder.close()
        if state_file is not None:
            state_file.unlink(missing_ok=True)
