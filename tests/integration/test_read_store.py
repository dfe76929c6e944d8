"""The read side against the real PostgreSQL: query plans, the read-only role, pagination under
concurrent writes, combined filters, redacted payloads and dead letters."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.query import seed
from local.services import Postgres
from punk_records.bootstrap import Container
from punk_records.consumer import KafkaRecord, consume
from punk_records.cursor import CursorCodec
from punk_records.errors import InvalidCursor
from punk_records.ports import StoredEvent
from punk_records.query import (
    DeadLetterQuery,
    EventQuery,
    EventView,
    get_event,
    list_dead_letters,
    list_events,
)
from punk_records.read_store import (
    EVENT_BY_ID_SQL,
    ReadStore,
    dead_letters_sql,
    events_sql,
    grant_reader_login,
)
from punk_records.store import EventStore
from tests.factories import envelope, event_dict, reader_token

pytestmark = pytest.mark.integration

KEY = "integration-cursor-key-" + "k" * 20
READER = "punk_query_test"
READER_PASSWORD = "reader-pw"


@pytest.fixture(scope="module")
def reader_dsn(postgres: Postgres) -> str:
    """The query function's login: a member of the read-only group role of migration 0002."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        grant_reader_login(conn, READER, READER_PASSWORD)
    return make_conninfo(postgres.dsn, user=READER, password=READER_PASSWORD)


@pytest.fixture
def reader(reader_dsn: str, db: psycopg.Connection) -> Iterator[ReadStore]:
    store = EventStore(lambda: reader_dsn)
    yield ReadStore(store)
    store.reset()


def walk(reader: ReadStore, params: dict[str, list[str]], limit: int, tok=None) -> list[dict]:
    """Every page of a query, concatenated."""
    cursors = CursorCodec(KEY)
    seen: list[dict] = []
    cursor = None
    while True:
        query = {**params, "limit": [str(limit)]} | ({"cursor": [cursor]} if cursor else {})
        page = list_events(tok or reader_token(["*"]), query, reader, cursors)
        seen += [json.loads(item) for item in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


# ---------------------------------------------------------------------------- query plans


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _plan(conn: psycopg.Connection, statement: Any, params: Any) -> dict[str, Any]:
    text = statement.as_string(conn) if hasattr(statement, "as_string") else statement
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {text}", params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


T0 = datetime(2026, 10, 27, tzinfo=UTC)
AFTER = (T0 + timedelta(days=3), uuid.UUID(int=0))
TRACE = uuid.UUID(hashlib.md5(b"trace1234").hexdigest())  # noqa: S324 (as the seed SQL)
EVENT_SHAPES: dict[str, dict[str, Any]] = {
    "workspace": {},
    "one type": {"type": ["task.created"]},
    "several types": {"type": ["task.created", "risk.detected", "memory.promoted"]},
    "satellite": {"satellite_id": "sat-3"},
    "trace": {"trace_id": TRACE},
    "severity": {"severity": "high"},
    "time range": {"since": T0 + timedelta(days=1), "until": T0 + timedelta(days=2)},
    "everything": {
        "type": ["task.created", "risk.detected"],
        "satellite_id": "sat-3",
        "severity": "high",
        "since": T0 + timedelta(days=1),
        "until": T0 + timedelta(days=20),
    },
}


@pytest.fixture(scope="module")
def analysed(postgres: Postgres) -> Iterator[psycopg.Connection]:
    """100,000 events across 100 workspaces and 20,000 dead letters, analysed, so the planner
    sees realistic statistics (on a near-empty table every plan is a sequential scan)."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, dead_letters")
        seed(conn, 100_000, report=lambda _message: None)
        conn.execute(
            "INSERT INTO dead_letters (raw_value, raw_key, kafka_topic, kafka_partition,"
            " kafka_offset, error, received_at)"
            " SELECT 'x'::bytea, ('ws-' || i % 100)::bytea, 'topic-' || i % 4, 0, i, 'bad',"
            "  timestamptz '2026-10-27' + i * interval '1 minute'"
            " FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE dead_letters")
        yield conn
        conn.execute("TRUNCATE events, dead_letters")


@pytest.mark.parametrize("after", [None, AFTER], ids=["first page", "next page"])
@pytest.mark.parametrize("shape", EVENT_SHAPES)
def test_given_each_events_query_shape_when_explained_then_no_sequential_scan(
    analysed: psycopg.Connection, shape: str, after: Any
) -> None:
    query = EventQuery.model_validate({"workspace_id": "ws-7", **EVENT_SHAPES[shape]})
    statement, params = events_sql(query, after, 101)
    plan = _plan(analysed, statement, params)
    scans = list(_scans(plan))
    assert ("Seq Scan", "events") not in scans, json.dumps(plan, indent=1)
    assert any("Index" in node for node, relation in scans), scans


def test_given_an_event_id_when_explained_then_the_primary_key_serves_it(
    analysed: psycopg.Connection,
) -> None:
    plan = _plan(analysed, EVENT_BY_ID_SQL, (uuid.uuid4(),))
    assert plan["Node Type"] == "Index Scan"
    assert plan["Index Name"] == "events_pkey"


@pytest.mark.parametrize(
    ("params", "keys", "after"),
    [
        ({}, None, None),
        ({"topic": "topic-1"}, None, None),
        ({"since": T0 + timedelta(days=3)}, None, (T0 + timedelta(days=4), 0)),
        ({"topic": "topic-1"}, frozenset({b"ws-1", b"ws-2"}), (T0 + timedelta(days=4), 0)),
    ],
    ids=["all", "topic", "since and cursor", "topic, workspaces and cursor"],
)
def test_given_each_dead_letter_query_shape_when_explained_then_no_sequential_scan(
    analysed: psycopg.Connection, params: dict, keys: Any, after: Any
) -> None:
    statement, values = dead_letters_sql(DeadLetterQuery(**params), keys, after, 101)
    plan = _plan(analysed, statement, values)
    assert ("Seq Scan", "dead_letters") not in list(_scans(plan)), json.dumps(plan, indent=1)


# ---------------------------------------------------------------------------- read-only role


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO events (event_id, ts, workspace_id, satellite_id, trace_id, type, severity,"
        " confidence)"
        " VALUES (gen_random_uuid(), now(), 'w', 's', gen_random_uuid(), 't', 'low', 0)",
        "UPDATE events SET severity = 'low'",
        "DELETE FROM dead_letters",
        "TRUNCATE events",
        "CREATE TABLE sneaky (id int)",
        "DROP TABLE events",
        "SELECT * FROM schema_migrations",
    ],
)
def test_given_the_query_login_when_it_does_anything_but_select_then_postgres_refuses(
    reader_dsn: str, statement: str
) -> None:
    with psycopg.connect(reader_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() is not None
        # Even with the read-only default switched off, the grants stop it.
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_given_the_login_granted_twice_when_it_connects_then_the_new_password_works(
    postgres: Postgres, reader_dsn: str
) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        grant_reader_login(conn, READER, "rotated-pw")
    with psycopg.connect(make_conninfo(reader_dsn, password="rotated-pw")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (READER,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(reader_dsn, connect_timeout=5).close()
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        grant_reader_login(conn, READER, READER_PASSWORD)


# ---------------------------------------------------------------------------- pagination


def _stored(ts: datetime, workspace: str = "ws-a", **fields: Any) -> StoredEvent:
    return StoredEvent(envelope(ts=ts.isoformat(), workspace_id=workspace, **fields))


def test_given_10000_events_when_walked_while_new_ones_arrive_then_no_gap_and_no_repeat(
    postgres: Postgres, db: psycopg.Connection, reader: ReadStore
) -> None:
    # GIVEN 10,000 events of ws-a, many sharing a timestamp (the tie is broken by event_id)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    writer = EventStore(lambda: postgres.dsn)
    originals = [_stored(base + timedelta(milliseconds=(i // 5) * 7)) for i in range(10_000)]
    writer.write(originals)
    writer.write([_stored(base, workspace="ws-b") for _ in range(500)])
    wanted = {str(e.envelope.event_id) for e in originals}

    # AND a writer that keeps adding ws-a events, before, among and after the walked range
    stop = threading.Event()
    added: list[str] = []

    def keep_writing() -> None:
        store = EventStore(lambda: postgres.dsn)
        i = 0
        while not stop.is_set():
            offset = timedelta(seconds=(i % 40) - 5)
            batch = [_stored(base + offset + timedelta(microseconds=j)) for j in range(25)]
            store.write(batch)
            added.extend(str(e.envelope.event_id) for e in batch)
            i += 1
        store.reset()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        # WHEN a client walks the workspace in pages of 250
        seen = walk(reader, {"workspace_id": ["ws-a"]}, 250)
    finally:
        stop.set()
        thread.join()
    writer.reset()

    # THEN every original event came exactly once, nothing came twice, all in keyset order
    ids = [item["event_id"] for item in seen]
    assert len(ids) == len(set(ids))
    assert wanted <= set(ids)
    assert set(ids) <= wanted | set(added)
    keys = [(item["ts"], item["event_id"]) for item in seen]
    assert keys == sorted(keys)
    assert all(item["workspace_id"] == "ws-a" for item in seen)
    assert added, "the writer added nothing while the walk ran"


# ---------------------------------------------------------------------------- filters


def _filter_fixture(postgres: Postgres) -> list[StoredEvent]:
    base = datetime(2026, 11, 2, tzinfo=UTC)
    kinds = ["task.created", "risk.detected", "finding.logged"]
    traces = [str(uuid.UUID(int=n + 1)) for n in range(3)]
    events = [
        _stored(
            base + timedelta(minutes=i),
            workspace="ws-a" if i % 5 else "ws-b",
            type=kinds[i % 3],
            satellite_id=f"sat-{i % 4}",
            severity=("low", "medium", "high")[i % 7 % 3],
            trace_id=traces[i % 11 % 3],
        )
        for i in range(600)
    ]
    writer = EventStore(lambda: postgres.dsn)
    writer.write(events)
    writer.reset()
    return events


FILTERS = [
    {"type": ["task.created"]},
    {"type": ["task.created", "risk.detected"], "severity": ["high"]},
    {"satellite_id": ["sat-1"], "severity": ["low"]},
    {"trace_id": [str(uuid.UUID(int=2))], "type": ["finding.logged"]},
    {"since": ["2026-11-02T03:00:00Z"], "until": ["2026-11-02T06:30:00+00:00"]},
    {
        "type": ["risk.detected,finding.logged"],
        "satellite_id": ["sat-2"],
        "since": ["2026-11-02T01:00:00"],
        "until": ["2026-11-02T09:00:00Z"],
        "trace_id": [str(uuid.UUID(int=1))],
    },
]


def _matches(event: StoredEvent, params: dict[str, list[str]]) -> bool:
    env = event.envelope
    types = {t for value in params.get("type", []) for t in value.split(",")}
    since = params.get("since", [None])[0]
    until = params.get("until", [None])[0]

    def utc(text: str) -> datetime:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return (
        env.workspace_id == "ws-a"
        and (not types or env.type.value in types)
        and params.get("satellite_id", [env.satellite_id])[0] == env.satellite_id
        and params.get("severity", [env.severity.value])[0] == env.severity.value
        and params.get("trace_id", [str(env.trace_id)])[0] == str(env.trace_id)
        and (since is None or env.ts >= utc(since))
        and (until is None or env.ts < utc(until))
    )


def test_given_filters_when_combined_then_exactly_the_matching_events_come_back(
    postgres: Postgres, reader: ReadStore
) -> None:
    events = _filter_fixture(postgres)
    for params in FILTERS:
        expected = sorted(
            (e.envelope.ts, str(e.envelope.event_id)) for e in events if _matches(e, params)
        )
        assert expected, f"the fixture has no event for {params}"
        got = walk(reader, {"workspace_id": ["ws-a"], **params}, 7)
        assert [item["event_id"] for item in got] == [eid for _ts, eid in expected], params


def test_given_a_cursor_when_reused_with_other_filters_or_altered_then_400(
    postgres: Postgres, reader: ReadStore
) -> None:
    _filter_fixture(postgres)
    cursors = CursorCodec(KEY)
    first = list_events(
        reader_token(["*"]), {"workspace_id": ["ws-a"], "limit": ["3"]}, reader, cursors
    )
    cursor = first.next_cursor
    assert cursor
    for params in (
        {"workspace_id": ["ws-b"], "cursor": [cursor]},
        {"workspace_id": ["ws-a"], "type": ["task.created"], "cursor": [cursor]},
        {
            "workspace_id": ["ws-a"],
            "cursor": [cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")],
        },
    ):
        with pytest.raises(InvalidCursor):
            list_events(reader_token(["*"]), params, reader, cursors)


# ---------------------------------------------------------------------------- stored views


def _record(value: bytes, offset: int, key: bytes = b"ws-a") -> KafkaRecord:
    return KafkaRecord("punk-records.events.v1", 2, offset, key, value)


def test_given_an_event_with_a_secret_when_consumed_and_read_then_it_comes_back_redacted(
    postgres: Postgres, reader: ReadStore
) -> None:
    # GIVEN an event carrying secrets, produced to Kafka by something other than ingest
    event = event_dict(
        workspace_id="ws-a",
        payload={"db_password": "hunter2", "note": "key AKIAABCDEFGHIJKLMNOP here", "n": 1},
    )
    writer = EventStore(lambda: postgres.dsn)
    consume([_record(json.dumps(event).encode(), 41)], writer)
    writer.reset()

    # WHEN it is read back, alone and in a page
    document = json.loads(get_event(reader_token(), event["event_id"], reader))
    page = list_events(reader_token(), {"workspace_id": ["ws-a"]}, reader, CursorCodec(KEY))

    # THEN the payload is the redacted one, with its Kafka coordinates and received_at
    assert json.loads(page.items[0]) == document
    EventView.model_validate(document)  # the documented shape, no field more or less
    assert "hunter2" not in json.dumps(document)
    assert "AKIAABCDEFGHIJKLMNOP" not in json.dumps(document)
    assert document["payload"]["db_password"].startswith("[REDACTED:")
    assert document["payload"]["n"] == 1
    assert document["kafka"] == {"topic": "punk-records.events.v1", "partition": 2, "offset": 41}
    assert document["event_id"] == event["event_id"]
    assert document["ts"] == "2026-11-26T04:00:00.000000Z"
    received = datetime.fromisoformat(document["received_at"].replace("Z", "+00:00"))
    assert abs(received - datetime.now(UTC)) < timedelta(minutes=5)


def test_given_poison_records_with_secrets_when_listed_then_previews_carry_no_secret(
    postgres: Postgres, reader: ReadStore
) -> None:
    # GIVEN dead letters of two workspaces, with secrets in JSON and in plain text
    writer = EventStore(lambda: postgres.dsn)
    poison = [
        _record(b'{"event_id": "nope", "api_key": "sk_live_51Habcdefghijklmnop"}', 1),
        _record(b"not json at all, password=hunter2 and AKIAABCDEFGHIJKLMNOP", 2),
        _record(b'{"workspace_id": "ws-b", "password": "swordfish"}', 3, key=b"ws-b"),
        _record(b"\xff\xfe binary", 4),
    ]
    outcome = consume(poison, writer)
    writer.reset()
    assert outcome.dead_lettered == 4

    # WHEN a ws-a token lists them, and a '*' token pages through all of them
    mine = list_dead_letters(reader_token(), {}, reader, CursorCodec(KEY))
    everything: list[dict] = []
    cursor = None
    while True:
        params = {"limit": ["1"]} | ({"cursor": [cursor]} if cursor else {})
        page = list_dead_letters(reader_token(["*"]), params, reader, CursorCodec(KEY))
        everything += [json.loads(item) for item in page.items]
        if not (cursor := page.next_cursor):
            break

    # THEN the ws-a token sees ws-a's three, the '*' token all four, in order; neither a preview
    # nor a stored value holds a secret (dead letters are stored redacted), and a value with
    # nothing to redact is there byte for byte
    assert [json.loads(i)["offset"] for i in mine.items] == [1, 2, 4]
    assert [item["offset"] for item in everything] == [1, 2, 3, 4]
    previews = " ".join(item["preview"] for item in everything)
    values = [base64.b64decode(item["value_base64"]) for item in everything]
    for secret in ("sk_live_51Habcdefghijklmnop", "hunter2", "AKIAABCDEFGHIJKLMNOP", "swordfish"):
        assert secret not in previews
        assert not any(secret.encode() in value for value in values)
    assert values[3] == poison[3].value
    assert everything[1]["reason"].startswith("value is not JSON")
    assert everything[0]["topic"] == "punk-records.events.v1"
    assert everything[0]["partition"] == 2


def test_given_a_topic_filter_when_listing_dead_letters_then_only_that_topic_comes_back(
    postgres: Postgres, reader: ReadStore
) -> None:
    writer = EventStore(lambda: postgres.dsn)
    consume([_record(b"x", 1), KafkaRecord("other-topic", 0, 9, b"ws-a", b"y")], writer)
    writer.reset()
    page = list_dead_letters(reader_token(), {"topic": ["other-topic"]}, reader, CursorCodec(KEY))
    assert [json.loads(i)["topic"] for i in page.items] == ["other-topic"]
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = list_dead_letters(reader_token(), {"since": [since]}, reader, CursorCodec(KEY))
    assert later.items == []


def test_given_the_query_login_secret_when_the_migrate_step_runs_then_that_login_can_select(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the query function's RDS-style secret in Secrets Manager (moto)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    params = conninfo_to_dict(postgres.dsn)
    secret = {
        "host": params["host"],
        "port": params["port"],
        "username": "punk_query_from_secret",
        "password": "from-secret-pw",
        "dbname": params["dbname"],
        "sslmode": "disable",
    }
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="punk/query-db", SecretString=json.dumps(secret))["ARN"]
        container = Container({"DATABASE_URL": postgres.dsn, "QUERY_DATABASE_SECRET_ARN": arn})
        # WHEN the migrate step provisions it (twice: deploys repeat it)
        assert container.provision_query_login() == "punk_query_from_secret"
        assert container.provision_query_login() == "punk_query_from_secret"
        container.reset()
        # THEN a query container configured with that same secret reads, and cannot write
        reader_container = Container({"DATABASE_SECRET_ARN": arn})
        rows = reader_container.reader().events(EventQuery(workspace_id="ws-x"), None, 10)
        assert rows == []
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader_container.store().connection().execute("CREATE TEMP TABLE t (i int)")
        reader_container.reset()
    parameters.clear_caches()
