"""Consumer throughput against a real PostgreSQL: handler vs plain COPY, and the store strategies.

Run: ``PYTHONPATH=layers/punk_records/python:. .venv/bin/python bench/consumer_throughput.py``
(``--fast`` turns fsync off as the tests do; ``--repeat N`` sets the runs per measurement).

For 100, 1,000 and 10,000 distinct events it reports the median time and records/second of:

- ``handler``: the consumer Lambda handler in-process, from the ESM event to the commit
  (base64, validation, redaction, one transaction), on empty tables;
- ``redelivery``: the same event again, every record a duplicate;
- ``decode only``: the handler's CPU work without the database (records() + consume());
- ``store copy``: ``write_batch`` as shipped (COPY into a staging table, one INSERT ... SELECT);
- ``store unnest``: the alternative (one INSERT ... SELECT FROM unnest(arrays));
- ``plain COPY``: COPY of the same rows into an identical table (same indexes), the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aws_lambda_powertools.utilities.data_classes import KafkaEvent

from local.samples import kafka as samples
from local.services import Postgres
from punk_records import config, migrations, store
from punk_records.consumer import classify, consume
from punk_records.store import StoredEvent, WriteResult, write_batch

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1_000, 10_000)
COLUMNS = (
    "event_id, ts, workspace_id, satellite_id, trace_id, type, severity, confidence,"
    " payload_json, kafka_topic, kafka_partition, kafka_offset"
)
UNNEST_INSERT = f"""
INSERT INTO events ({COLUMNS})
SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::uuid[],
                     %s::text[], %s::text[], %s::float8[], %s::jsonb[], %s::text[],
                     %s::int[], %s::bigint[])
ON CONFLICT (event_id) DO NOTHING
"""


@dataclass
class LambdaContext:
    function_name: str = "punk-records-consumer"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:consumer"
    aws_request_id: str = "bench"


def load_handler() -> Callable[[dict, Any], Any]:
    spec = importlib.util.spec_from_file_location(
        "consumer_app", ROOT / "functions" / "consumer" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # One log line and one EMF document per batch: keep them off the report.
    module.logger.registered_handler.setStream(io.StringIO())
    return module


def esm_event(size: int) -> dict:
    """``size`` distinct events of ~0.5 KiB over three partitions, as the ESM delivers them."""
    records = []
    for i in range(size):
        env = samples.envelope(
            f"bench-{i}",
            workspace_id=f"ws-{i % 50}",
            payload={
                "summary": f"disk usage above 90% on volume {i}",
                "host": f"db-{i % 7}",
                "metrics": {"used_pct": 91.5, "free_gb": i % 100},
                "tags": ["storage", "prod"],
            },
        )
        records.append(samples.envelope_record(env, i % 3, i // 3))
    return samples.batch("msk", records)


class NoStore:
    """An EventStore that stores nothing, to time the handler's work without the database."""

    def write(self, events: Sequence[StoredEvent], dead_letters: Sequence = ()) -> WriteResult:
        return WriteResult(len(events), 0, len(dead_letters))


def unnest_write(conn: psycopg.Connection, events: Sequence[StoredEvent]) -> int:
    """The alternative store strategy, kept here so the comparison can be rerun."""
    columns: tuple[list, ...] = tuple([] for _ in range(12))
    for item in events:
        env = item.envelope
        row = (
            env.event_id, env.ts, env.workspace_id, env.satellite_id, env.trace_id,
            env.type.value, env.severity.value, env.confidence, item.payload_json.decode(),
            item.topic, item.partition, item.offset,
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    with conn.transaction():
        return conn.execute(UNNEST_INSERT, columns).rowcount


def plain_copy(conn: psycopg.Connection, rows: Sequence[tuple]) -> None:
    with conn.transaction(), conn.cursor().copy(f"COPY events_copy ({COLUMNS}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def median_seconds(run: Callable[[], object], repeat: int, before: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fast", action="store_true", help="fsync off (as the tests run)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="punk-bench-") as tmp:
        postgres = Postgres(Path(tmp) / "postgres", fast=args.fast)
        with contextlib.redirect_stdout(sys.stderr):
            postgres.start()
        try:
            report(postgres.dsn, args.repeat, args.fast)
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                postgres.stop()
    return 0


def measure(size: int, app: Any, conn: psycopg.Connection, repeat: int) -> dict[str, float]:
    """Median seconds of each column of the report for a batch of ``size`` records."""
    event = esm_event(size)
    context = LambdaContext()
    stored = [classify(r) for r in app.records(KafkaEvent(event))]
    rows = [
        (s.envelope.event_id, s.envelope.ts, s.envelope.workspace_id, s.envelope.satellite_id,
         s.envelope.trace_id, s.envelope.type.value, s.envelope.severity.value,
         s.envelope.confidence, s.payload_json.decode(), s.topic, s.partition, s.offset)
        for s in stored
    ]  # fmt: skip

    def truncate() -> None:
        conn.execute("TRUNCATE events, dead_letters, events_copy")

    def nothing() -> None:
        pass

    def handle() -> None:
        app.handler(event, context)

    results = {"handler": median_seconds(handle, repeat, truncate)}
    # The last run left every event stored: from here on each invocation is a redelivery.
    results["redelivery"] = median_seconds(handle, repeat, nothing)
    results["decode"] = median_seconds(
        lambda: consume(app.records(KafkaEvent(event)), NoStore()), repeat, nothing
    )
    results["copy"] = median_seconds(lambda: write_batch(conn, stored), repeat, truncate)
    results["unnest"] = median_seconds(lambda: unnest_write(conn, stored), repeat, truncate)
    results["plain"] = median_seconds(lambda: plain_copy(conn, rows), repeat, truncate)
    return results


def report(dsn: str, repeat: int, fast: bool) -> None:
    os.environ["DATABASE_URL"] = dsn
    config.get_settings.cache_clear()
    store.get_store.cache_clear()
    app = load_handler()
    conn = psycopg.connect(dsn, autocommit=True)
    migrations.apply(conn)
    conn.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
    print(f"PostgreSQL fsync {'off' if fast else 'on'}; median of {repeat} runs; rec/s (ms)")
    print(
        "| records | handler | redelivery | decode only | store copy | store unnest | plain COPY |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in SIZES:
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF documents
            results = measure(size, app, conn, repeat)
        cells = " | ".join(f"{size / t:,.0f} ({t * 1000:.1f})" for t in results.values())
        print(f"| {size:,} | {cells} |", flush=True)
    store.get_store().reset()
    conn.close()


if __name__ == "__main__":
    sys.exit(main())
