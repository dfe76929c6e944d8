"""The memory rules (punk_records.memory), one test per rule, on in-memory events."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from punk_records.config import Settings
from punk_records.memory import (
    Action,
    Bucket,
    Candidate,
    CandidatePayload,
    ChangePayload,
    Fact,
    Invalid,
    MemoryRules,
    Projection,
    Status,
    Touched,
    _problem,
    candidate_payload,
    change_payload,
    project,
)
from tests.factories import envelope

T0 = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
TRACE = uuid.uuid4()
RULES = MemoryRules()


def fact(
    kind: str,
    payload: dict[str, Any] | None = None,
    hours: float = 0,
    workspace: str = "ws-a",
    trace: uuid.UUID = TRACE,
    confidence: float = 0.9,
    event_id: uuid.UUID | None = None,
) -> Fact:
    return Fact(
        event_id or uuid.uuid4(), T0 + timedelta(hours=hours), workspace, "sat-1", trace,
        kind, confidence, payload or {},
    )  # fmt: skip


def candidate(payload: dict[str, Any] | None = None, **kw: Any) -> Fact:
    return fact("memory.candidate", {"key": "deploy/cadence"} if payload is None else payload, **kw)


def change(kind: str, target: Fact, hours: float, **payload: Any) -> Fact:
    return fact(f"memory.{kind}", {"entry_id": str(target.event_id), **payload}, hours=hours)


def actions(result: Projection, entry: Fact) -> list[tuple[str, str | None]]:
    rows = [r for r in result.history if r.entry_id == entry.event_id]
    rows.sort(key=lambda r: (r.at, r.event_id))
    return [(r.action.value, r.reason) for r in rows]


def only_entry(result: Projection) -> Any:
    assert len(result.entries) == 1
    return result.entries[0]


def test_a_candidate_creates_a_workspace_entry_with_defaults() -> None:
    c = candidate({"key": "owner"}, confidence=0.4)
    entry = only_entry(project([c], RULES))
    assert (entry.entry_id, entry.key, entry.bucket) == (c.event_id, "owner", Bucket.WORKSPACE)
    assert (entry.status, entry.confidence, entry.expires_at) == (Status.CANDIDATE, 0.4, None)


def test_an_ephemeral_entry_expires_after_its_ttl_default_24_hours() -> None:
    default = candidate({"key": "k", "bucket": "ephemeral"})
    short = candidate({"key": "k", "bucket": "ephemeral", "ttl_hours": 3})
    result = project([default, short], RULES)
    expiry = {e.entry_id: e.expires_at for e in result.entries}
    assert expiry == {
        default.event_id: T0 + timedelta(hours=24),
        short.event_id: T0 + timedelta(hours=3),
    }


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({}, "key"),
        ({"key": ""}, "key"),
        ({"key": "  "}, "blank"),
        ({"key": "k" * 257}, "key"),
        ({"key": 7}, "key"),
        ({"key": "k", "value": [1]}, "value"),
        ({"key": "k", "bucket": "attic"}, "bucket"),
        ({"key": "k", "ttl_hours": 5}, "only for the ephemeral bucket"),
        ({"key": "k", "bucket": "ephemeral", "ttl_hours": 721}, "ttl_hours"),
        ({"key": "k", "bucket": "ephemeral", "ttl_hours": 0}, "ttl_hours"),
        ({"key": "k", "bucket": "ephemeral", "ttl_hours": 2.5}, "ttl_hours"),
    ],
)
def test_an_invalid_candidate_creates_no_entry_and_an_invalid_row(
    payload: dict[str, Any], problem: str
) -> None:
    c = candidate(payload)
    result = project([c], RULES)
    assert result.entries == ()
    [(action, reason)] = actions(result, c)
    assert action == "invalid"
    assert reason is not None
    assert problem in reason


def test_the_longest_ttl_and_key_are_accepted() -> None:
    c = candidate({"key": "k" * 256, "bucket": "ephemeral", "ttl_hours": 720})
    assert only_entry(project([c], RULES)).expires_at == T0 + timedelta(hours=720)


def test_promotion_and_retraction_move_the_entry_and_retraction_is_final() -> None:
    c = candidate(confidence=0.1)
    p = change("promoted", c, 1, reason="reviewed")
    r = change("retracted", c, 2, reason="wrong")
    again = change("promoted", c, 3)
    result = project([again, r, p, c], RULES)
    entry = only_entry(result)
    assert (entry.status, entry.updated_at, entry.last_event_id) == (
        Status.RETRACTED, T0 + timedelta(hours=2), r.event_id,
    )  # fmt: skip
    assert actions(result, c) == [
        ("created", None),
        ("promoted", "reviewed"),
        ("retracted", "wrong"),
        ("refused", "the entry is retracted, which is final"),
    ]


def test_promoting_twice_is_refused() -> None:
    c = candidate(confidence=0.1)
    result = project([c, change("promoted", c, 1), change("promoted", c, 2)], RULES)
    assert [a for a, _ in actions(result, c)] == ["created", "promoted", "refused"]


def test_promoting_an_expired_ephemeral_entry_is_refused_but_retracting_it_works() -> None:
    c = candidate({"key": "k", "bucket": "ephemeral", "ttl_hours": 2}, confidence=0.1)
    in_time = change("promoted", c, 1.99)
    late = candidate({"key": "k2", "bucket": "ephemeral", "ttl_hours": 2}, confidence=0.1)
    result = project(
        [c, in_time, late, change("promoted", late, 2), change("retracted", late, 3)], RULES
    )
    assert [a for a, _ in actions(result, c)] == ["created", "promoted"]
    assert actions(result, late)[1] == ("refused", "promotion refused: the entry has expired")
    assert actions(result, late)[2][0] == "retracted"


def test_a_change_before_its_candidate_or_from_another_workspace_is_refused() -> None:
    c = candidate(hours=5, confidence=0.1)
    early = change("promoted", c, 1)
    elsewhere = fact("memory.promoted", {"entry_id": str(c.event_id)}, hours=6, workspace="ws-b")
    result = project([c, early, elsewhere], RULES)
    assert only_entry(result).status is Status.CANDIDATE
    refused = [r for r in result.history if r.action is Action.REFUSED]
    assert {(r.event_id, r.workspace_id) for r in refused} == {
        (early.event_id, "ws-a"), (elsewhere.event_id, "ws-b"),
    }  # fmt: skip


def test_an_upper_case_entry_id_names_the_entry() -> None:
    c = candidate(confidence=0.1)
    p = fact("memory.promoted", {"entry_id": str(c.event_id).upper()}, hours=1)
    assert only_entry(project([c, p], RULES)).status is Status.PROMOTED


@pytest.mark.parametrize(
    "payload",
    [{}, {"entry_id": "nope"}, {"entry_id": 5}, {"entry_id": str(uuid.uuid4()), "reason": 5}],
)
def test_an_invalid_change_gets_an_invalid_row_keyed_by_its_own_id(
    payload: dict[str, Any],
) -> None:
    p = fact("memory.retracted", payload)
    result = project([p], RULES)
    [row] = result.history
    assert (row.entry_id, row.event_id, row.action) == (p.event_id, p.event_id, Action.INVALID)


def test_auto_promotion_by_a_decision_of_the_same_trace_within_seven_days() -> None:
    c = candidate(confidence=0.75)
    d = fact("decision.recorded", hours=24 * 7)
    result = project([c, d], RULES)
    assert only_entry(result).status is Status.PROMOTED
    assert actions(result, c)[1] == (
        "promoted",
        f"auto-promoted: decision {d.event_id} of the same trace",
    )


@pytest.mark.parametrize(
    "decision",
    [
        fact("decision.recorded", hours=24 * 7 + 0.01),  # too late
        fact("decision.recorded", hours=-1),  # before the candidate
        fact("decision.recorded", hours=1, trace=uuid.uuid4()),  # another trace
        fact("decision.recorded", hours=1, workspace="ws-b"),  # another workspace
    ],
)
def test_no_auto_promotion_by_other_decisions(decision: Fact) -> None:
    c = candidate(confidence=0.9)
    assert only_entry(project([c, decision], RULES)).status is Status.CANDIDATE


def test_no_auto_promotion_below_the_confidence_threshold() -> None:
    c = candidate(confidence=0.74)
    assert only_entry(project([c, fact("decision.recorded", hours=1)], RULES)).status is (
        Status.CANDIDATE
    )


def test_auto_promotion_by_two_referencing_events() -> None:
    c = candidate(confidence=0.8)
    ref = {"refs": [str(c.event_id)]}
    first, second = fact("finding.logged", ref, hours=1), fact("task.created", ref, hours=2)
    one = project([c, first], RULES)
    assert only_entry(one).status is Status.CANDIDATE
    both = project([c, first, second, first], RULES)  # a redelivered reference counts once
    assert only_entry(both).status is Status.PROMOTED
    assert actions(both, c)[1] == ("promoted", "auto-promoted: referenced by 2 events")


def test_an_expired_entry_is_not_auto_promoted() -> None:
    c = candidate({"key": "k", "bucket": "ephemeral", "ttl_hours": 1}, confidence=0.9)
    result = project([c, fact("decision.recorded", hours=2)], RULES)
    assert only_entry(result).status is Status.CANDIDATE
    assert actions(result, c)[1] == ("refused", "auto-promotion refused: the entry has expired")


def test_the_thresholds_are_settings() -> None:
    rules = MemoryRules.from_settings(
        Settings.from_env(
            {
                "MEMORY_AUTO_PROMOTE_CONFIDENCE": "0.5",
                "MEMORY_AUTO_PROMOTE_WINDOW_HOURS": "1",
                "MEMORY_AUTO_PROMOTE_REFS": "1",
            }
        )
    )
    c = candidate(confidence=0.5)
    ref = fact("finding.logged", {"refs": [str(c.event_id)]}, hours=1)
    assert only_entry(project([c, ref], rules)).status is Status.PROMOTED
    assert only_entry(project([c, fact("decision.recorded", hours=2)], rules)).status is (
        Status.CANDIDATE
    )


def test_the_order_of_arrival_does_not_matter() -> None:
    c = candidate(confidence=0.9)
    events = [c, change("retracted", c, 1), fact("decision.recorded", hours=0.5)]
    assert project(events, RULES) == project(list(reversed(events)), RULES)


def test_touched_notes_what_a_batch_concerns_and_nothing_else() -> None:
    touched = Touched()
    c = envelope(type="memory.candidate", payload={"key": "k"})
    d = envelope(type="decision.recorded")
    target = uuid.uuid4()
    r = envelope(type="memory.retracted", payload={"entry_id": str(target).upper()})
    bad = envelope(type="memory.promoted", payload={"entry_id": "x"})
    ref = envelope(payload={"refs": [str(c.event_id), "not-an-id", 5]})
    plain = envelope()
    for env in (c, d, r, bad, ref, plain):
        touched.add_envelope(env)
    assert touched.entries == {("ws-alpha", c.event_id), ("ws-alpha", target)}
    assert touched.traces == {("ws-alpha", d.trace_id)}
    assert [row.event_id for row in touched.invalid] == [bad.event_id]
    assert touched.workspaces == ["ws-alpha"]
    empty = Touched()
    empty.add_envelope(plain)
    assert not empty


# ---- the fast paths agree with the pydantic models -------------------------------------------

ABSENT = object()
_TARGET = uuid.uuid4()
# Every combination of these, each on and around a boundary of the rules.
KEYS: tuple[Any, ...] = (ABSENT, "k", "  x ", " ", "", "k" * 256, "k" * 257, 7, None)
VALUES: tuple[Any, ...] = (ABSENT, {}, {"a": [1]}, [1], None, "x", {1: 2})
BUCKETS: tuple[Any, ...] = (
    ABSENT,
    "global",
    "workspace",
    "ephemeral",
    "attic",
    None,
    1,
    Bucket.EPHEMERAL,
)
TTLS: tuple[Any, ...] = (ABSENT, None, 1, 24, 720, 721, 0, -1, 24.0, True, "24")
ENTRY_IDS: tuple[Any, ...] = (
    ABSENT, str(_TARGET), str(_TARGET).upper(), f"{_TARGET}\n", f" {_TARGET}", "nope", 5, None,
)  # fmt: skip
REASONS: tuple[Any, ...] = (ABSENT, None, "r", "r" * 1000, "r" * 1001, 5, True)


def _payload(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not ABSENT}


def _pydantic(model: type[CandidatePayload] | type[ChangePayload], payload: dict[str, Any]) -> Any:
    """The model's verdict, uncached: the parsed payload or why it is invalid."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return Invalid(_problem(exc))


def test_a_candidate_payload_is_judged_as_the_pydantic_model_judges_it() -> None:
    for key, value, bucket, ttl in itertools.product(KEYS, VALUES, BUCKETS, TTLS):
        payload = _payload(key=key, value=value, bucket=bucket, ttl_hours=ttl, other=1)
        expected = _pydantic(CandidatePayload, payload)
        if isinstance(expected, CandidatePayload):
            expected = Candidate(expected.key, expected.bucket, expected.ttl_hours)
        # the same verdict and reason from the plain check, the cache of reasons or pydantic
        for _ in range(2):
            assert candidate_payload(fact("memory.candidate", payload)) == expected, payload


def test_a_change_payload_is_judged_as_the_pydantic_model_judges_it() -> None:
    for entry_id, reason in itertools.product(ENTRY_IDS, REASONS):
        payload = _payload(entry_id=entry_id, reason=reason, other=1)
        expected = _pydantic(ChangePayload, payload)
        if isinstance(expected, ChangePayload):
            expected = (expected.entry_id, expected.reason)
        for _ in range(2):
            assert change_payload(fact("memory.promoted", payload)) == expected, payload


def test_an_entry_id_with_a_trailing_newline_is_invalid_not_a_crash() -> None:
    target = uuid.uuid4()
    bad = fact("memory.promoted", {"entry_id": f"{target}\n"})
    ref = fact("finding.logged", {"refs": [f"{target}\n"]})
    touched = Touched()
    touched.add(bad)
    touched.add(ref)
    assert touched.entries == set()
    assert [row.action for row in touched.invalid] == [Action.INVALID]
