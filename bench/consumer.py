"""Consumer throughput against the database's own limit, and the consumer's peak memory.

For each batch size the real consumer handler (base64, validation, redaction, one transaction
into PostgreSQL) runs in-process on empty tables, interleaved with ``COPY`` of the same rows
into an identical table, so both see the same machine load. The ratio handler/COPY is
``copy_seconds / handler_seconds``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from aws_lambda_powertools.utilities.data_classes import KafkaEvent

from bench.common import ROOT, Spread, esm_event, event_dicts, lambda_context, progress, timed

COLUMNS = (
    "event_id, ts, workspace_id, satellite_id, trace_id, type, severity, confidence,"
    " payload_json, kafka_topic, kafka_partition, kafka_offset"
)


def load_handler() -> ModuleType:
    """functions/consumer/app.py, imported by path, with its log lines kept off the terminal."""
    spec = importlib.util.spec_from_file_location(
        "consumer_app", ROOT / "functions" / "consumer" / "app.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("cannot load functions/consumer/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The log line is still formatted (that is part of the cost), just not shown.
    module.logger.registered_handler.setStream(io.StringIO())
    return module


def _rows(app: ModuleType, event: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows the handler stores for ``event``, ready for COPY."""
    from punk_records.consumer import classify

    rows = []
    for record in app.records(KafkaEvent(event)):
        s = classify(record)
        env = s.envelope
        rows.append(
            (
                env.event_id, env.ts, env.workspace_id, env.satellite_id, env.trace_id,
                env.type.value, env.severity.value, env.confidence,
                (s.payload_json or b"").decode(),
                s.topic, s.partition, s.offset,
            )
        )  # fmt: skip
    return rows


def _copy(conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    with conn.transaction(), conn.cursor().copy(f"COPY events_copy ({COLUMNS}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def measure(dsn: str, sizes: Sequence[int], repeat: dict[int, int]) -> dict[str, Any]:
    """Handler and COPY seconds per batch size; see the module docstring."""
    from punk_records import bootstrap, migrations

    os.environ["DATABASE_URL"] = dsn
    bootstrap.reset()
    app = load_handler()
    conn = psycopg.connect(dsn, autocommit=True)
    migrations.apply(conn)
    conn.execute("DROP TABLE IF EXISTS events_copy")
    conn.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
    context = lambda_context("punk-records-consumer")

    def truncate() -> None:
        conn.execute("TRUNCATE events, dead_letters, events_copy")

    results: dict[str, Any] = {}
    try:
        for size in sizes:
            event = esm_event(event_dicts(size, seed=size))
            rows = _rows(app, event)
            handler_s: list[float] = []
            copy_s: list[float] = []
            runs = repeat[size]
            with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF documents
                app.handler(event, context)  # warm-up: connection, caches
                for i in range(runs):
                    # Which goes first alternates, so that neither always meets a warmer server.
                    if i % 2:
                        copy_s.append(timed(partial(_copy, conn, rows), truncate))
                    handler_s.append(timed(partial(app.handler, event, context), truncate))
                    stored = conn.execute("SELECT count(*) FROM events").fetchone()
                    if stored is None or stored[0] != size:
                        raise RuntimeError(f"the handler stored {stored} of {size} events")
                    if not i % 2:
                        copy_s.append(timed(partial(_copy, conn, rows), truncate))
                    progress(f"consumer {size:,}: run {i + 1}/{runs}")
            handler = Spread.of(handler_s)
            copy = Spread.of(copy_s)
            ratios = Spread.of([c / h for c, h in zip(copy_s, handler_s, strict=True)])
            results[str(size)] = {
                "handler_records_per_s": handler.inverse(size).as_dict(),
                "copy_records_per_s": copy.inverse(size).as_dict(),
                "ratio": ratios.as_dict(),
                "ratio_of_medians": copy.median / handler.median,
            }
    finally:
        bootstrap.reset()
        conn.close()
    return results


def peak_rss(dsn: str, size: int) -> dict[str, float]:
    """Peak RSS of a fresh process running the consumer on one ``size``-record batch (MB).

    ``delta_mb`` is the peak during the invocation over the resident size just before it
    (after import, a one-record warm-up and reading the batch's JSON text, which is what the
    runtime receives): what handling the batch costs, parsing included. ``peak_mb`` is the
    whole process at that peak.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as batch:
        batch.write(json.dumps(esm_event(event_dicts(size, seed=size, prefix="rss"))).encode())
        batch.flush()
        out = subprocess.run(
            [sys.executable, "-m", "bench.consumer", batch.name],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": dsn},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _rss_child(batch_file: str) -> None:
    """Not ru_maxrss: Linux carries it over from the parent through fork and exec."""
    from punk_records import migrations

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        migrations.apply(conn)
        conn.execute("TRUNCATE events, dead_letters")
    app = load_handler()
    context = lambda_context("punk-records-consumer")
    with contextlib.redirect_stdout(io.StringIO()):
        app.handler(esm_event(event_dicts(1, seed=1, prefix="rss-warm")), context)
        raw = Path(batch_file).read_bytes()
        baseline = _memory_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to VmRSS
        app.handler(json.loads(raw), context)
    peak = _memory_kb("VmHWM")
    print(json.dumps({"peak_mb": peak / 1024, "delta_mb": (peak - baseline) / 1024}))


if __name__ == "__main__":
    _rss_child(sys.argv[1])
