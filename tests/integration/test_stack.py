"""End to end through the local stack: HTTP API → ingest → Kafka → ESM → consumer → PostgreSQL.

The stack runs once for the module in its own directory and ports (never ``.local/``), started
and stopped through the same CLI as ``make up`` / ``make down``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaProducer

from local.processes import group_members
from local.stack import TOPIC, Stack
from tests.factories import event_dict
from tests.integration.stack_util import stack_cli

pytestmark = pytest.mark.integration

DEADLINE_S = 30


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="punk-records-stack-"))
    result = stack_cli(root, "up", "--api-port", "0", "--fast-postgres")
    try:
        assert result.returncode == 0, f"up failed:\n{result.stdout}\n{result.stderr}"
        yield Stack(root)
    finally:
        stack_cli(root, "down")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(stack: Stack) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
        yield conn


def post(
    stack: Stack,
    body: Any,
    token: str | None = None,
    path: str = "/events",
    content_type: str = "application/json",
) -> tuple:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the local stack
        f"{stack.api_url}{path}",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {token or stack.token()}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=35) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stored(db: psycopg.Connection, ids: list[str]) -> dict[str, int]:
    rows = db.execute(
        "SELECT event_id::text, count(*) FROM events WHERE event_id = ANY(%s::uuid[]) "
        "GROUP BY event_id",
        (ids,),
    ).fetchall()
    return dict(rows)


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.2)


def wait_stored(db: psycopg.Connection, ids: list[str], deadline_s: float = DEADLINE_S) -> None:
    wait_until(lambda: len(stored(db, ids)) == len(ids), f"{len(ids)} events", deadline_s)


def produce(stack: Stack, value: bytes, key: bytes = b"ws-direct") -> None:
    with KafkaProducer(bootstrap_servers=stack.kafka.bootstrap) as producer:
        producer.send(TOPIC, key=key, value=value).get(timeout=10)


class Sender(threading.Thread):
    """Posts ``requests`` batches of ``per_request`` events, retrying a request until it is 202."""

    def __init__(self, stack: Stack, requests: int = 30, per_request: int = 5) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.batches = [
            [event_dict(workspace_id=f"ws-{n % 4}") for _ in range(per_request)]
            for n in range(requests)
        ]
        self.sent = 0
        self.failures: list[Any] = []

    @property
    def ids(self) -> list[str]:
        return [e["event_id"] for batch in self.batches for e in batch]

    def run(self) -> None:
        for batch in self.batches:
            for _attempt in range(5):
                status, body = post(self.stack, batch)
                if status == 202:
                    break
                self.failures.append((status, body))
                time.sleep(0.5)
            self.sent += 1
            time.sleep(0.05)


# ---------------------------------------------------------------------------- up


def test_given_the_stack_is_up_then_stack_env_and_status_describe_it(stack: Stack) -> None:
    env = dict(
        line.split("=", 1)
        for line in stack.env_file.read_text().splitlines()
        if line and not line.startswith("#")
    )

    assert env["PUNK_API_URL"] == stack.api_url
    assert env["PUNK_API_TOKEN"] == stack.token()
    assert env["PUNK_DATABASE_URL"].startswith("postgresql://")
    assert env["PUNK_KAFKA_BOOTSTRAP"] == stack.kafka.bootstrap
    assert env["PUNK_KAFKA_TOPIC"] == TOPIC
    status = stack_cli(stack.root, "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("running") == 4


# ---------------------------------------------------------------------------- through HTTP


def test_given_one_event_when_posted_then_it_is_stored_once(stack: Stack, db) -> None:
    event = event_dict()

    status, body = post(stack, event)

    assert status == 202, body
    wait_stored(db, [event["event_id"]])
    assert stored(db, [event["event_id"]]) == {event["event_id"]: 1}


def test_given_a_batch_posted_twice_when_stored_then_each_event_is_stored_once(
    stack: Stack, db
) -> None:
    batch = [event_dict(workspace_id=f"ws-{n}") for n in range(5)]
    ids = [e["event_id"] for e in batch]

    first, _ = post(stack, batch)
    second, _ = post(stack, {"events": batch})
    wait_stored(db, ids)
    sentinel = event_dict(workspace_id="ws-0")  # same partition as the resent ws-0 event
    post(stack, sentinel)
    wait_stored(db, [sentinel["event_id"]])

    assert (first, second) == (202, 202)
    assert stored(db, ids) == dict.fromkeys(ids, 1)


def test_given_a_batch_with_an_invalid_item_when_posted_then_400_and_nothing_is_stored(
    stack: Stack, db
) -> None:
    good = event_dict(workspace_id="ws-invalid")
    bad = event_dict(workspace_id="ws-invalid", severity="apocalyptic")

    status, body = post(stack, [good, bad])
    sentinel = event_dict(workspace_id="ws-invalid")  # same key: same partition, read after
    post(stack, sentinel)
    wait_stored(db, [sentinel["event_id"]])

    assert status == 400
    assert any(error["loc"][0] == 1 for error in body["errors"]), body
    assert stored(db, [good["event_id"]]) == {}


@pytest.mark.parametrize(
    ("content_type", "status", "error"),
    [
        ("application/json", 400, "malformed_json"),
        ("text/plain", 415, "unsupported_media_type"),
        ("application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_given_a_body_that_is_not_a_json_envelope_when_posted_then_the_documented_error(
    stack: Stack, db, content_type: str, status: int, error: str
) -> None:
    event = event_dict(workspace_id="ws-shape")
    body = json.dumps(event).encode() if status == 415 else json.dumps(event).encode()[:-1]

    answer = post(stack, body, content_type=content_type)
    sentinel = event_dict(workspace_id="ws-shape")
    post(stack, sentinel)
    wait_stored(db, [sentinel["event_id"]])

    assert (answer[0], answer[1]["error"]) == (status, error)
    assert stored(db, [event["event_id"]]) == {}


def test_given_a_wrong_token_when_posted_then_401_and_nothing_is_stored(stack: Stack, db) -> None:
    event = event_dict(workspace_id="ws-token")

    status, _ = post(stack, event, token="not-the-token")
    sentinel = event_dict(workspace_id="ws-token")
    post(stack, sentinel)
    wait_stored(db, [sentinel["event_id"]])

    assert status == 401
    assert stored(db, [event["event_id"]]) == {}


def test_given_concurrent_requests_when_posted_then_every_one_is_accepted_and_stored(
    stack: Stack, db
) -> None:
    events = [event_dict(workspace_id=f"ws-{n}") for n in range(8)]
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda e=e: statuses.append(post(stack, e)[0])) for e in events
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [202] * 8
    wait_stored(db, [e["event_id"] for e in events])


def get(stack: Stack, path: str, token: str | None = None) -> tuple:
    request = urllib.request.Request(  # noqa: S310 - the local stack
        f"{stack.api_url}{path}", headers={"Authorization": f"Bearer {token or stack.token()}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=35) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_given_events_posted_when_read_back_through_the_api_then_pages_and_one_event_come_back(
    stack: Stack, db
) -> None:
    # GIVEN three events of a fresh workspace, one with a secret, stored by the pipeline
    workspace = f"ws-read-{uuid.uuid4().hex[:6]}"
    events = [event_dict(workspace_id=workspace) for _ in range(3)]
    events[1]["payload"] = {"db_password": "hunter2"}
    assert post(stack, events)[0] == 202
    wait_stored(db, [e["event_id"] for e in events])

    # WHEN the query function is asked through the same endpoint, two at a time
    status, first = get(stack, f"/events?workspace_id={workspace}&limit=2")
    assert status == 200, first
    status, second = get(
        stack, f"/events?workspace_id={workspace}&limit=2&cursor={first['next_cursor']}"
    )
    assert status == 200, second

    # THEN every event comes back once, redacted, and one event by its id
    seen = [e["event_id"] for e in first["events"] + second["events"]]
    assert sorted(seen) == sorted(e["event_id"] for e in events)
    assert second["next_cursor"] is None
    status, one = get(stack, f"/events/{events[1]['event_id']}")
    assert status == 200
    assert one["payload"] == {"db_password": "[REDACTED:password]"}
    assert one["kafka"]["topic"] == TOPIC
    # AND bad requests get the documented errors, not 5xx
    assert get(stack, "/events")[0] == 400
    assert get(stack, f"/events?workspace_id={workspace}", token="nope")[0] == 401
    status, letters = get(stack, "/dead-letters?limit=1")
    assert status == 200, letters


def test_given_an_unknown_route_when_requested_then_api_gateways_404(stack: Stack) -> None:
    status, body = post(stack, {}, path="/nope")

    assert (status, body) == (404, {"message": "Not Found"})


# ---------------------------------------------------------------------------- straight to Kafka


def test_given_an_event_produced_to_kafka_when_consumed_then_it_is_stored(stack: Stack, db) -> None:
    event = event_dict(workspace_id="ws-direct")

    produce(stack, json.dumps(event).encode(), key=b"ws-direct")

    wait_stored(db, [event["event_id"]])


def test_given_a_poison_record_when_consumed_then_dead_lettered_and_the_next_record_stored(
    stack: Stack, db
) -> None:
    poison = f"not json {uuid.uuid4()}".encode()
    event = event_dict(workspace_id="ws-poison")

    produce(stack, poison, key=b"ws-poison")
    produce(stack, json.dumps(event).encode(), key=b"ws-poison")

    wait_stored(db, [event["event_id"]])
    rows = db.execute(
        "SELECT kafka_topic, kafka_partition FROM dead_letters WHERE raw_value = %s", (poison,)
    ).fetchall()
    (event_partition,) = db.execute(
        "SELECT kafka_partition FROM events WHERE event_id = %s", (event["event_id"],)
    ).fetchone()
    assert rows == [(TOPIC, event_partition)]


# ---------------------------------------------------------------------------- restart safety


def test_given_events_flowing_when_the_poller_is_killed_and_restarted_then_each_stored_once(
    stack: Stack, db
) -> None:
    sender = Sender(stack)
    sender.start()
    wait_until(lambda: sender.sent >= 5, "the stream to start")
    pid = stack.esm.pid()
    emulators = stack.esm.emulators()
    assert pid is not None
    assert emulators, "the consumer runs under the emulator"

    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not group_members(pid), "the poller to die", 10)
    restarted = stack_cli(stack.root, "up")
    sender.join(timeout=60)

    assert restarted.returncode == 0, restarted.stderr
    assert stack.esm.pid() not in (None, pid)
    assert all(group_members(e) == [] for e in emulators), "orphaned emulators were stopped"
    wait_stored(db, sender.ids)
    assert stored(db, sender.ids) == dict.fromkeys(sender.ids, 1)
    assert sender.failures == []


def test_given_events_flowing_when_postgres_stops_for_seconds_then_each_stored_once(
    stack: Stack, db
) -> None:
    sender = Sender(stack)
    sender.start()
    wait_until(lambda: sender.sent >= 5, "the stream to start")

    stack.postgres.stop()
    time.sleep(3)
    stack.postgres.start()
    sender.join(timeout=60)

    with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
        wait_stored(conn, sender.ids, deadline_s=45)
        assert stored(conn, sender.ids) == dict.fromkeys(sender.ids, 1)
    assert sender.failures == []


# ---------------------------------------------------------------------------- up/down twice


def test_given_the_stack_is_up_when_up_runs_again_then_it_reuses_everything(stack: Stack) -> None:
    api_pid, esm_pid, token = stack.api.pid(), stack.esm.pid(), stack.token()

    again = stack_cli(stack.root, "up")

    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert (stack.api.pid(), stack.esm.pid(), stack.token()) == (api_pid, esm_pid, token)


def _processes_under(root: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(root) in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_given_the_stack_is_up_when_down_runs_twice_then_no_process_is_left(stack: Stack) -> None:
    groups = [pid for pid in (stack.api.pid(), stack.esm.pid()) if pid is not None]
    assert len(groups) == 2
    groups += stack.api.emulators() + stack.esm.emulators()
    assert len(groups) == 7, "two ingest, two query and one consumer instance"
    assert _processes_under(stack.root)

    first = stack_cli(stack.root, "down")
    second = stack_cli(stack.root, "down")

    assert (first.returncode, second.returncode) == (0, 0)
    assert _processes_under(stack.root) == []
    assert all(group_members(pid) == [] for pid in groups)
    status = stack_cli(stack.root, "status")
    assert status.returncode == 1
    assert "running" not in status.stdout
