"""End to end: events posted in batches through the local HTTP endpoint until all are rows.

The pipeline is the local stack (``local.stack``): the HTTP endpoint in front of the ingest
function, Kafka, the event source mapping poller in front of the consumer function, and
PostgreSQL, each function under the Lambda emulator. The delay of an event is the row's
``received_at`` (the consumer's transaction) minus the moment its POST was sent.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Spread, compact, event_dicts, percentile, progress

BATCH = 100
CLIENTS = 4
DRAIN_TIMEOUT_S = 300


def _post(url: str, token: str, body: bytes) -> float:
    """POST one batch; return the wall-clock second it was sent."""
    request = urllib.request.Request(  # noqa: S310 - the local stack's own URL
        f"{url}/events",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    sent = time.time()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        if response.status != 202:
            raise RuntimeError(f"POST /events answered {response.status}")
        json.loads(response.read())
    return sent


def run_once(url: str, token: str, dsn: str, events: int) -> dict[str, float]:
    """Post ``events`` events, wait for every row; events/s and delay percentiles (ms)."""
    run = uuid.uuid4().hex[:12]
    satellite = f"bench-e2e-{run}"
    items = event_dicts(events, seed=len(run), prefix=run)
    for item in items:
        item["satellite_id"] = satellite
    bodies = [compact(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]
    sent_at: list[float] = [0.0] * len(bodies)
    started = time.time()

    def post(index: int) -> None:
        sent_at[index] = _post(url, token, bodies[index])

    with ThreadPoolExecutor(CLIENTS) as pool:
        for done, _ in enumerate(pool.map(post, range(len(bodies))), 1):
            if done % max(1, len(bodies) // 5) == 0:
                progress(f"e2e: posted {done * BATCH:,}/{events:,} events")
    posted = time.time()
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            row = conn.execute(
                "SELECT count(*), max(received_at) FROM events WHERE satellite_id = %s",
                (satellite,),
            ).fetchone()
            assert row is not None
            if row[0] >= events:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {row[0]} of {events} events reached PostgreSQL")
            time.sleep(0.2)
        last_row: datetime = row[1]
        received: dict[str, datetime] = dict(
            conn.execute(
                "SELECT event_id::text, received_at FROM events WHERE satellite_id = %s",
                (satellite,),
            ).fetchall()
        )
    delays = [
        (received[item["event_id"]].timestamp() - sent_at[i // BATCH]) * 1000
        for i, item in enumerate(items)
    ]
    elapsed = last_row.astimezone(UTC).timestamp() - started
    progress(f"e2e: {events:,} events in {elapsed:.1f}s (posting took {posted - started:.1f}s)")
    return {
        "events_per_s": events / elapsed,
        "p50_ms": percentile(delays, 0.5),
        "p99_ms": percentile(delays, 0.99),
        "post_s": posted - started,
    }


def measure(events: int, repeat: int, fast_postgres: bool = False) -> dict[str, Any]:
    """Bring up a private local stack, run ``repeat`` times, bring it down."""
    from local.stack import Stack

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as root:
        stack = Stack(Path(root), fast_postgres=fast_postgres)
        progress("e2e: bringing up a private local stack")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                stack.up(api_port=0)
            # The first request pays the ingest function's cold start; not part of the figure.
            run_once(stack.api_url, stack.token(), stack.postgres.dsn, BATCH)
            runs = []
            for i in range(repeat):
                progress(f"e2e: run {i + 1}/{repeat}")
                runs.append(run_once(stack.api_url, stack.token(), stack.postgres.dsn, events))
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                stack.down()
    return {
        "events": events,
        "events_per_s": Spread.of([r["events_per_s"] for r in runs]).as_dict(),
        "p50_ms": Spread.of([r["p50_ms"] for r in runs]).as_dict(),
        "p99_ms": Spread.of([r["p99_ms"] for r in runs]).as_dict(),
    }
