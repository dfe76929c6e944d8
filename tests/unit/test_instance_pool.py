"""The local gateway's function instances: a dead one is found, logged and replaced."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from local.invoker import FunctionError, InstancePool
from tests.instances import FakeInstance


class Starts:
    """``start(number)`` that keeps every instance it made."""

    def __init__(self) -> None:
        self.made: list[FakeInstance] = []

    def __call__(self, number: int) -> FakeInstance:
        body = str(number)
        instance = FakeInstance(lambda _event: {"statusCode": 200, "body": body})
        self.made.append(instance)
        return instance


def test_given_a_killed_instance_when_a_call_hits_it_then_that_call_fails_and_it_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = Starts()
    state = tmp_path / "instances.json"
    pool = InstancePool(starts, 1, check_interval_s=60, state_file=state, name="IngestFunction")
    starts.made[0].crash()

    with caplog.at_level(logging.WARNING), pytest.raises(FunctionError):
        pool({})
    served = pool({})
    pool.close()

    assert served == {"statusCode": 200, "body": "0"}
    assert len(starts.made) == 2
    assert starts.made[0].stopped
    assert pool.restarts == 1
    assert "died during an invocation (exit status -9); replaced by pid" in caplog.text
    saved = json.loads(state.read_text())
    assert saved["restarts"] == 1
    assert [i["pid"] for i in saved["instances"]] == [starts.made[1].pid]


def test_given_an_idle_instance_killed_then_the_periodic_check_replaces_it() -> None:
    starts = Starts()
    pool = InstancePool(starts, 2, check_interval_s=0.05)
    starts.made[1].crash()

    deadline = time.monotonic() + 5
    while pool.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    results = {pool({})["body"] for _ in range(4)}
    pool.close()

    assert pool.restarts == 1
    assert results <= {"0", "1"}
    assert all(instance.stopped for instance in starts.made)


def test_given_a_function_error_in_a_live_instance_then_it_is_kept() -> None:
    def fail(_event: dict) -> dict:
        return {"errorType": "ValueError", "errorMessage": "boom"}

    made: list[FakeInstance] = []

    def start(_number: int) -> FakeInstance:
        made.append(FakeInstance(fail))
        return made[-1]

    pool = InstancePool(start, 1, 60)

    with pytest.raises(FunctionError):
        pool({})
    pool.close()

    assert (pool.restarts, len(made)) == (0, 1)
