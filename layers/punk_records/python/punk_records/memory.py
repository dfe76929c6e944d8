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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any
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
# An entry id as text: a hyphenated UUID, any case (stored and compared in lower case).
_UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


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


@dataclass(frozen=True, slots=True)
class Fact:
    """One stored event as the projection sees it (``payload`` as stored, redacted)."""

    event_id: UUID
    ts: datetime
    workspace_id: str
    satellite_id: str
    trace_id: UUID
    type: str
    confidence: float
    payload: Mapping[str, Any]

    @property
    def position(self) -> tuple[datetime, UUID]:
        """Where the event sits in its workspace's order."""
        return (self.ts, self.event_id)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the projection. Its ``value`` is its candidate's ``payload.value`` as stored
    (an object, ``{}`` when absent): the store copies it from the event, it never changes."""

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


@dataclass(frozen=True, slots=True)
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


def candidate_payload(fact: Fact) -> CandidatePayload | str:
    """The candidate's payload, or the reason it is invalid."""
    try:
        return CandidatePayload.model_validate(fact.payload)
    except ValidationError as exc:
        return _problem(exc)


def change_payload(fact: Fact) -> ChangePayload | str:
    """A promotion's or retraction's payload, or the reason it is invalid."""
    try:
        return ChangePayload.model_validate(fact.payload)
    except ValidationError as exc:
        return _problem(exc)


def refs_of(payload: Mapping[str, Any]) -> frozenset[str]:
    """The entry ids an event references: the strings of ``payload.refs`` when it is a list."""
    refs = payload.get("refs")
    if not isinstance(refs, list):
        return frozenset()
    return frozenset(r for r in refs if isinstance(r, str))


def fold_entry(
    entry_id: UUID, workspace_id: str, facts: Iterable[Fact], rules: MemoryRules
) -> tuple[Entry | None, list[Change]]:
    """The entry ``entry_id`` of ``workspace_id`` and its audit rows, from its events.

    ``facts`` must hold every event of the workspace that concerns the entry (its candidate,
    the promotions/retractions naming it, the decisions of its trace, the events whose
    ``refs`` list it); others are ignored, as are duplicates. The rows of invalid
    promotions/retractions are not included (see :class:`Touched`).
    """
    relevant = {f.event_id: f for f in facts if f.workspace_id == workspace_id}
    fold = _Fold(entry_id, workspace_id, rules, relevant.get(entry_id))
    for fact in sorted(relevant.values(), key=lambda f: f.position):
        fold.step(fact)
    return fold.entry, fold.rows


class _Fold:
    """The state of one entry while its events are folded in order."""

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
        assert self.entry is not None
        self.record(fact, action, status, reason)
        self.entry = _replace(
            self.entry, status=status, updated_at=fact.ts, last_event_id=fact.event_id
        )

    def step(self, fact: Fact) -> None:
        if fact is self.candidate:
            self.create(fact)
            return
        if fact.type in CHANGE_TYPES:
            change = change_payload(fact)
            if not isinstance(change, str) and change.entry_id == self.target:
                self.change(fact, change)
        self.auto_promote(fact)

    def create(self, fact: Fact) -> None:
        parsed = candidate_payload(fact)
        if isinstance(parsed, str):
            self.record(fact, Action.INVALID, None, parsed)
            return
        expires = None
        if parsed.ttl_hours is not None:
            expires = fact.ts + timedelta(hours=parsed.ttl_hours)
        self.record(fact, Action.CREATED, Status.CANDIDATE, None)
        self.entry = Entry(
            self.entry_id, self.workspace_id, parsed.key, parsed.bucket,
            Status.CANDIDATE, fact.confidence, fact.trace_id, fact.satellite_id,
            fact.ts, fact.ts, expires, fact.event_id,
        )  # fmt: skip

    def change(self, fact: Fact, change: ChangePayload) -> None:
        """One explicit promotion or retraction."""
        entry = self.entry
        if entry is None:
            self.record(fact, Action.REFUSED, None, "no such entry in this workspace at this point")
        elif entry.status is Status.RETRACTED:
            self.record(fact, Action.REFUSED, None, "the entry is retracted, which is final")
        elif fact.type == RETRACTED:
            self.move(fact, Status.RETRACTED, Action.RETRACTED, change.reason)
        elif entry.status is Status.PROMOTED:
            self.record(fact, Action.REFUSED, None, "the entry is already promoted")
        elif entry.expired_at(fact.ts):
            self.record(fact, Action.REFUSED, None, "promotion refused: the entry has expired")
        else:
            self.move(fact, Status.PROMOTED, Action.PROMOTED, change.reason)

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


def _replace(entry: Entry, **changes: Any) -> Entry:
    values = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    values.update(changes)
    return Entry(**values)


_ENTRY_FIELDS = tuple(Entry.__dataclass_fields__)


@dataclass(slots=True)
class Touched:
    """What a batch's events may change: the entries they name and the traces of their
    decisions, per workspace, plus the rows of their invalid promotions/retractions."""

    entries: set[tuple[str, UUID]] = field(default_factory=set)
    traces: set[tuple[str, UUID]] = field(default_factory=set)
    invalid_rows: dict[UUID, Change] = field(default_factory=dict)
    # The batch's events that memory concerns, as they came: when the batch was new to the
    # store (nothing in it was stored before), they are what the store holds and need not be
    # read back.
    facts: dict[UUID, Fact] = field(default_factory=dict)

    def add(self, fact: Fact) -> None:
        """Note one event."""
        kind = fact.type
        workspace = fact.workspace_id
        self.facts[fact.event_id] = fact
        if kind == CANDIDATE:
            self.entries.add((workspace, fact.event_id))
        elif kind in CHANGE_TYPES:
            change = change_payload(fact)
            if isinstance(change, str):
                self.invalid_rows[fact.event_id] = (
                    Change(
                        fact.event_id, fact.event_id, workspace, Action.INVALID,
                        None, None, fact.ts, fact.satellite_id, change,
                    )
                )  # fmt: skip
            else:
                self.entries.add((workspace, UUID(change.entry_id)))
        elif kind == DECISION:
            self.traces.add((workspace, fact.trace_id))
        if "refs" in fact.payload:
            for ref in refs_of(fact.payload):
                if _UUID_TEXT.match(ref) and ref == ref.lower():
                    self.entries.add((workspace, UUID(ref)))

    def add_envelope(self, envelope: Envelope) -> None:
        """Note one event of a batch: nearly free for the events memory does not concern."""
        if envelope.type in _NOTED_TYPES or "refs" in envelope.payload:
            self.add(
                Fact(
                    envelope.event_id, envelope.ts, envelope.workspace_id,
                    envelope.satellite_id, envelope.trace_id, envelope.type.value,
                    envelope.confidence, envelope.payload,
                )
            )  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.entries or self.traces or self.invalid_rows)

    @property
    def invalid(self) -> list[Change]:
        """The ``invalid`` rows of promotions/retractions, keyed by their own event."""
        return list(self.invalid_rows.values())

    @property
    def workspaces(self) -> list[str]:
        """Every workspace concerned, sorted (the order their locks are taken in)."""
        found = {ws for ws, _ in self.entries} | {ws for ws, _ in self.traces}
        found.update(change.workspace_id for change in self.invalid_rows.values())
        return sorted(found)


def project(facts: Iterable[Fact], rules: MemoryRules) -> Projection:
    """The projection of a set of events (any order, duplicates ignored): what the consumer
    maintains and replay rebuilds, computed in memory."""
    by_id = {fact.event_id: fact for fact in facts}
    touched = Touched()
    groups: dict[tuple[str, UUID], list[Fact]] = {}
    decisions: dict[tuple[str, UUID], list[Fact]] = {}
    for fact in by_id.values():
        touched.add(fact)
        workspace = fact.workspace_id
        if fact.type == CANDIDATE:
            groups.setdefault((workspace, fact.event_id), []).append(fact)
        elif fact.type in CHANGE_TYPES:
            change = change_payload(fact)
            if not isinstance(change, str):
                groups.setdefault((workspace, UUID(change.entry_id)), []).append(fact)
        elif fact.type == DECISION:
            decisions.setdefault((workspace, fact.trace_id), []).append(fact)
        for ref in refs_of(fact.payload):
            if _UUID_TEXT.match(ref) and ref == ref.lower():
                groups.setdefault((workspace, UUID(ref)), []).append(fact)
    entries: list[Entry] = []
    history: list[Change] = list(touched.invalid)
    for (workspace, entry_id), own in groups.items():
        candidate = by_id.get(entry_id)
        if candidate is not None and candidate.type == CANDIDATE:
            own = own + decisions.get((workspace, candidate.trace_id), [])
        entry, rows = fold_entry(entry_id, workspace, own, rules)
        if entry is not None:
            entries.append(entry)
        history.extend(rows)
    entries.sort(key=lambda e: e.entry_id)
    history.sort(key=lambda c: (c.entry_id, c.event_id))
    return Projection(tuple(entries), tuple(history))
