"""Replay: rebuild one workspace's memory projection from its events, in one transaction.

``python -m punk_records.replay --workspace ws-a [--dry-run]`` (``DATABASE_URL`` or
``DATABASE_SECRET_ARN``), or the admin function (``sam remote invoke``, docs/memory.md). The
report gives the projection's digest before and after: equal digests mean the live projection
was already exactly what the events say. ``--dry-run`` computes the rebuild and rolls it back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from punk_records.config import Settings
from punk_records.errors import PunkRecordsError, StoreUnavailable
from punk_records.memory import MemoryRules
from punk_records.memory_store import Digest, digest, lock_workspaces, rebuild
from punk_records.observability import logger


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay found and did."""

    workspace_id: str
    dry_run: bool
    before: Digest
    after: Digest
    elapsed_ms: float

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": "replay",
            "workspace_id": self.workspace_id,
            "dry_run": self.dry_run,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "changed": self.changed,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


class _DryRun(Exception):
    """Rolls the replay's transaction back."""


def replay_workspace(
    conn: psycopg.Connection, workspace: str, rules: MemoryRules, dry_run: bool = False
) -> ReplayReport:
    """Rebuild ``workspace``'s projection in one transaction (rolled back when ``dry_run``),
    holding its projection lock so the consumer waits. Raise StoreUnavailable on a database
    failure; nothing is changed then."""
    started = time.perf_counter()
    try:
        with conn.transaction():
            lock_workspaces(conn, [workspace])
            before = digest(conn, workspace)
            rebuild(conn, workspace, rules)
            after = digest(conn, workspace)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except psycopg.Error as exc:
        raise StoreUnavailable(f"replay failed: {type(exc).__name__}") from exc
    report = ReplayReport(
        workspace, dry_run, before, after, (time.perf_counter() - started) * 1_000
    )
    logger.info("memory replayed", extra=report.as_dict())
    return report


def connect_admin(settings: Settings) -> psycopg.Connection:
    """A connection for the admin operations, from ``DATABASE_URL`` or the database secret."""
    from punk_records.store import connect, database_conninfo

    return connect(database_conninfo(settings), settings.database_connect_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m punk_records.replay",
        description="Rebuild one workspace's memory projection from its events (docs/memory.md).",
    )
    parser.add_argument("--workspace", required=True, help="the workspace_id to rebuild")
    parser.add_argument(
        "--dry-run", action="store_true", help="compute the rebuild and its digest, then roll back"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        with connect_admin(settings) as conn:
            report = replay_workspace(
                conn, args.workspace, MemoryRules.from_settings(settings), args.dry_run
            )
    except PunkRecordsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if not exc.retriable else 1
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
