"""Faults under load against the real local stack: "202 means stored" must hold through each.

Each test runs a few seconds of load from clients that retry a batch with the same body on a
5xx or a connection error, injects one fault into a real process, heals it, and then checks what
a user relies on: every event answered ``202`` is stored, once; every ``503`` carried
``Retry-After``; and once the fault healed, no other ``5xx``. Figures (answers by status, time
to heal) are printed, not asserted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from local.postgres_service import postgres_bin
from local.processes import group_members
from local.stack import Stack
from tests.integration.load import Answer, Load, LoadResult, event
from tests.integration.stack_util import stack_cli

pytestmark = pytest.mark.integration

STORE_DEADLINE_S = 90
# Seconds of load after a fault healed: enough to see the answers settle.
AFTER_HEALING_S = 4


@pytest.fixture
def stack(local_stack: Stack) -> Stack:
    return local_stack


@pytest.fixture
def workspace() -> str:
    return f"ws-fault-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.2)


def wait_stored(stack: Stack, workspace: str, ids: set[str]) -> None:
    """Wait until ``ids`` are stored; on timeout the poller's log tail explains why."""
    try:
        wait_until(
            lambda: ids <= set(stored(stack, workspace)),
            f"{len(ids)} acknowledged events to be stored",
            STORE_DEADLINE_S,
        )
    except AssertionError as exc:
        lines = stack.esm.log_file.read_text(errors="replace").splitlines()
        tail = "\n".join([line[:300] for line in lines if "kafka.net" not in line][-40:])
        raise AssertionError(f"{exc}\n--- poller log ---\n{tail}") from None


def stored(stack: Stack, workspace: str) -> dict[str, int]:
    """event_id -> rows, for the workspace (reconnecting: PostgreSQL may have restarted)."""
    try:
        with psycopg.connect(stack.postgres.dsn, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT event_id::text, count(*) FROM events WHERE workspace_id = %s "
                "GROUP BY event_id",
                (workspace,),
            ).fetchall()
    except psycopg.OperationalError:
        return {}
    return dict(rows)


def healthy(stack: Stack) -> bool:
    load = Load(stack.api_url, stack.token(), "ws-health")
    return all(load.post_once(json.dumps(event("ws-health")).encode()).status == 202 for _ in "ab")


def check(stack: Stack, workspace: str, result: LoadResult, healed_at: float, name: str) -> None:
    """The promise, after a fault: acknowledged means stored once, and honest 5xx answers."""
    acked = set(result.acked)
    wait_stored(stack, workspace, acked)
    rows = stored(stack, workspace)
    recovered = result.first_accepted_after(healed_at)
    print(
        f"\n{name}: {len(acked)} events acknowledged, {len(rows)} stored, answers "
        f"{result.statuses()}, abandoned batches {len(result.abandoned)}, first 202 "
        f"{(recovered or float('nan')) - healed_at:.1f}s after healing"
    )
    assert len(result.acked) == len(acked), "an event was acknowledged twice"
    assert acked <= set(rows), "an acknowledged event is missing"
    assert set(rows) <= set(result.sent), "an event nobody sent was stored"
    assert all(count == 1 for count in rows.values()), "an event was stored twice"
    assert result.unavailable_without_retry_after() == []
    assert recovered is not None, "nothing was accepted after the fault healed"
    assert result.server_errors(since=recovered) == []
    assert result.abandoned == [], "a batch was never accepted despite retries"


def test_given_load_when_the_broker_is_stopped_then_refused_fast_until_it_returns(
    stack: Stack, workspace: str
) -> None:
    """The producer's circuit breaker: a 503 with Retry-After at once while no broker is
    reachable, instead of one produce budget per request; recovery once it is back."""
    client = Load(stack.api_url, stack.token(), workspace)
    sent: list[str] = []
    accepted: list[str] = []

    def post() -> Answer:
        one = event(workspace)
        sent.append(one["event_id"])
        answer = client.post_once(json.dumps([one]).encode())
        if answer.status == 202:
            accepted.append(one["event_id"])
        return answer

    assert post().status == 202

    stopped = time.monotonic()
    stack.kafka.stop()
    outage = [post() for _ in range(12)]
    stack.kafka.start()
    restarted = time.monotonic()
    recovery = []
    while time.monotonic() - restarted < 60:
        recovery.append(post())
        if recovery[-1].status == 202:
            break
        time.sleep(0.2)

    first_503 = next(a for a in outage if a.status == 503)
    refused_fast = [a for a in outage if a.code == "kafka_unreachable"]
    print(
        f"\nbreaker: first 503 {first_503.at - stopped:.2f}s after the broker stopped; "
        f"{len(refused_fast)} of {len(outage)} refused by the open circuit, median "
        f"{statistics.median(a.elapsed_s for a in refused_fast) * 1000:.0f} ms, max "
        f"{max(a.elapsed_s for a in refused_fast) * 1000:.0f} ms; first 202 "
        f"{recovery[-1].at - restarted:.2f}s after the broker was back"
    )
    assert [a.status for a in outage] == [503] * len(outage)
    assert all(a.retry_after for a in outage)
    # Each of the two function instances pays for one failed attempt; then the circuit answers.
    assert len(refused_fast) >= len(outage) - 2
    budget_s = 10
    assert all(a.elapsed_s < budget_s / 2 for a in refused_fast)
    assert recovery[-1].status == 202
    wait_stored(stack, workspace, set(accepted))
    assert set(stored(stack, workspace)) <= set(sent)


def run_with_fault(
    stack: Stack, workspace: str, fault: Callable[[], None], heal: Callable[[], None]
) -> tuple[LoadResult, float]:
    """Load until ``fault`` and ``heal`` are done and for a few seconds more; wait for the
    clients' last retries."""
    load = Load(stack.api_url, stack.token(), workspace, duration_s=120).start()
    wait_until(lambda: load.accepted() >= 10, "the load to flow")
    fault()
    heal()
    healed_at = time.monotonic()
    load.stop_after(AFTER_HEALING_S)
    return load.join(), healed_at


def test_given_load_when_the_broker_is_killed_and_restarted_then_every_202_is_stored_once(
    stack: Stack, workspace: str
) -> None:
    def kill() -> None:
        pid = int(stack.kafka.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not stack.kafka.is_running(), "the broker to die", 10)
        time.sleep(1)

    result, healed_at = run_with_fault(stack, workspace, kill, stack.kafka.start)

    check(stack, workspace, result, healed_at, "broker SIGKILL")


def test_given_load_when_postgres_stops_immediately_and_starts_then_every_202_is_stored_once(
    stack: Stack, workspace: str
) -> None:
    def stop_immediately() -> None:
        done = stack.postgres._pg_ctl(postgres_bin(), "stop", "-m", "immediate", "-w")
        assert done.returncode == 0, done.stderr
        time.sleep(2)

    result, healed_at = run_with_fault(stack, workspace, stop_immediately, stack.postgres.start)

    check(stack, workspace, result, healed_at, "PostgreSQL immediate stop")


def test_given_load_when_the_poller_is_killed_then_every_202_is_stored_once(
    stack: Stack, workspace: str
) -> None:
    def kill() -> None:
        pid = stack.esm.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not group_members(pid), "the poller to die", 10)

    def restart() -> None:
        up = stack_cli(stack.root, "up")
        assert up.returncode == 0, up.stderr

    result, healed_at = run_with_fault(stack, workspace, kill, restart)

    check(stack, workspace, result, healed_at, "poller SIGKILL")


def test_given_load_when_an_ingest_instance_is_killed_then_it_is_replaced_and_202_is_stored(
    stack: Stack, workspace: str
) -> None:
    before = [i["pid"] for i in stack.instances()["instances"]]
    assert len(before) == 2, "two ingest instances"

    def kill() -> None:
        os.killpg(before[0], signal.SIGKILL)
        wait_until(lambda: not group_members(before[0]), "the instance to die", 10)

    def replaced() -> None:
        wait_until(lambda: stack.instances()["restarts"] >= 1, "the instance to be replaced")

    result, healed_at = run_with_fault(stack, workspace, kill, replaced)

    check(stack, workspace, result, healed_at, "ingest instance SIGKILL")
    status = stack_cli(stack.root, "status")
    assert "IngestFunction: 2 instances" in status.stdout, status.stdout
    assert "restarts 1" in status.stdout, status.stdout
    assert healthy(stack)
