"""How the local gateway and event source mapping call a function: one callable per instance."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

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


class InvokerPool:
    """Hands each invocation to a free instance, like Lambda's concurrency.

    One emulator runs one invocation at a time; ``n`` instances serve ``n`` requests at once
    and further requests wait for a free one.
    """

    def __init__(self, instances: Sequence[Invoke]) -> None:
        if not instances:
            raise ValueError("at least one function instance is needed")
        self._free: queue.Queue[Invoke] = queue.Queue()
        for instance in instances:
            self._free.put(instance)

    def __call__(self, event: dict[str, Any]) -> Any:
        instance = self._free.get()
        try:
            return instance(event)
        finally:
            self._free.put(instance)
