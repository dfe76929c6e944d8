"""Numbered SQL migrations, applied in order once each and recorded in ``schema_migrations``.

Migrations are expand-only: a file may add tables, columns and indexes, never drop or rename
one, because the code already running keeps using the old names while a deploy is under way
(docs/deploy.md "Migrations"). A test rejects ``DROP`` and ``RENAME`` in these files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib import resources

import psycopg

from punk_records.errors import StoreUnavailable

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Serialises concurrent runners (two cold starts, a deploy hook and a developer) on one database.
_LOCK_KEY = 0x70756E6B
# Below this many milliseconds left there is no point in starting another transaction.
_MIN_BUDGET_MS = 100


def available() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every migration file, ordered by version."""
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def digest() -> str:
    """``sha256:<hex>`` of every migration's name and text: changes when the set changes.

    template.yaml passes it to the migrations custom resource, so that a deploy carrying a new
    migration updates the resource and applies it.
    """
    sha = hashlib.sha256()
    for _, name, sql in available():
        sha.update(f"{name}\0{len(sql)}\0".encode())
        sha.update(sql.encode())
    return f"sha256:{sha.hexdigest()}"


def apply(conn: psycopg.Connection, time_left_ms: Callable[[], int] | None = None) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their names.

    Running it again is a no-op. With ``time_left_ms``, every wait (the lock another runner
    holds, a table lock, a slow statement) ends before that budget is spent, and
    StoreUnavailable says which limit was hit. Other errors propagate as psycopg errors;
    nothing is half-applied.
    """
    applied: list[str] = []
    step, budget_ms = "schema_migrations", None
    try:
        with conn.transaction():
            budget_ms = _bound(conn, time_left_ms)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for version, step, sql in available():
            with conn.transaction():
                budget_ms = _bound(conn, time_left_ms)
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
                ).fetchone()
                if done:
                    continue
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, step),
                )
                applied.append(step)
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreUnavailable(
            f"{step}: gave up waiting for a lock after {budget_ms} ms (lock_timeout); another"
            " session holds the migrations lock or a lock on a table it changes"
        ) from exc
    except psycopg.errors.QueryCanceled as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "canceled"
        raise StoreUnavailable(f"{step}: stopped by statement_timeout ({first_line})") from exc
    return applied


def _bound(conn: psycopg.Connection, time_left_ms: Callable[[], int] | None) -> int | None:
    """Limit lock waits and statements of the current transaction to the time left."""
    if time_left_ms is None:
        return None
    budget_ms = time_left_ms()
    if budget_ms < _MIN_BUDGET_MS:
        raise StoreUnavailable(f"no time left to apply migrations ({budget_ms} ms)")
    # A lock wait ends a little before the statement limit, so that the reason names it.
    lock_ms = budget_ms - min(1_000, budget_ms // 10)
    # SET LOCAL lasts until the end of this transaction; SET takes no bind parameters.
    conn.execute(f"SET LOCAL lock_timeout = {int(lock_ms)}")
    conn.execute(f"SET LOCAL statement_timeout = {int(budget_ms)}")
    return lock_ms
