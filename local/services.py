"""Start and stop the real Kafka broker and PostgreSQL server: ``python -m local.services``.

The services themselves live in :mod:`local.kafka_service` and :mod:`local.postgres_service`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from local.kafka_service import Kafka, kafka_libs, kafka_version
from local.postgres_service import Postgres, postgres_bin
from local.processes import REPO_ROOT, ServiceError, stop_all

DEFAULT_DIR = REPO_ROOT / ".local" / "services"


def _services(base: Path) -> tuple[Kafka, Postgres]:
    return Kafka(base / "kafka"), Postgres(base / "postgres")


def main(argv: Sequence[str] | None = None) -> int:
    """``prepare`` (fetch and install, no start) / ``up`` / ``down`` / ``status`` for both
    services; data and logs stay under ``--dir``."""
    parser = argparse.ArgumentParser(prog="python -m local.services", description=__doc__)
    parser.add_argument("command", choices=["prepare", "up", "down", "status"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="data dir (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    base: Path = args.dir.resolve()

    if args.command == "prepare":
        try:
            libs, pg_bin = kafka_libs(), postgres_bin()
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"Kafka {kafka_version()} jars: {libs}\nPostgreSQL binaries: {pg_bin}")
        return 0

    if args.command == "status" and not base.exists():
        print(f"kafka     stopped (no data in {base})\npostgres  stopped")
        return 1
    kafka, postgres = _services(base)
    try:
        if args.command == "up":
            kafka.start()
            postgres.start()
        elif args.command == "down":
            stop_all([("Kafka", kafka.stop), ("PostgreSQL", postgres.stop)])
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    states = {
        "kafka": (kafka.is_running(), kafka.bootstrap, kafka.log_file),
        "postgres": (postgres.is_running(), postgres.dsn, postgres.log_file),
    }
    for name, (running, address, log) in states.items():
        print(f"{name:<9} {'running' if running else 'stopped'}  {address}  (log: {log})")
    all_up = all(running for running, _, _ in states.values())
    return 0 if args.command == "down" or all_up else 1


if __name__ == "__main__":
    sys.exit(main())
