"""Migrations are expand-only: no file may drop or rename what running code still uses."""

from __future__ import annotations

import re

import pytest

from punk_records import migrations

# Comments and quoted text are not statements: "-- dropped in v2" must not count.
_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", re.DOTALL)
_CONTRACTING = re.compile(r"\b(DROP|RENAME)\b", re.IGNORECASE)


def contracting(sql: str) -> list[str]:
    """The DROP / RENAME keywords in ``sql`` outside comments and quoted text."""
    return [m.group(1).upper() for m in _CONTRACTING.finditer(_NOT_CODE.sub(" ", sql))]


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE events;",
        "ALTER TABLE events DROP COLUMN payload_json;",
        "drop index events_trace_id_idx;",
        "ALTER TABLE events RENAME COLUMN ts TO occurred_at;",
        "ALTER TABLE dead_letters RENAME TO poison;",
        "ALTER TABLE events ALTER COLUMN note DROP NOT NULL;",
    ],
)
def test_given_a_contracting_statement_then_it_is_found(sql: str) -> None:
    assert contracting(sql)


def test_given_drop_or_rename_only_in_comments_or_text_then_nothing_is_found() -> None:
    sql = """
    -- columns are never dropped (expand-only)
    /* nor RENAMEd */
    CREATE TABLE notes (id int, label text DEFAULT 'drop-in', "rename" text);
    """
    assert contracting(sql) == []


@pytest.mark.parametrize("name", [name for _, name, _ in migrations.available()])
def test_given_a_shipped_migration_then_it_only_expands_the_schema(name: str) -> None:
    [sql] = [sql for _, n, sql in migrations.available() if n == name]
    assert contracting(sql) == [], (
        f"{name} drops or renames: code still running during a deploy uses the old schema."
        " Add the new column/table instead, and remove the old one only after no deployed code"
        " reads it (docs/deploy.md, Migrations)."
    )
