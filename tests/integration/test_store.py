"""The event store against the real PostgreSQL server."""

from __future__ import annotations

import psycopg
import pytest

from punk_records import migrations
from punk_records.errors import StoreUnavailable
from punk_records.ports import DeadLetter, StoredEvent
from punk_records.store import _COPY_EVENTS, EventStore, _copy_events, write_batch
from tests.factories import envelope


def test_given_migrations_applied_when_applied_again_then_nothing_changes(db, postgres):
    # GIVEN the session already applied every migration
    before = db.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    # WHEN they run twice more THEN nothing is applied and the record is unchanged
    assert migrations.apply(db) == []
    assert migrations.apply(db) == []
    assert db.execute("SELECT version, applied_at FROM schema_migrations").fetchall() == before
    assert [v for v, *_ in before] == [v for v, *_ in migrations.available()]


def test_given_fresh_database_when_migrated_then_tables_and_indexes_exist(postgres):
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migrate_fresh")
        conn.execute("CREATE DATABASE migrate_fresh")
    fresh = postgres.dsn.rsplit("/", 1)[0] + "/migrate_fresh"
    with psycopg.connect(fresh, autocommit=True) as conn:
        # (the read-only role of 0002 exists already: the session's database created it, and
        # roles belong to the cluster; applying 0002 again must still work)
        assert migrations.apply(conn) == [
            "0001_initial.sql",
            "0002_read_api.sql",
            "0003_memory.sql",
            "0004_memory_lookups.sql",
            "0005_memory_trail.sql",
        ]
        indexes = {
            row[0]
            for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
        }
        reader_may_select = conn.execute(
            "SELECT has_table_privilege('punk_records_reader', 'events', 'SELECT'),"
            " has_table_privilege('punk_records_reader', 'events', 'INSERT')"
        ).fetchone()
        storage = conn.execute(
            "SELECT (SELECT reloptions FROM pg_class WHERE relname = 'events_refs_idx'),"
            " (SELECT attcompression FROM pg_attribute"
            "  WHERE attrelid = 'memory_entries'::regclass AND attname = 'value')"
        ).fetchone()
    assert indexes == {
        "events_pkey",
        "events_workspace_ts_idx",
        "events_workspace_type_ts_idx",
        "events_workspace_ts_id_idx",
        "events_workspace_type_ts_id_idx",
        "events_workspace_satellite_ts_id_idx",
        "events_trace_id_idx",
        "events_memory_change_idx",
        "events_refs_idx",
        "events_candidate_trace_idx",
    }
    assert reader_may_select == (True, False)
    # (PostgreSQL's Debian package, here and in CI, is built with lz4)
    assert storage == (["fastupdate=off"], "l")


def test_given_batch_with_duplicates_when_written_then_each_event_stored_once(db):
    # GIVEN 5 events, two of them sent twice in the same batch, and one already stored
    events = [envelope() for _ in range(5)]
    write_batch(db, [StoredEvent(events[0], "t", 0, 1)])
    batch = [StoredEvent(e, "t", 0, i) for i, e in enumerate(events + events[1:3])]
    # WHEN the batch is written
    result = write_batch(db, batch)
    # THEN only the 4 new events were inserted and every event_id is stored once
    assert (result.inserted, result.duplicates) == (4, 3)
    assert db.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (5, 5)


def test_given_new_batch_when_written_then_copied_straight_into_events(db, postgres):
    # GIVEN a connection that never wrote a batch, and events never stored
    batch = [StoredEvent(envelope(), "t", 0, i) for i in range(3)]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        # WHEN they are written
        result = write_batch(conn, batch)
        # THEN all were inserted without the deduplicating staging table
        staging = conn.execute("SELECT to_regclass('pg_temp.events_staging')").fetchone()
    assert (result.inserted, result.duplicates) == (3, 0)
    assert staging == (None,)


def test_given_work_between_the_last_row_and_the_end_of_a_copy_then_it_sees_every_row(db):
    # GIVEN events streamed into COPY, and work that runs once they are all sent
    events = [StoredEvent(envelope(), "t", 0, i) for i in range(50)]
    sent: list[int] = []
    seen: list[int] = []

    def stream():
        for item in events:
            sent.append(item.offset)
            yield item

    # WHEN the COPY ends
    with db.transaction():
        count = _copy_events(db, _COPY_EVENTS, stream(), lambda: seen.extend(sent))
    # THEN that work ran after the last row was read, and every row is stored
    assert count == 50
    assert seen == list(range(50))
    assert db.execute("SELECT count(*) FROM events").fetchone() == (50,)


def test_given_work_before_the_end_of_a_copy_fails_then_no_row_is_stored(db):
    # GIVEN work between the last row and the end of the COPY that raises
    events = [StoredEvent(envelope(), "t", 0, i) for i in range(5)]

    def fail() -> None:
        raise RuntimeError("noting failed")

    # WHEN the COPY ends THEN that error is raised, the COPY abandoned, the connection usable
    with pytest.raises(RuntimeError, match="noting failed"), db.transaction():
        _copy_events(db, _COPY_EVENTS, events, fail)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert write_batch(db, events).inserted == 5


def test_given_redelivered_batch_with_dead_letter_when_written_then_both_kept_once(db):
    # GIVEN a batch of events and a poison record that was already written once
    batch = [StoredEvent(envelope(), "t", 0, i) for i in range(3)]
    letter = DeadLetter(b"{", None, "t", 0, 3, "not JSON")
    write_batch(db, batch[:2], [letter])
    # WHEN the whole batch comes again (the direct COPY fails on the first stored event_id)
    result = write_batch(db, batch, [letter])
    # THEN only the new event is added, in the same transaction as the (deduplicated) letter
    assert (result.inserted, result.duplicates, result.dead_lettered) == (1, 2, 0)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (3,)
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)


def test_given_events_as_a_one_shot_iterator_when_some_are_stored_then_all_are_counted(db):
    # GIVEN 4 events produced one by one (as the consumer streams them), 2 already stored
    batch = [StoredEvent(envelope(), "t", 0, i) for i in range(4)]
    write_batch(db, batch[:2])
    # WHEN the iterator is written (the direct COPY fails and the rows are sent again)
    result = write_batch(db, iter(batch))
    # THEN the events the failed COPY had read are not lost
    assert (result.inserted, result.duplicates) == (2, 2)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (4,)


def test_given_event_when_stored_then_columns_hold_the_normalised_envelope(db):
    env = envelope(payload={"k": [1, "two"]})
    write_batch(db, [StoredEvent(env, "topic-a", 2, 42)])
    row = db.execute(
        "SELECT event_id, ts, workspace_id, satellite_id, trace_id, type, severity, confidence,"
        " payload_json, kafka_topic, kafka_partition, kafka_offset, received_at FROM events"
    ).fetchone()
    assert row[:12] == (
        env.event_id, env.ts, "ws-alpha", "sat-1", env.trace_id, "finding.logged", "medium",
        0.75, {"k": [1, "two"]}, "topic-a", 2, 42,
    )  # fmt: skip
    assert row[12] is not None


def test_given_dead_letters_when_written_with_events_then_both_committed_once(db):
    letter = DeadLetter(b"\xff not json", b"k", "topic-a", 0, 7, "not UTF-8")
    result = write_batch(db, [StoredEvent(envelope(), "topic-a", 0, 8)], [letter])
    again = write_batch(db, [], [letter])
    assert (result.inserted, result.dead_lettered, again.dead_lettered) == (1, 1, 0)
    assert db.execute("SELECT raw_value, error FROM dead_letters").fetchall() == [
        (b"\xff not json", "not UTF-8")
    ]


def test_given_large_batch_when_written_then_one_statement_handles_it(db):
    events = [StoredEvent(envelope(), "t", 0, i) for i in range(10_000)]
    assert write_batch(db, events).inserted == 10_000


def test_given_unreachable_database_when_writing_then_store_unavailable_and_retriable():
    store = EventStore(lambda: "postgresql://punk:punk@127.0.0.1:9/none", connect_timeout=1)
    with pytest.raises(StoreUnavailable) as caught:
        store.write([StoredEvent(envelope())])
    assert caught.value.retriable
    assert "punk:punk" not in str(caught.value)


def test_given_cached_connection_when_server_restarts_then_next_write_reconnects(db, postgres):
    # GIVEN a store whose connection is open
    store = EventStore(lambda: postgres.dsn)
    store.write([StoredEvent(envelope())])
    # WHEN the server restarts underneath it
    postgres.stop()
    postgres.start()
    # THEN the next write reconnects by itself and succeeds
    assert store.write([StoredEvent(envelope())]).inserted == 1
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)
