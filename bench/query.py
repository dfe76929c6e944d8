"""Query benchmark: ``GET /events`` through the query handler in-process vs the bare SQL.

A table of 1,000,000 events across 100 workspaces is generated inside PostgreSQL
(``generate_series``, in chunks with progress) and vacuumed, then each repetition asks for a
page of 100 events of a random workspace with one filter (a type), through the handler (token
check, parameters, cursor, SQL, JSON body, log line, metric) and as the same statement run by
psycopg alone (the baseline: ``events_sql`` of the same query, executed on its own autocommit
connection and fetched with ``fetchall``), the two in alternating order (the second finds the
page's blocks cached).

The measuring runs in a fresh process, as a query function runs in its own container: inside
``python -m bench`` it would share the interpreter with what the earlier sections left behind
(their heap, imported modules, client objects), which slows the Python half of the handler and
not the bare SQL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import psycopg

from bench.common import EVENT_TYPES, ROOT, lambda_context, percentile, progress, suite_started

WORKSPACES = 100
PAGE = 100
_KEY = "bench-cursor-key-" + "x" * 32
_TOKEN = "bench-token"  # noqa: S105 (a throwaway token of the benchmark)

# One chunk of generated events: numbers %(first)s..%(last)s. Timestamps are spread over 30
# days; event ids are random (as uuid4s from satellites are), so the primary key is as
# fragmented as in production. Payloads are a few hundred bytes of JSON.
SEED_SQL = """
INSERT INTO events (event_id, ts, workspace_id, satellite_id, trace_id, type, severity,
                    confidence, payload_json, kafka_topic, kafka_partition, kafka_offset)
SELECT gen_random_uuid(),
       timestamptz '2026-10-27 00:00:00+00' + i * interval '2591 milliseconds',
       'ws-' || (i %% %(workspaces)s),
       'sat-' || (i %% 13),
       md5('trace' || (i / 4))::uuid,
       (%(types)s::text[])[1 + i %% 9],
       (ARRAY['low', 'medium', 'high'])[1 + i %% 3],
       (i %% 1000) / 1000.0,
       jsonb_build_object(
           'summary', 'disk usage above threshold on volume ' || (i %% 97) || ' after deploy',
           'source', jsonb_build_object('host', 'db-' || (i %% 7), 'service', 'api'),
           'tags', jsonb_build_array('prod', 'storage', 'latency'),
           'metrics', jsonb_build_object('p50', i %% 100, 'p99', i %% 1000, 'n', i)),
       'punk-records.events.v1', i %% 3, i
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


def seed(
    conn: psycopg.Connection,
    count: int,
    workspaces: int = WORKSPACES,
    chunk: int = 100_000,
    report: Callable[[str], None] = progress,
) -> None:
    """Insert ``count`` generated events (in chunks, reporting each), VACUUM ANALYZE, CHECKPOINT.

    VACUUM sets the hint bits and the visibility map of the new rows once, here: otherwise the
    first read of each page after the bulk insert pays for it (dirtying the page), and which
    side of a comparison reads a page first is chance. CHECKPOINT writes the seeded pages out
    now rather than during the measurement (a spread checkpoint lasts minutes); it needs a
    superuser or ``pg_checkpoint``, and is skipped with a note without one.
    """
    started = time.perf_counter()
    for first in range(0, count, chunk):
        last = min(count, first + chunk) - 1
        conn.execute(
            SEED_SQL,
            {"first": first, "last": last, "workspaces": workspaces, "types": list(EVENT_TYPES)},
        )
        rate = (last + 1) / (time.perf_counter() - started)
        report(f"query: generated {last + 1:,}/{count:,} events ({rate:,.0f}/s)")
    report("query: VACUUM ANALYZE events, CHECKPOINT")
    conn.execute("VACUUM ANALYZE events")
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        report("query: not allowed to CHECKPOINT; measuring without")


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_query_app() -> ModuleType:
    """``functions/query/app.py``, imported by path as Lambda would (function folders are not
    packages)."""
    path = ROOT / "functions" / "query" / "app.py"
    spec = importlib.util.spec_from_file_location("query_app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(workspace: str, kind: str) -> dict[str, Any]:
    """An HTTP API (2.0) request for one page of ``kind`` events of ``workspace``."""
    query = f"workspace_id={workspace}&type={kind}&limit={PAGE}"
    return {
        "version": "2.0",
        "routeKey": "GET /events",
        "rawPath": "/events",
        "rawQueryString": query,
        "headers": {"authorization": f"Bearer {_TOKEN}", "host": "bench"},
        "queryStringParameters": {"workspace_id": workspace, "type": kind, "limit": str(PAGE)},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": "/events",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": "GET /events",
            "stage": "$default",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }


def measure(dsn: str, events: int, repeat: int) -> dict[str, Any]:
    """:func:`measure_here` in a fresh ``python -m bench.query`` process (its progress lines
    pass through; its figures come back as JSON on stdout)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.query", dsn, str(events), str(repeat)],
        cwd=ROOT,
        env={**os.environ, "BENCH_STARTED": repr(suite_started())},
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def measure_here(dsn: str, events: int, repeat: int, seed_rng: int = 11) -> dict[str, Any]:
    """Seed ``events`` events, then time ``repeat`` pages through the handler and bare SQL."""
    import hashlib

    from punk_records import migrations
    from punk_records.query import EventQuery
    from punk_records.read_store import events_sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations.apply(conn)
        conn.execute("TRUNCATE events")
        seed(conn, events)
    entry = {
        "id": "bench",
        "sha256": hashlib.sha256(_TOKEN.encode()).hexdigest(),
        "workspaces": ["*"],
        "scopes": ["events:read"],
    }
    env = {
        "DATABASE_URL": dsn,
        "API_TOKENS": json.dumps({"tokens": [entry]}),
        "CURSOR_KEY": _KEY,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    rng = random.Random(seed_rng)
    handler_ms: list[float] = []
    sql_ms: list[float] = []
    with _environment(env), psycopg.connect(dsn, autocommit=True) as raw:
        app = load_query_app()
        # The log line is part of the cost; the terminal it would go to is not (as for ingest).
        app.logger.registered_handler.setStream(io.StringIO())
        context = lambda_context("punk-records-query")
        for i in range(repeat + 20):  # the first 20 warm both paths up (prepared statements)
            workspace = f"ws-{rng.randrange(WORKSPACES)}"
            kind = rng.choice(EVENT_TYPES)
            request = _event(workspace, kind)
            query = EventQuery(workspace_id=workspace, type=[kind], limit=PAGE)
            statement, params = events_sql(query, None, PAGE + 1)
            sink = io.StringIO()

            def through_handler(request: dict[str, Any] = request, sink: io.StringIO = sink) -> Any:
                with contextlib.redirect_stdout(sink):  # EMF documents
                    return app.handler(request, context)

            def through_psycopg(statement: str = statement, params: list[Any] = params) -> Any:
                return raw.execute(statement, params).fetchall()

            # Whichever runs second finds the page's index and heap blocks in shared buffers:
            # alternate the order so that neither side always gets the warm cache.
            order = (
                (through_handler, through_psycopg) if i % 2 else (through_psycopg, through_handler)
            )
            timings: dict[Any, float] = {}
            results: dict[Any, Any] = {}
            for run in order:
                started = time.perf_counter()
                results[run] = run()
                timings[run] = time.perf_counter() - started
            response, rows = results[through_handler], results[through_psycopg]
            handler, bare = timings[through_handler], timings[through_psycopg]
            served = (
                len(json.loads(response["body"])["events"]) if response["statusCode"] == 200 else -1
            )
            if served != min(len(rows), PAGE):
                raise RuntimeError(
                    f"the handler answered {response['statusCode']} with {served} events; "
                    f"the bare SQL found {len(rows)} rows"
                )
            if i >= 20:
                handler_ms.append(handler * 1000)
                sql_ms.append(bare * 1000)
        progress(f"query: {repeat} pages of {PAGE} through the handler and through psycopg")
    ratios = [h / s for h, s in zip(handler_ms, sql_ms, strict=True)]
    return {
        "events": events,
        "workspaces": WORKSPACES,
        "page": PAGE,
        "repeat": repeat,
        "handler_p50_ms": percentile(handler_ms, 0.5),
        "handler_p99_ms": percentile(handler_ms, 0.99),
        "sql_p50_ms": percentile(sql_ms, 0.5),
        "sql_p99_ms": percentile(sql_ms, 0.99),
        "ratio_of_medians": statistics.median(handler_ms) / statistics.median(sql_ms),
        "ratio_median_of_pairs": statistics.median(ratios),
    }


if __name__ == "__main__":
    print(json.dumps(measure_here(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
