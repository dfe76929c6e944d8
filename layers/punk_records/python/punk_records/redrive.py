"""Redrive: re-examine dead letters with today's rules and store those that are now events.

``python -m punk_records.redrive [--topic T] [--partition P] [--from-offset A] [--to-offset B]
[--reason TEXT] [--limit N] [--dry-run]``, or the admin function (docs/memory.md). Each dead
letter not yet redriven is classified exactly as the consumer classifies a record; the valid
ones are stored as events (deduplicated by ``event_id``, with the memory projection updated in
the same transaction) and marked ``redriven_at`` / ``redriven_event_id``. Running it again
finds nothing left to do: it is idempotent. Dead letters that are still invalid are left as
they are and listed with today's reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from punk_records.acceptance import Limits
from punk_records.config import Settings
from punk_records.consumer import KafkaRecord, classify, reason
from punk_records.errors import InvalidEnvelope, PunkRecordsError, StoreUnavailable
from punk_records.memory import MemoryRules
from punk_records.observability import logger
from punk_records.ports import StoredEvent
from punk_records.store import write_batch

# Dead letters examined per transaction: a long redrive commits as it goes, and can be
# stopped and run again.
CHUNK = 500
# Still-invalid dead letters listed by id in the report (all are counted).
_MAX_LISTED = 20

Classifier = Callable[[KafkaRecord], StoredEvent]


@dataclass(frozen=True, slots=True)
class RedriveFilter:
    """Which dead letters to re-examine; every field narrows, None means any."""

    topic: str | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    reason: str | None = None
    limit: int | None = None

    def where(self) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = [sql.SQL("redriven_at IS NULL")]
        params: list[Any] = []
        for column, op, value in (
            ("kafka_topic", "=", self.topic),
            ("kafka_partition", "=", self.partition),
            ("kafka_offset", ">=", self.from_offset),
            ("kafka_offset", "<=", self.to_offset),
        ):
            if value is not None:
                clauses.append(sql.SQL(f"{{}} {op} %s").format(sql.Identifier(column)))
                params.append(value)
        if self.reason is not None:
            clauses.append(sql.SQL("strpos(error, %s) > 0"))
            params.append(self.reason)
        return sql.SQL(" AND ").join(clauses), params


@dataclass(slots=True)
class RedriveReport:
    """What a redrive examined and did."""

    dry_run: bool
    examined: int = 0
    redriven: int = 0
    already_stored: int = 0
    still_invalid: int = 0
    still_invalid_sample: list[dict[str, Any]] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": "redrive",
            "dry_run": self.dry_run,
            "examined": self.examined,
            "redriven": self.redriven,
            "already_stored": self.already_stored,
            "still_invalid": self.still_invalid,
            "still_invalid_sample": self.still_invalid_sample,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


_SELECT = (
    "SELECT id, raw_value, raw_key, kafka_topic, kafka_partition, kafka_offset"
    " FROM dead_letters WHERE {where} AND id > %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)
_MARK = """
UPDATE dead_letters d SET redriven_at = now(), redriven_event_id = m.event_id
FROM unnest(%s::bigint[], %s::uuid[]) AS m(id, event_id)
WHERE d.id = m.id
"""


class _DryRun(Exception):
    """Rolls a chunk's transaction back."""


def redrive(
    conn: psycopg.Connection,
    selection: RedriveFilter,
    rules: MemoryRules,
    check: Classifier = classify,
    dry_run: bool = False,
    progress: Callable[[RedriveReport], None] | None = None,
) -> RedriveReport:
    """Re-examine the selected dead letters with ``check`` (the consumer's classification);
    store the valid ones and mark them redriven, :data:`CHUNK` per transaction (each rolled
    back when ``dry_run``). Raise StoreUnavailable on a database failure: the chunks already
    committed stay done, and running it again carries on."""
    started = time.perf_counter()
    report = RedriveReport(dry_run=dry_run)
    where, params = selection.where()
    statement = sql.SQL(_SELECT).format(where=where)
    last_id = 0
    try:
        while selection.limit is None or report.examined < selection.limit:
            size = CHUNK
            if selection.limit is not None:
                size = min(CHUNK, selection.limit - report.examined)
            try:
                with conn.transaction():
                    rows = conn.execute(statement, [*params, last_id, size]).fetchall()
                    if not rows:
                        break
                    last_id = rows[-1][0]
                    _chunk(conn, rows, rules, check, report)
                    if dry_run:
                        raise _DryRun
            except _DryRun:
                pass
            if progress is not None:
                progress(report)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"redrive failed: {type(exc).__name__}") from exc
    report.elapsed_ms = (time.perf_counter() - started) * 1_000
    logger.info("dead letters redriven", extra=report.as_dict())
    return report


def _chunk(
    conn: psycopg.Connection,
    rows: Sequence[tuple[Any, ...]],
    rules: MemoryRules,
    check: Classifier,
    report: RedriveReport,
) -> None:
    valid: list[tuple[int, StoredEvent]] = []
    for letter_id, value, key, topic, partition, offset in rows:
        record = KafkaRecord(topic, partition, offset, key, value)
        report.examined += 1
        try:
            valid.append((letter_id, check(record)))
        except InvalidEnvelope as exc:
            report.still_invalid += 1
            if len(report.still_invalid_sample) < _MAX_LISTED:
                report.still_invalid_sample.append({"id": letter_id, "reason": reason(record, exc)})
    if not valid:
        return
    result = write_batch(conn, [event for _, event in valid], (), rules)
    report.redriven += len(valid)
    report.already_stored += result.duplicates
    conn.execute(
        _MARK,
        ([letter_id for letter_id, _ in valid], [e.envelope.event_id for _, e in valid]),
    )


def classifier(settings: Settings) -> Classifier:
    """The consumer's classification with the configured limits."""
    limits = Limits.of(settings)
    return lambda record: classify(record, limits)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m punk_records.redrive",
        description="Re-examine dead letters with today's rules; store those now valid "
        "(docs/memory.md).",
    )
    parser.add_argument("--topic")
    parser.add_argument("--partition", type=int)
    parser.add_argument("--from-offset", type=int, help="lowest Kafka offset (inclusive)")
    parser.add_argument("--to-offset", type=int, help="highest Kafka offset (inclusive)")
    parser.add_argument("--reason", help="only dead letters whose reason contains this text")
    parser.add_argument("--limit", type=int, help="examine at most this many")
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    args = parser.parse_args(argv)
    selection = RedriveFilter(
        args.topic, args.partition, args.from_offset, args.to_offset, args.reason, args.limit
    )

    def say(report: RedriveReport) -> None:
        print(
            f"examined {report.examined}, redriven {report.redriven}, "
            f"still invalid {report.still_invalid}",
            file=sys.stderr,
        )

    from punk_records.replay import connect_admin

    try:
        settings = Settings.from_env()
        with connect_admin(settings) as conn:
            report = redrive(
                conn,
                selection,
                MemoryRules.from_settings(settings),
                classifier(settings),
                args.dry_run,
                say,
            )
    except PunkRecordsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if not exc.retriable else 1
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
