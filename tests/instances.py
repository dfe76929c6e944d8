"""Stand-ins for emulator instances, for the local gateway's pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from local.emulator import EmulatorError


class FakeInstance:
    """Runs ``handler``; once ``crash()``ed it is dead, and an invocation fails as the
    emulator's does when its process was killed."""

    pids = iter(range(1000, 2000))

    def __init__(self, handler: Callable[[dict[str, Any]], Any] = lambda _e: {"statusCode": 200}):
        self.handler = handler
        self.pid = next(self.pids)
        self.dead = False
        self.stopped = False

    def invoke(self, event: dict[str, Any]) -> Any:
        if self.dead:
            raise EmulatorError("the emulator did not answer: connection reset")
        return self.handler(event)

    def crash(self) -> None:
        self.dead = True

    def alive(self) -> bool:
        return not self.dead

    def exit_status(self) -> int | None:
        return -9 if self.dead else None

    def stop(self) -> None:
        self.stopped = True


def fakes(*handlers: Callable[[dict[str, Any]], Any]) -> Callable[[int], FakeInstance]:
    """A ``start(number)`` for InstancePool: instance n runs ``handlers[n]`` (the last one for
    replacements)."""
    return lambda n: FakeInstance(handlers[min(n, len(handlers) - 1)])
