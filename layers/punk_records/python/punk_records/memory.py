"""Governed memory: the rules that turn ``memory.*`` events into entries and an audit trail.

This module is the whole contract (docs/memory.md says the same in prose). It is pure: it
knows neither SQL nor Lambda. The projection of a workspace is :func:`project` of its events,
folded in (``ts``, ``event_id``) order; the consumer keeps it up to date by refolding, with
:func:`fold_entry`, only the entries a batch touches (:class:`Touched`), each from all of its
own events, so an event that arrives late changes exactly what it would have changed on time.

- ``memory.candidate`` creates the entry whose id is the event's ``event_id``; its payload is
  :class:`CandidatePayload`. A payload that breaks the rules creates no entry; the audit trail
  gets an ``invalid`` row naming the reason.
- ``memory.promoted`` / ``memory.retracted`` (:class:`ChangePayload`) move an entry of the same
  workspace to ``promoted`` / ``retracted``. Retracted is final; promoting an entry twice, an
  expired ephemeral entry, or an entry that does not exist (yet) is refused: a ``refused`` row,
  no change. An invalid payload gets an ``invalid`` row keyed by the event's own id.
- Auto-promotion: a candidate whose confidence is at least ``auto_promote_confidence`` is
  promoted by the first event, after it and at most ``auto_promote_window`` later, that is a
  ``decision.recorded`` of the same trace, or that makes ``auto_promote_refs`` distinct events
  list its id in ``payload.refs``. It fires once; on an expired entry it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from punk_records.config import Settings
    from punk_records.envelope import Envelope

CANDIDATE = "memory.candidate"
PROMOTED = "memory.promoted"
RETRACTED = "memory.retracted"
DECISION = "decision.recorded"
CHANGE_TYPES = frozenset({PROMOTED, RETRACTED})
MEMORY_TYPES = frozenset({CANDIDATE, PROMOTED, RETRACTED})
_NOTED_TYPES = MEMORY_TYPES | {DECISION}

MAX_KEY_CHARS = 256
DEFAULT_TTL_HOURS = 24
MAX_TTL_HOURS = 720
MAX_REASON_CHARS = 1_000
# An entry id as text: a hyphenated UUID, any case (stored and compared in lower case). \Z, not
# $: a trailing newline is not part of a UUID.
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
# An entry id in payload.refs: lower case only.
_ENTRY_ID_TEXT = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}\Z")
# The longest string a memoized verdict keeps (see _cached_problem): longer ones are rare and
# would make the cache big.
_MEMO_CHARS = 300


class Bucket(StrEnum):
    """Where an entry lives: shared by every workspace, one workspace, or for a while."""

    GLOBAL = "global"
    WORKSPACE = "workspace"
    EPHEMERAL = "ephemeral"


class Status(StrEnum):
    """An entry's state. ``retracted`` is final."""

    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    RETRACTED = "retracted"


class Action(StrEnum):
    """What one event did to one entry, as the audit trail records it."""

    CREATED = "created"
    PROMOTED = "promoted"
    RETRACTED = "retracted"
    REFUSED = "refused"
    INVALID = "invalid"


# The consumer's metric for each kind of new audit row.
METRIC_NAMES = {
    Action.CREATED: "MemoryEntriesCreated",
    Action.PROMOTED: "MemoryEntriesPromoted",
    Action.RETRACTED: "MemoryEntriesRetracted",
    Action.REFUSED: "MemoryChangesRefused",
    Action.INVALID: "MemoryPayloadsInvalid",
}


@dataclass(frozen=True, slots=True)
class MemoryRules:
    """The auto-promotion thresholds (settings ``MEMORY_AUTO_PROMOTE_*``)."""

    auto_promote_confidence: float = 0.75
    auto_promote_window: timedelta = timedelta(days=7)
    auto_promote_refs: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryRules:
        return cls(
            auto_promote_confidence=settings.memory_auto_promote_confidence,
            auto_promote_window=timedelta(hours=settings.memory_auto_promote_window_hours),
            auto_promote_refs=settings.memory_auto_promote_refs,
        )


class CandidatePayload(BaseModel):
    """The payload of ``memory.candidate``; other fields are allowed and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: Annotated[StrictStr, Field(min_length=1, max_length=MAX_KEY_CHARS)]
    value: dict[str, Any] = Field(default_factory=dict)
    bucket: Bucket = Bucket.WORKSPACE
    ttl_hours: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_HOURS)] | None = None

    @field_validator("key")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("key must not be blank")
        return value

    @model_validator(mode="after")
    def _ttl_for_ephemeral_only(self) -> CandidatePayload:
        if self.bucket is Bucket.EPHEMERAL:
            if self.ttl_hours is None:
                object.__setattr__(self, "ttl_hours", DEFAULT_TTL_HOURS)
        elif self.ttl_hours is not None:
            raise ValueError("ttl_hours is only for the ephemeral bucket")
        return self


class ChangePayload(BaseModel):
    """The payload of ``memory.promoted`` / ``memory.retracted``; other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    entry_id: StrictStr
    reason: Annotated[StrictStr, Field(max_length=MAX_REASON_CHARS)] | None = None

    @field_validator("entry_id")
    @classmethod
    def _uuid_text(cls, value: str) -> str:
        if not _UUID_TEXT.match(value):
            raise ValueError("entry_id must be a UUID like 0f8e6a5c-1d2b-4c3a-9e8f-7a6b5c4d3e2f")
        return value.lower()


# The records built per event (Fact, Entry, Change, Candidate) are plain slotted dataclasses,
# not frozen ones: a frozen dataclass's __init__ sets each field through object.__setattr__,
# four times slower, and the consumer builds thousands per batch. Nothing mutates them.


@dataclass(slots=True)
class Fact:
    """One stored event as the projection sees it (``payload`` as stored, redacted).

    ``verdict`` keeps what :func:`candidate_payload` or :func:`change_payload` made of the
    payload: the consumer reads a payload when it notes the event and again when it folds.
    """

    event_id: UUID
    ts: datetime
    workspace_id: str
    satellite_id: str
    trace_id: UUID
    type: str
    confidence: float
    payload: Mapping[str, Any]
    verdict: Candidate | ChangeTarget | Invalid | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def position(self) -> tuple[datetime, UUID]:
        """Where the event sits in its workspace's order."""
        return (self.ts, self.event_id)


# An entry of a workspace: (workspace_id, entry_id).
Key = tuple[str, UUID]


@dataclass(slots=True)
class Entry:
    """One entry of the projection. Its ``value`` is its candidate's ``payload.value`` as stored
    (an object, ``{}`` when absent), which never changes: the store reads it from the event."""

    entry_id: UUID
    workspace_id: str
    key: str
    bucket: Bucket
    status: Status
    confidence: float
    trace_id: UUID
    satellite_id: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    last_event_id: UUID

    def expired_at(self, when: datetime) -> bool:
        """Whether the entry has expired at ``when`` (never, outside the ephemeral bucket)."""
        return self.expires_at is not None and when >= self.expires_at


@dataclass(slots=True)
class Change:
    """One row of the audit trail: what ``event_id`` did to ``entry_id``."""

    entry_id: UUID
    event_id: UUID
    workspace_id: str
    action: Action
    from_status: Status | None
    to_status: Status | None
    at: datetime
    satellite_id: str
    reason: str | None


@dataclass(slots=True)
class MemoryCounts:
    """What one batch did to the projection: new audit rows per action (the metrics), rows
    withdrawn because a late event changed what a later one did, and entries refolded."""

    new_rows: dict[str, int] = field(default_factory=dict)
    withdrawn: int = 0
    refolded: int = 0

    def count(self, action: Action) -> int:
        return self.new_rows.get(action.value, 0)

    def metrics(self) -> dict[str, int]:
        """The batch's memory metrics by name (new audit rows of each kind)."""
        return {name: self.count(action) for action, name in METRIC_NAMES.items()}

    def summary(self) -> dict[str, Any]:
        """Structured log fields."""
        return {"new_rows": self.new_rows, "withdrawn": self.withdrawn, "refolded": self.refolded}


@dataclass(frozen=True, slots=True)
class Projection:
    """Entries and audit rows, each sorted by their key (the digest's order)."""

    entries: tuple[Entry, ...] = ()
    history: tuple[Change, ...] = ()


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)
    shown = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg'].removeprefix('Value error, ')}"
        for e in first[:3]
    )
    return f"invalid payload: {shown}"[:MAX_REASON_CHARS]


@dataclass(slots=True)
class Candidate:
    """A valid candidate payload, as far as the rules read it (the entry's ``value`` is read
    from the stored event)."""

    key: str
    bucket: Bucket
    ttl_hours: int | None


@dataclass(slots=True)
class Invalid:
    """Why a payload breaks the rules (the audit row's reason)."""

    reason: str


# A promotion's or retraction's payload when valid: (entry id in lower case, reason).
ChangeTarget = tuple[str, str | None]

_BUCKETS = {bucket.value: bucket for bucket in Bucket}
_CANDIDATE_FIELDS = ("key", "value", "bucket", "ttl_hours")
_CHANGE_FIELDS = ("entry_id", "reason")
_Model = TypeVar("_Model", bound=BaseModel)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain_candidate(payload: Any) -> Candidate | None:
    """The candidate of a payload spelled the common way, without pydantic; None when the
    payload is anything else (then :class:`CandidatePayload` decides). Accepts a subset of
    what CandidatePayload accepts, with the same result (tests/unit/test_memory.py checks)."""
    if type(payload) is not dict:
        return None
    key = payload.get("key")
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_CHARS or not key.strip():
        return None
    value = payload.get("value", _NO_VALUE)
    if type(value) is not dict or not _str_keys(value):
        return None
    spelled = payload.get("bucket", "workspace")
    bucket = _BUCKETS.get(spelled) if type(spelled) is str else None
    if bucket is None:
        return None
    ttl = payload.get("ttl_hours")
    if ttl is None:
        if bucket is Bucket.EPHEMERAL:
            ttl = DEFAULT_TTL_HOURS
    elif type(ttl) is not int or not 1 <= ttl <= MAX_TTL_HOURS or bucket is not Bucket.EPHEMERAL:
        return None
    return Candidate(key, bucket, ttl)


_NO_VALUE: dict[str, Any] = {}


def _str_keys(value: dict[Any, Any]) -> bool:
    """Whether every key of ``value`` is a str (as in any JSON object)."""
    return set(map(type, value)) <= _JUST_STR


_JUST_STR = frozenset({str})


def _plain_change(payload: Any) -> ChangeTarget | None:
    """A promotion's or retraction's payload spelled the common way, without pydantic; None
    when anything else (then :class:`ChangePayload` decides). Same contract as
    :func:`_plain_candidate`."""
    if type(payload) is not dict:
        return None
    target = payload.get("entry_id")
    if type(target) is not str or not _UUID_TEXT.match(target):
        return None
    reason = payload.get("reason")
    if reason is not None and (type(reason) is not str or len(reason) > MAX_REASON_CHARS):
        return None
    return target.lower(), reason


def _signature(payload: Any, fields: tuple[str, ...]) -> tuple[tuple[str, type, Any], ...] | None:
    """What ``fields`` of ``payload`` are, when they are plain JSON scalars (or a ``value``
    object, which the rules accept whatever it holds): the key of :func:`_cached_problem`.
    None when a field is anything else."""
    if type(payload) is not dict:
        return None
    found = []
    for name in fields:
        if name in payload:
            value = payload[name]
            kind = type(value)
            if kind in _SCALARS and (kind is not str or len(value) <= _MEMO_CHARS):
                found.append((name, kind, value))
            elif name == "value" and kind is dict and _str_keys(value):
                found.append((name, dict, None))
            else:
                return None
    return tuple(found)


@lru_cache(maxsize=1024)
def _cached_problem(
    model: type[CandidatePayload] | type[ChangePayload],
    signature: tuple[tuple[str, type, Any], ...],
) -> str | None:
    """The reason ``model`` rejects payloads with ``signature``, None if it accepts them:
    agents that send a wrong payload send the same wrong payload many times, and pydantic's
    error path is the slow one. The type is part of the key (``1``, ``1.0`` and ``True`` are
    equal in Python, not in the rules)."""
    try:
        model.model_validate({name: {} if kind is dict else v for name, kind, v in signature})
    except ValidationError as exc:
        return _problem(exc)
    return None


def _validated(
    payload: Mapping[str, Any], model: type[_Model], fields: tuple[str, ...]
) -> _Model | Invalid:
    """``model``'s verdict on ``payload``: a rejection cached for its signature (the values of
    ``fields``) when there is one, else a validation."""
    signature = _signature(payload, fields)
    if signature is not None:
        problem = _cached_problem(model, signature)
        if problem is not None:
            return Invalid(problem)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return Invalid(_problem(exc))


def candidate_payload(fact: Fact) -> Candidate | Invalid:
    """The candidate's payload, or why it is invalid (:class:`CandidatePayload` decides)."""
    verdict = fact.verdict
    if isinstance(verdict, Candidate | Invalid):
        return verdict
    found: Candidate | Invalid | None = _plain_candidate(fact.payload)
    if found is None:
        parsed = _validated(fact.payload, CandidatePayload, _CANDIDATE_FIELDS)
        if isinstance(parsed, Invalid):
            found = parsed
        else:
            found = Candidate(parsed.key, parsed.bucket, parsed.ttl_hours)
    fact.verdict = found
    return found


def change_payload(fact: Fact) -> ChangeTarget | Invalid:
    """A promotion's or retraction's (entry id in lower case, reason), or why its payload is
    invalid (:class:`ChangePayload` decides)."""
    verdict = fact.verdict
    if isinstance(verdict, tuple | Invalid):
        return verdict
    found: ChangeTarget | Invalid | None = _plain_change(fact.payload)
    if found is None:
        parsed = _validated(fact.payload, ChangePayload, _CHANGE_FIELDS)
        found = parsed if isinstance(parsed, Invalid) else (parsed.entry_id, parsed.reason)
    fact.verdict = found
    return found


def refs_of(payload: Mapping[str, Any]) -> frozenset[str]:
    """The entry ids an event references: the strings of ``payload.refs`` when it is a list."""
    refs = payload.get("refs")
    if not isinstance(refs, list):
        return frozenset()
    return frozenset(r for r in refs if isinstance(r, str))


def referenced(payload: Mapping[str, Any], entry_id: Callable[[str], UUID] = UUID) -> list[UUID]:
    """The entries an event references: those of :func:`refs_of` that are entry ids spelled
    as the rules say (lower-case UUIDs), the only ones that can name an entry, each made a
    UUID by ``entry_id``."""
    return [entry_id(ref) for ref in refs_of(payload) if _ENTRY_ID_TEXT.match(ref)]


def fold_entry(
    entry_id: UUID,
    workspace_id: str,
    facts: Iterable[Fact],
    rules: MemoryRules,
    decisions: Mapping[Key, list[Fact]] | None = None,
) -> tuple[Entry | None, list[Change]]:
    """The entry ``entry_id`` of ``workspace_id`` and its audit rows, from its events.

    ``facts`` must hold every event of the workspace that concerns the entry (its candidate,
    the promotions/retractions naming it, the events whose ``refs`` list it, and the
    decisions of its trace unless ``decisions``, per (workspace, trace), has them); others
    are ignored, as are duplicates. The rows of invalid promotions/retractions are not
    included (see :class:`Touched`).
    """
    # By the UUIDs' integers: hashing a UUID runs Python code, hashing an int does not.
    relevant = {f.event_id.int: f for f in facts if f.workspace_id == workspace_id}
    candidate = relevant.get(entry_id.int)
    if candidate is None or candidate.type != CANDIDATE:
        return None, _refusals(entry_id, workspace_id, relevant.values())
    if decisions and may_auto_promote(candidate, rules):
        for fact in decisions.get((workspace_id, candidate.trace_id), ()):
            relevant[fact.event_id.int] = fact
    if len(relevant) == 1:
        entry, row = _create(entry_id, workspace_id, candidate)
        return entry, [row]
    fold = _Fold(entry_id, workspace_id, rules, candidate)
    for fact in sorted(relevant.values(), key=_order):
        fold.step(fact)
    return fold.entry, fold.rows


_NO_ENTRY = "no such entry in this workspace at this point"


def _create(entry_id: UUID, workspace_id: str, fact: Fact) -> tuple[Entry | None, Change]:
    """What a candidate does: the entry and its ``created`` row, or no entry and an
    ``invalid`` row. Nothing happens to an entry before its candidate."""
    parsed = candidate_payload(fact)
    if isinstance(parsed, Invalid):
        return None, Change(
            entry_id, fact.event_id, workspace_id, Action.INVALID, None, None, fact.ts,
            fact.satellite_id, parsed.reason,
        )  # fmt: skip
    expires = None
    if parsed.ttl_hours is not None:
        expires = fact.ts + timedelta(hours=parsed.ttl_hours)
    entry = Entry(
        entry_id, workspace_id, parsed.key, parsed.bucket, Status.CANDIDATE, fact.confidence,
        fact.trace_id, fact.satellite_id, fact.ts, fact.ts, expires, fact.event_id,
    )  # fmt: skip
    created = Change(
        entry_id, fact.event_id, workspace_id, Action.CREATED, None, Status.CANDIDATE, fact.ts,
        fact.satellite_id, None,
    )  # fmt: skip
    return entry, created


def _refusals(entry_id: UUID, workspace_id: str, facts: Iterable[Fact]) -> list[Change]:
    """The rows of an entry that has no candidate in the workspace: each promotion or
    retraction naming it is refused, whatever else happens (what :class:`_Fold` does
    without a candidate, in any order)."""
    rows = []
    for fact in facts:
        if fact.type in CHANGE_TYPES:
            change = change_payload(fact)
            if type(change) is tuple and change[0] == str(entry_id):
                rows.append(
                    Change(
                        entry_id, fact.event_id, workspace_id, Action.REFUSED, None, None,
                        fact.ts, fact.satellite_id, _NO_ENTRY,
                    )
                )  # fmt: skip
    return rows


def _order(fact: Fact) -> tuple[datetime, int]:
    """A fact's position as a sort key (UUIDs order as their integers, which compare in C)."""
    return fact.ts, fact.event_id.int


class _Fold:
    """The state of one entry while its events are folded in order."""

    __slots__ = (
        "candidate",
        "entry",
        "entry_id",
        "fired",
        "referrers",
        "rows",
        "rules",
        "target",
        "workspace_id",
    )

    def __init__(
        self, entry_id: UUID, workspace_id: str, rules: MemoryRules, candidate: Fact | None
    ) -> None:
        self.entry_id = entry_id
        self.target = str(entry_id)
        self.workspace_id = workspace_id
        self.rules = rules
        if candidate is not None and candidate.type != CANDIDATE:
            candidate = None
        self.candidate = candidate
        self.entry: Entry | None = None
        self.rows: list[Change] = []
        self.fired = False
        self.referrers: set[UUID] = set()

    def record(self, fact: Fact, action: Action, to: Status | None, reason: str | None) -> None:
        before = self.entry.status if self.entry is not None else None
        self.rows.append(
            Change(
                self.entry_id, fact.event_id, self.workspace_id, action, before,
                before if to is None else to, fact.ts, fact.satellite_id, reason,
            )
        )  # fmt: skip

    def move(self, fact: Fact, status: Status, action: Action, reason: str | None) -> None:
        entry = self.entry
        assert entry is not None
        self.record(fact, action, status, reason)
        self.entry = Entry(
            entry.entry_id, entry.workspace_id, entry.key, entry.bucket, status,
            entry.confidence, entry.trace_id, entry.satellite_id, entry.created_at, fact.ts,
            entry.expires_at, fact.event_id,
        )  # fmt: skip

    def step(self, fact: Fact) -> None:
        if fact is self.candidate:
            self.create(fact)
            return
        if fact.type in CHANGE_TYPES:
            change = change_payload(fact)
            if type(change) is tuple and change[0] == self.target:
                self.change(fact, change[1])
        if self.entry is not None:
            self.auto_promote(fact)

    def create(self, fact: Fact) -> None:
        self.entry, row = _create(self.entry_id, self.workspace_id, fact)
        self.rows.append(row)

    def change(self, fact: Fact, reason: str | None) -> None:
        """One explicit promotion or retraction (``reason``: the payload's)."""
        entry = self.entry
        if entry is None:
            self.record(fact, Action.REFUSED, None, _NO_ENTRY)
        elif entry.status is Status.RETRACTED:
            self.record(fact, Action.REFUSED, None, "the entry is retracted, which is final")
        elif fact.type == RETRACTED:
            self.move(fact, Status.RETRACTED, Action.RETRACTED, reason)
        elif entry.status is Status.PROMOTED:
            self.record(fact, Action.REFUSED, None, "the entry is already promoted")
        elif entry.expired_at(fact.ts):
            self.record(fact, Action.REFUSED, None, "promotion refused: the entry has expired")
        else:
            self.move(fact, Status.PROMOTED, Action.PROMOTED, reason)

    def auto_promote(self, fact: Fact) -> None:
        """Count ``fact`` towards auto-promotion; promote when it is the trigger."""
        entry, candidate, rules = self.entry, self.candidate, self.rules
        if (
            entry is None
            or candidate is None
            or self.fired
            or entry.confidence < rules.auto_promote_confidence
            or fact.position <= candidate.position
            or fact.ts > candidate.ts + rules.auto_promote_window
        ):
            return
        trigger = None
        if fact.type == DECISION and fact.trace_id == candidate.trace_id:
            trigger = f"auto-promoted: decision {fact.event_id} of the same trace"
        elif self.target in refs_of(fact.payload):
            self.referrers.add(fact.event_id)
            if len(self.referrers) >= rules.auto_promote_refs:
                trigger = f"auto-promoted: referenced by {len(self.referrers)} events"
        if trigger is None:
            return
        self.fired = True
        # One row per (entry, event): an explicit change by this same event already has it.
        if entry.status is not Status.CANDIDATE or self.rows[-1].event_id == fact.event_id:
            return
        if entry.expired_at(fact.ts):
            self.record(fact, Action.REFUSED, None, "auto-promotion refused: the entry has expired")
        else:
            self.move(fact, Status.PROMOTED, Action.PROMOTED, trigger)


@dataclass(slots=True)
class Touched:
    """What a batch's events may change, noted once they are written.

    ``groups``: per (workspace, entry id), the batch's events that concern that entry (its
    candidate, the promotions/retractions naming it, the events whose refs list it);
    ``decisions``: the batch's decisions per (workspace, trace); ``invalid_rows``: the
    ``invalid`` rows of candidates and promotions/retractions whose payload breaks the rules,
    keyed by their own event (such an event changes no entry: an invalid candidate creates
    none, so whatever names it is refused with or without it); ``candidates``: the valid
    candidates by id (its :attr:`UUID.int`); ``noted``: the ids of the events noted, by what
    a lookup of the store could find them as (``c``andidates, ``p``romotions and retractions,
    events with ``r``efs, ``d``ecisions). When the batch was new to the store, this is all the
    store holds of it that memory reads.
    """

    groups: dict[Key, list[Fact]] = field(default_factory=dict)
    decisions: dict[Key, list[Fact]] = field(default_factory=dict)
    invalid_rows: dict[UUID, Change] = field(default_factory=dict)
    candidates: dict[int, Fact] = field(default_factory=dict)
    noted: dict[str, list[UUID]] = field(
        default_factory=lambda: {"c": [], "p": [], "r": [], "d": []}
    )

    def add(self, fact: Fact) -> None:
        """Note one event (noting it again changes nothing the projection reads)."""
        kind = fact.type
        workspace = fact.workspace_id
        groups = self.groups
        noted = self.noted
        if kind == CANDIDATE:
            noted["c"].append(fact.event_id)
            parsed = candidate_payload(fact)
            if isinstance(parsed, Invalid):
                self._invalid(fact, parsed)
            else:
                self.candidates[fact.event_id.int] = fact
                groups.setdefault((workspace, fact.event_id), []).append(fact)
        elif kind in CHANGE_TYPES:
            noted["p"].append(fact.event_id)
            change = change_payload(fact)
            if isinstance(change, Invalid):
                self._invalid(fact, change)
            else:
                groups.setdefault((workspace, self._entry_id(change[0])), []).append(fact)
        elif kind == DECISION:
            noted["d"].append(fact.event_id)
            self.decisions.setdefault((workspace, fact.trace_id), []).append(fact)
        if "refs" in fact.payload:
            noted["r"].append(fact.event_id)
            for entry_id in referenced(fact.payload, self._entry_id):
                groups.setdefault((workspace, entry_id), []).append(fact)

    def _entry_id(self, text: str) -> UUID:
        """The id of the entry ``text`` names (a lower-case UUID): the UUID of the batch's
        candidate when it is one (a UUID built from text costs 2 µs)."""
        candidate = self.candidates.get(int(text.replace("-", ""), 16))
        return UUID(text) if candidate is None else candidate.event_id

    def _invalid(self, fact: Fact, problem: Invalid) -> None:
        self.invalid_rows[fact.event_id] = (
            Change(
                fact.event_id, fact.event_id, fact.workspace_id, Action.INVALID,
                None, None, fact.ts, fact.satellite_id, problem.reason,
            )
        )  # fmt: skip

    def add_envelope(self, envelope: Envelope) -> None:
        """Note one event of a batch: nearly free for the events memory does not concern."""
        if concerns_memory(envelope):
            self.add(
                Fact(
                    envelope.event_id, envelope.ts, envelope.workspace_id,
                    envelope.satellite_id, envelope.trace_id, envelope.type._value_,
                    envelope.confidence, envelope.payload,
                )
            )  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.groups or self.decisions or self.invalid_rows)

    @property
    def entries(self) -> set[Key]:
        """The entries the batch's events name."""
        return set(self.groups)

    @property
    def traces(self) -> set[Key]:
        """The (workspace, trace) of the batch's decisions."""
        return set(self.decisions)

    @property
    def invalid(self) -> list[Change]:
        """The ``invalid`` rows, keyed by their own event."""
        return list(self.invalid_rows.values())

    @property
    def workspaces(self) -> list[str]:
        """Every workspace concerned, sorted (the order their locks are taken in)."""
        found = {ws for ws, _ in self.groups} | {ws for ws, _ in self.decisions}
        found.update(change.workspace_id for change in self.invalid_rows.values())
        return sorted(found)


def concerns_memory(envelope: Envelope) -> bool:
    """Whether the projection may read this event (the others are not noted)."""
    # _value_, the member's plain str: hashing an enum member, or reading .value, runs Python
    # code, and this runs for every event of a batch.
    return envelope.type._value_ in _NOTED_TYPES or "refs" in envelope.payload


def may_auto_promote(candidate: Fact, rules: MemoryRules) -> bool:
    """Whether decisions and references can matter to the entry of ``candidate`` (a valid
    candidate): only when its confidence reaches the threshold."""
    return candidate.confidence >= rules.auto_promote_confidence


# What folding one group gives: its entry (if any) and its audit rows.
Folded = tuple[Entry | None, list[Change]]


def fold_groups(
    groups: Mapping[Key, list[Fact]],
    decisions: Mapping[Key, list[Fact]],
    invalid_rows: Mapping[UUID, Change],
    rules: MemoryRules,
) -> tuple[list[Entry], list[Change]]:
    """Fold every group with the decisions (per workspace and trace) that concern it: the
    entries and the audit rows, ``invalid_rows`` included once."""
    return flatten(fold_each(groups, decisions, rules), invalid_rows)


def fold_each(
    groups: Mapping[Key, list[Fact]],
    decisions: Mapping[Key, list[Fact]],
    rules: MemoryRules,
    keys: Iterable[Key] | None = None,
) -> dict[Key, Folded]:
    """:func:`fold_entry` of every group (of ``keys`` only, when given) with the decisions
    (per workspace and trace) that concern it."""
    if keys is None:
        return {
            key: fold_entry(key[1], key[0], facts, rules, decisions)
            for key, facts in groups.items()
        }
    return {
        (workspace, entry_id): fold_entry(entry_id, workspace, groups[workspace, entry_id],
                                          rules, decisions)
        for workspace, entry_id in keys
    }  # fmt: skip


def flatten(
    folded: Mapping[Key, Folded], invalid_rows: Mapping[UUID, Change]
) -> tuple[list[Entry], list[Change]]:
    """The entries and audit rows of ``folded``, ``invalid_rows`` included once."""
    entries: list[Entry] = []
    rows: list[Change] = list(invalid_rows.values())
    for entry, changes in folded.values():
        if entry is not None:
            entries.append(entry)
        for change in changes:
            # An invalid candidate's own row, already among invalid_rows.
            if change.action is Action.INVALID and change.event_id in invalid_rows:
                continue
            rows.append(change)
    return entries, rows


def project(facts: Iterable[Fact], rules: MemoryRules) -> Projection:
    """The projection of a set of events (any order, duplicates ignored): what the consumer
    maintains and replay rebuilds, computed in memory."""
    touched = Touched()
    for fact in {fact.event_id: fact for fact in facts}.values():
        touched.add(fact)
    entries, history = fold_groups(touched.groups, touched.decisions, touched.invalid_rows, rules)
    entries.sort(key=lambda e: e.entry_id)
    history.sort(key=lambda c: (c.entry_id, c.event_id))
    return Projection(tuple(entries), tuple(history))
