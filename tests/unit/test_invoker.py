"""How the local gateway and ESM call a function (local/invoker.py), without an emulator."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any, ClassVar

import pytest

from local import emulator, invoker
from local.invoker import FunctionError, InstancePool, emulated, raising
from tests.instances import fakes


def test_given_the_emulators_error_payload_when_invoked_then_function_error_is_raised() -> None:
    def emulator(_event: dict[str, Any]) -> dict[str, Any]:
        return {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}

    with pytest.raises(FunctionError, match="ValueError: boom"):
        raising(emulator)({})


def test_given_an_emulator_failure_when_invoked_then_function_error_is_raised() -> None:
    def emulator(_event: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionResetError("runtime died")

    with pytest.raises(FunctionError, match="ConnectionResetError"):
        raising(emulator)({})


def test_given_a_normal_result_when_invoked_then_it_is_returned_unchanged() -> None:
    assert raising(lambda _e: {"statusCode": 200})({}) == {"statusCode": 200}


def test_given_a_pool_when_invoked_then_every_call_is_served_by_an_instance() -> None:
    calls: list[str] = []

    def instance(name: str) -> Callable[[dict[str, Any]], str]:
        def invoke(_event: dict[str, Any]) -> str:
            calls.append(name)
            return name

        return invoke

    pool = InstancePool(fakes(instance("a"), instance("b")), 2)

    results = {pool({}) for _ in range(4)}
    pool.close()

    assert len(calls) == 4
    assert results <= {"a", "b"}


def test_given_an_empty_pool_when_built_then_value_error():
    with pytest.raises(ValueError, match="at least one"):
        InstancePool(fakes(), 0)


def test_given_one_instance_when_two_calls_overlap_then_the_second_waits_for_it():
    active, overlaps = [0], []
    gate = threading.Lock()

    def slow(_event: dict[str, Any]) -> str:
        with gate:
            active[0] += 1
            overlaps.append(active[0])
        time.sleep(0.05)
        with gate:
            active[0] -= 1
        return "done"

    pool = InstancePool(fakes(slow), 1)
    threads = [threading.Thread(target=pool, args=({},)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    pool.close()
    assert overlaps == [1, 1, 1]


class FakeFunction:
    """Stands in for LambdaFunction: records its arguments, echoes events, writes a log."""

    made: ClassVar[list[FakeFunction]] = []

    def __init__(self, logical_id: str, **options: Any) -> None:
        self.logical_id = logical_id
        self.options = options
        self.started = self.stopped = False
        self.text = ""
        FakeFunction.made.append(self)

    def __enter__(self) -> FakeFunction:
        self.started = True
        self.text = "START\nhello from the handler\n"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopped = True
        self.text += "END"  # a last line without newline: forwarded on close

    def logs(self) -> str:
        return self.text

    def invoke(self, event: dict[str, Any]) -> Any:
        if event.get("fail"):
            return {"errorType": "KeyError", "errorMessage": "'x'"}
        return {"echo": event}


def test_given_emulated_instances_when_invoked_then_errors_raise_and_logs_are_prefixed(
    monkeypatch: pytest.MonkeyPatch,
):
    FakeFunction.made.clear()
    monkeypatch.setattr(emulator, "LambdaFunction", FakeFunction)
    out = io.StringIO()
    with (
        redirect_stdout(out),
        emulated("IngestFunction", {"A": "1"}, count=2, env_vars=None) as instances,
    ):
        assert [invoke({"n": 1}) for invoke in instances] == [{"echo": {"n": 1}}] * 2
        with pytest.raises(FunctionError, match="KeyError"):
            instances[0]({"fail": True})
    assert [f.options for f in FakeFunction.made] == [
        {"env_vars": None, "env_overrides": {"A": "1"}}
    ] * 2
    assert all(f.started and f.stopped for f in FakeFunction.made)
    lines = out.getvalue().splitlines()
    assert "[IngestFunction#0] hello from the handler" in lines
    assert "[IngestFunction#1] END" in lines


def test_given_a_log_that_restarts_when_forwarded_then_the_new_file_is_read_from_its_start():
    text = ["first line\n"]
    forwarder = invoker._LogForwarder(lambda: text[0], "fn")
    out = io.StringIO()
    with redirect_stdout(out):
        forwarder._forward()
        text[0] = "new\n"  # a shorter log: the instance started a new file
        forwarder._forward()
    assert out.getvalue().splitlines() == ["[fn] first line", "[fn] new"]


def test_given_a_partial_line_when_forwarded_then_it_waits_for_the_rest_unless_final():
    text = ["complete\npart"]
    forwarder = invoker._LogForwarder(lambda: text[0], "fn")
    out = io.StringIO()
    with redirect_stdout(out):
        forwarder._forward()
        forwarder._forward(final=True)
    assert out.getvalue().splitlines() == ["[fn] complete", "[fn] part"]
