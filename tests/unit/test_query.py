"""Read API use cases against an in-memory reader: parameters, scopes, cursors, previews."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from punk_records.config import Settings
from punk_records.cursor import CursorCodec, cursor_codec
from punk_records.errors import (
    ConfigurationError,
    InvalidCursor,
    InvalidQuery,
    MissingScope,
    NotFound,
    WorkspaceForbidden,
)
from punk_records.query import (
    DeadLetterQuery,
    DeadLetterRow,
    EventQuery,
    EventRow,
    get_event,
    list_dead_letters,
    list_events,
    parse_query,
    preview,
)
from tests.factories import reader_token

KEY = "k" * 40
T0 = datetime(2026, 11, 26, 6, tzinfo=UTC)


def no_secret(arn: str, max_age: int) -> dict:
    raise AssertionError(f"no secret should be read here ({arn})")


class FakeReader:
    """Events and dead letters in memory, filtered and ordered as the SQL does."""

    def __init__(self, events=(), letters=()):
        self.rows = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
        self.letters = sorted(letters, key=lambda d: (d.received_at, d.id))

    def events(self, query: EventQuery, after, limit):
        out = []
        for e in self.rows:
            if e["workspace_id"] != query.workspace_id:
                continue
            if query.type and e["type"] not in query.type:
                continue
            if after is not None and (e["ts"], e["event_id"]) <= after:
                continue
            row: EventRow = (json.dumps({"event_id": str(e["event_id"])}), e["ts"], e["event_id"])
            out.append(row)
        return out[:limit]

    def event(self, event_id):
        e = next((e for e in self.rows if e["event_id"] == event_id), None)
        return None if e is None else (e["workspace_id"], json.dumps({"id": str(event_id)}))

    def dead_letters(self, query, keys, after, limit):
        out = [
            d
            for d in self.letters
            if (keys is None or d.key in keys) and (after is None or (d.received_at, d.id) > after)
        ]
        return out[:limit]


def events(count, workspace="ws-a", kind="task.created"):
    return [
        {"event_id": uuid4(), "ts": T0 + timedelta(seconds=i // 3), "workspace_id": workspace,
         "type": kind}
        for i in range(count)
    ]  # fmt: skip


def walk(reader, params, limit=7):
    cursors = CursorCodec(KEY)
    seen, cursor = [], None
    while True:
        query = {**params, "limit": [str(limit)]} | ({"cursor": [cursor]} if cursor else {})
        page = list_events(reader_token(), query, reader, cursors)
        seen += [json.loads(item)["event_id"] for item in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_given_events_when_walked_in_pages_then_each_is_seen_once_in_order():
    data = events(50) + events(5, workspace="ws-b")
    reader = FakeReader(data)
    seen = walk(reader, {"workspace_id": ["ws-a"]})
    assert seen == [str(e["event_id"]) for e in reader.rows if e["workspace_id"] == "ws-a"]


def test_given_an_exact_multiple_of_the_limit_when_walked_then_the_last_page_has_no_cursor():
    page = list_events(
        reader_token(), {"workspace_id": ["ws-a"], "limit": ["5"]}, FakeReader(events(5)),
        CursorCodec(KEY),
    )  # fmt: skip
    assert len(page.items) == 5
    assert page.next_cursor is None
    assert json.loads(page.render("events"))["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, ["query", "workspace_id"]),
        ({"workspace_id": ["ws-a"], "limit": ["0"]}, ["query", "limit"]),
        ({"workspace_id": ["ws-a"], "limit": ["501"]}, ["query", "limit"]),
        ({"workspace_id": ["ws-a"], "limit": ["ten"]}, ["query", "limit"]),
        ({"workspace_id": ["ws-a"], "type": ["task.exploded"]}, ["query", "type", 0]),
        ({"workspace_id": ["ws-a"], "severity": ["urgent"]}, ["query", "severity"]),
        ({"workspace_id": ["ws-a"], "trace_id": ["nope"]}, ["query", "trace_id"]),
        ({"workspace_id": ["ws-a"], "since": ["yesterday"]}, ["query", "since"]),
        ({"workspace_id": ["ws-a"], "since": ["1764136800"]}, ["query", "since"]),
        ({"workspace_id": ["ws-a"], "workspace": ["ws-a"]}, ["query", "workspace"]),
        ({"workspace_id": ["ws-a", "ws-b"]}, ["query", "workspace_id"]),
        ({"workspace_id": [" "]}, ["query", "workspace_id"]),
    ],
)
def test_given_a_bad_parameter_when_listing_then_400_names_it(params, loc):
    with pytest.raises(InvalidQuery) as info:
        list_events(reader_token(), params, FakeReader(), CursorCodec(KEY))
    assert loc in [e["loc"] for e in info.value.errors]
    assert info.value.status == 400


def test_given_until_before_since_when_parsed_then_400():
    with pytest.raises(InvalidQuery) as info:
        parse_query(
            EventQuery,
            {"workspace_id": ["a"], "since": ["2026-11-26T10:00:00Z"], "until": ["2026-11-26"]},
        )
    assert "until must be later than since" in info.value.errors[0]["msg"]


def test_given_timestamps_without_offset_when_parsed_then_they_are_utc():
    query = parse_query(
        EventQuery, {"workspace_id": ["a"], "since": ["2026-11-26T06:00:00"],
                     "until": ["2026-11-26T09:00:00+02:00"]}
    )  # fmt: skip
    assert query.since == T0
    assert query.until == datetime(2026, 11, 26, 7, tzinfo=UTC)


def test_given_types_repeated_or_comma_separated_when_parsed_then_the_query_is_the_same():
    a = parse_query(EventQuery, {"workspace_id": ["a"], "type": ["task.created", "risk.detected"]})
    b = parse_query(EventQuery, {"workspace_id": ["a"], "type": ["risk.detected,task.created"]})
    assert a == b
    assert a.fingerprint() == b.fingerprint()


def test_given_a_token_without_read_scope_when_listing_then_403_names_the_scope():
    with pytest.raises(MissingScope) as info:
        list_events(reader_token(scopes=["events:write"]), {}, FakeReader(), CursorCodec(KEY))
    assert "events:read" in str(info.value)


def test_given_another_workspace_when_listing_then_403():
    with pytest.raises(WorkspaceForbidden):
        list_events(reader_token(), {"workspace_id": ["ws-b"]}, FakeReader(), CursorCodec(KEY))


def _first_cursor(params, reader=None):
    reader = reader or FakeReader(events(9) + events(9, "ws-b"))
    page = list_events(reader_token(["*"]), {**params, "limit": ["2"]}, reader, CursorCodec(KEY))
    assert page.next_cursor
    return page.next_cursor


@pytest.mark.parametrize(
    "other",
    [
        {"workspace_id": ["ws-b"]},
        {"workspace_id": ["ws-a"], "type": ["task.created"]},
        {"workspace_id": ["ws-a"], "since": ["2026-01-01"]},
    ],
)
def test_given_a_cursor_of_another_query_when_used_then_400(other):
    cursor = _first_cursor({"workspace_id": ["ws-a"]})
    with pytest.raises(InvalidCursor) as info:
        list_events(
            reader_token(["*"]), {**other, "cursor": [cursor]}, FakeReader(), CursorCodec(KEY)
        )
    assert info.value.status == 400


def test_given_the_same_query_with_another_limit_when_the_cursor_is_used_then_it_works():
    reader = FakeReader(events(9))
    cursor = _first_cursor({"workspace_id": ["ws-a"]}, reader)
    query = {"workspace_id": ["ws-a"], "cursor": [cursor], "limit": ["100"]}
    page = list_events(reader_token(), query, reader, CursorCodec(KEY))
    assert len(page.items) == 7


@pytest.mark.parametrize("position", [0, 5, 20, -2, -1])
def test_given_a_tampered_cursor_when_used_then_400(position):
    cursor = _first_cursor({"workspace_id": ["ws-a"]})
    chars = list(cursor)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises(InvalidCursor):
        list_events(
            reader_token(), {"workspace_id": ["ws-a"], "cursor": ["".join(chars)]}, FakeReader(),
            CursorCodec(KEY),
        )  # fmt: skip


@pytest.mark.parametrize("cursor", ["", "!!!", "a" * 256, "AAAA"])
def test_given_garbage_as_cursor_when_used_then_400_not_500(cursor):
    with pytest.raises((InvalidCursor, InvalidQuery)):
        list_events(
            reader_token(), {"workspace_id": ["ws-a"], "cursor": [cursor + "x"]}, FakeReader(),
            CursorCodec(KEY),
        )  # fmt: skip


def test_given_a_cursor_signed_with_another_key_when_used_then_400():
    cursor = _first_cursor({"workspace_id": ["ws-a"]})
    with pytest.raises(InvalidCursor):
        list_events(
            reader_token(), {"workspace_id": ["ws-a"], "cursor": [cursor]}, FakeReader(),
            CursorCodec("z" * 40),
        )  # fmt: skip


def test_given_an_event_id_when_fetched_then_its_document_or_404_or_403():
    data = events(1) + events(1, "ws-b")
    reader = FakeReader(data)
    assert json.loads(get_event(reader_token(), str(data[0]["event_id"]), reader))["id"]
    with pytest.raises(WorkspaceForbidden):
        get_event(reader_token(), str(data[1]["event_id"]), reader)
    with pytest.raises(NotFound) as info:
        get_event(reader_token(), str(uuid4()), reader)
    assert info.value.status == 404
    with pytest.raises(InvalidQuery):
        get_event(reader_token(), "not-a-uuid", reader)
    with pytest.raises(MissingScope):
        get_event(reader_token(scopes=["dead_letters:read"]), str(data[0]["event_id"]), reader)


def letter(i, key=b"ws-a", value=b'{"password": "hunter2", "note": "AKIAABCDEFGHIJKLMNOP"}'):
    return DeadLetterRow(i, "topic", 0, i, "not a valid envelope", T0 + timedelta(seconds=i),
                         value, key)  # fmt: skip


def test_given_dead_letters_when_listed_then_raw_bytes_and_a_redacted_preview_are_shown():
    reader = FakeReader(letters=[letter(1), letter(2, key=b"ws-b")])
    page = list_dead_letters(reader_token(), {}, reader, CursorCodec(KEY))
    assert len(page.items) == 1  # the ws-a token sees ws-a's dead letters only
    item = json.loads(page.items[0])
    assert base64.b64decode(item["value_base64"]) == letter(1).value
    assert "hunter2" not in item["preview"]
    assert "AKIAABCDEFGHIJKLMNOP" not in item["preview"]
    assert "[REDACTED:" in item["preview"]
    assert item["reason"] == "not a valid envelope"
    everything = list_dead_letters(reader_token(["*"]), {}, reader, CursorCodec(KEY))
    assert len(everything.items) == 2


def test_given_dead_letters_without_the_scope_when_listed_then_403():
    with pytest.raises(MissingScope) as info:
        list_dead_letters(reader_token(scopes=["events:read"]), {}, FakeReader(), CursorCodec(KEY))
    assert "dead_letters:read" in str(info.value)


def test_given_a_dead_letter_cursor_of_a_wider_token_when_used_by_a_narrower_one_then_400():
    reader = FakeReader(letters=[letter(i) for i in range(5)])
    page = list_dead_letters(reader_token(["*"]), {"limit": ["2"]}, reader, CursorCodec(KEY))
    with pytest.raises(InvalidCursor):
        list_dead_letters(reader_token(), {"cursor": [page.next_cursor]}, reader, CursorCodec(KEY))


def test_given_a_secret_across_the_preview_cut_when_previewed_then_no_part_survives():
    # GIVEN a secret whose first characters fall before the cut and the rest after it
    value = ("x" * 2030 + " password=hunter2hunter2hunter2").encode()
    text, cut = preview(value)
    assert cut
    assert "hunt" not in text
    assert text.endswith("password=[REDACTE")
    assert len(text) <= 2048


def test_given_binary_garbage_when_previewed_then_it_is_replaced_not_raised():
    text, cut = preview(b"\xff\xfe\x00binary")
    assert "binary" in text
    assert not cut
    assert preview(None) == (None, False)


def test_given_dead_letter_query_when_parsed_then_topic_and_since_are_kept():
    query = parse_query(DeadLetterQuery, {"topic": ["t"], "since": ["2026-11-26T06:00:00Z"]})
    assert query.topic == "t"
    assert query.since == T0


def test_given_cursor_settings_when_the_codec_is_built_then_the_key_is_checked():
    assert isinstance(cursor_codec(Settings(cursor_key=KEY), no_secret), CursorCodec)
    with pytest.raises(ConfigurationError, match="CURSOR_KEY"):
        cursor_codec(Settings(), no_secret)
    with pytest.raises(ConfigurationError, match="at least 32"):
        cursor_codec(Settings(cursor_key="short"), no_secret)
    codec = cursor_codec(
        Settings(cursor_key_secret_arn="arn:x"), lambda arn, age: {"key": "s" * 64}
    )
    assert codec.decode(codec.encode(b"q", b"12345678"), b"q", 8) == b"12345678"


def test_given_positions_when_round_tripped_then_microseconds_and_ids_survive():
    ts = datetime(2026, 11, 26, 6, 0, 0, 123456, tzinfo=UTC)
    event_id = UUID("00000000-0000-0000-0000-0000000000ff")
    reader = FakeReader(
        [{"event_id": event_id, "ts": ts, "workspace_id": "ws-a", "type": "task.created"},
         {"event_id": uuid4(), "ts": ts, "workspace_id": "ws-a", "type": "task.created"}]
    )  # fmt: skip
    calls = []
    real = reader.events
    reader.events = lambda q, after, limit: calls.append(after) or real(q, after, limit)
    walk(reader, {"workspace_id": ["ws-a"]}, limit=1)
    assert calls[1] == (reader.rows[0]["ts"], reader.rows[0]["event_id"])


@pytest.mark.parametrize(
    "params",
    [
        {"since": ["0001-01-01T00:00:00+14:00"]},
        {"topic": ["bad\x00topic"]},
        {"topic": ["spaces are not kafka"]},
        {"until": ["9999-12-31T23:59:59-14:00"]},
    ],
)
def test_given_values_postgres_or_utc_cannot_hold_when_parsed_then_400_not_500(params):
    model = DeadLetterQuery if "topic" in params else EventQuery
    with pytest.raises(InvalidQuery):
        parse_query(model, {"workspace_id": ["ws-a"], **params} if model is EventQuery else params)


@pytest.mark.parametrize("value", ["ws\x00a", "a" * 129])
def test_given_a_workspace_postgres_cannot_hold_when_parsed_then_400(value):
    with pytest.raises(InvalidQuery):
        parse_query(EventQuery, {"workspace_id": [value]})
