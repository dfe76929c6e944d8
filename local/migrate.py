"""Apply the PostgreSQL migrations from this machine: ``python -m local.migrate``.

The same code the deploy-time custom resource runs, against ``DATABASE_URL`` (or the secret in
``DATABASE_SECRET_ARN``, as in Lambda), and with ``--query-login-url`` the query function's
SELECT-only login. Applying twice is a no-op.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict

from punk_records import migrations
from punk_records.config import Settings
from punk_records.errors import PunkRecordsError
from punk_records.read_store import provision_reader_login
from punk_records.store import connect, database_conninfo


def main(argv: Sequence[str] | None = None) -> int:
    """Apply pending migrations; print what was applied. Exit 1 with the reason on failure."""
    parser = argparse.ArgumentParser(prog="python -m local.migrate", description=__doc__)
    parser.add_argument(
        "--database-url", help="libpq connection string (default: $DATABASE_URL)", default=None
    )
    parser.add_argument(
        "--query-login-url",
        default=None,
        help="also create or update the query function's SELECT-only login named (with its "
        "password) in this connection string",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.database_url:
            settings = settings.model_copy(
                update={"database_url": args.database_url, "database_secret_arn": ""}
            )
        with connect(database_conninfo(settings), settings.database_connect_timeout_s) as conn:
            applied = migrations.apply(conn)
            if args.query_login_url:
                login = conninfo_to_dict(args.query_login_url)
                provision_reader_login(conn, {**login, "username": login.get("user")})
    except (PunkRecordsError, psycopg.Error) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if applied:
        print("applied: " + ", ".join(applied))
    else:
        print("nothing to apply: the schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
