"""What governed memory costs the consumer: records/s on a 10,000-record batch where 20% are
valid memory events (candidates, promotions, retractions; some other events reference
candidates), divided by records/s on the same batch with none (those records turned into
other events). Both run through the real consumer handler in-process into PostgreSQL with
empty tables, interleaved so both see the same machine load; the projector runs in the
batch's transaction in both (decisions are looked up either way).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from functools import partial
from typing import Any

import psycopg

from bench.common import Spread, esm_event, event_dicts, lambda_context, progress, timed
from bench.consumer import load_handler

SIZE = 10_000
MEMORY_SHARE = 5  # one record in five
OTHER_TYPES = (
    "proposal.created",
    "decision.recorded",
    "risk.detected",
    "finding.logged",
    "task.created",
    "task.updated",
)


def batches(size: int = SIZE, seed: int = 15) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(with memory, without memory): the same envelopes except the memory ones."""
    rng = random.Random(seed)
    mixed: list[dict[str, Any]] = []
    candidates: list[str] = []
    for i, event in enumerate(event_dicts(size, seed=seed, prefix="memory-mix")):
        other = {**event, "type": OTHER_TYPES[i % len(OTHER_TYPES)]}
        other["payload"] = {k: v for k, v in event["payload"].items() if k != "memory"}
        if i % MEMORY_SHARE:
            if candidates and rng.random() < 0.05:
                refs = rng.sample(candidates[-50:], min(2, len(candidates[-50:])))
                other = {**other, "payload": {**other["payload"], "refs": refs}}
            mixed.append(other)
            continue
        roll = rng.random()
        if roll < 0.6 or not candidates:
            bucket = rng.choice(("global", "workspace", "workspace", "ephemeral"))
            payload: dict[str, Any] = {
                "key": f"topic/{i % 997}/{rng.choice(('owner', 'cadence', 'runbook'))}",
                "value": other["payload"],
                "bucket": bucket,
            }
            if bucket == "ephemeral":
                payload["ttl_hours"] = rng.choice((6, 24, 72))
            mixed.append({**event, "type": "memory.candidate", "payload": payload})
            candidates.append(event["event_id"])
        else:
            kind = "memory.promoted" if roll < 0.85 else "memory.retracted"
            target = rng.choice(candidates[-200:])
            payload = {**other["payload"], "entry_id": target, "reason": "reviewed"}
            mixed.append({**event, "type": kind, "payload": payload})
    # The same records, the memory ones as other events with the same payloads, no refs.
    plain = [
        {
            **event,
            "type": OTHER_TYPES[i % len(OTHER_TYPES)],
            "payload": {k: v for k, v in event["payload"].items() if k != "refs"},
        }
        for i, event in enumerate(mixed)
    ]
    return mixed, plain


def measure(dsn: str, repeat: int) -> dict[str, Any]:
    """Handler seconds for both batches, ``2 * repeat`` times each, interleaved."""
    from punk_records import bootstrap, migrations

    os.environ["DATABASE_URL"] = dsn
    bootstrap.reset()
    app = load_handler()
    conn = psycopg.connect(dsn, autocommit=True)
    migrations.apply(conn)
    context = lambda_context("punk-records-consumer")
    mixed, plain = batches()
    events = {"mix": esm_event(mixed), "none": esm_event(plain)}
    memory_events = sum(e["type"].startswith("memory.") for e in mixed)

    def truncate() -> None:
        conn.execute("TRUNCATE events, dead_letters, memory_entries, memory_history")

    seconds: dict[str, list[float]] = {"mix": [], "none": []}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF documents
            for name in ("mix", "none"):  # warm-up
                truncate()
                app.handler(events[name], context)
            for i in range(repeat):
                # mix, none, none, mix (and the reverse the next time): both see the same
                # trend in the machine's load, and every run gives two samples of each.
                order = ("mix", "none") if i % 2 else ("none", "mix")
                for name in (*order, *reversed(order)):
                    seconds[name].append(
                        timed(partial(app.handler, events[name], context), truncate)
                    )
                entries = conn.execute("SELECT count(*) FROM memory_entries").fetchone()
                progress(f"consumer memory mix: run {i + 1}/{repeat}")
        if entries is None:
            raise RuntimeError("no projection")
    finally:
        bootstrap.reset()
        conn.close()
    mix, none = Spread.of(seconds["mix"]), Spread.of(seconds["none"])
    ratios = Spread.of([n / m for n, m in zip(seconds["none"], seconds["mix"], strict=True)])
    return {
        "records": SIZE,
        "memory_events": memory_events,
        "mix_records_per_s": mix.inverse(SIZE).as_dict(),
        "none_records_per_s": none.inverse(SIZE).as_dict(),
        "ratio": ratios.as_dict(),
        "ratio_of_medians": none.median / mix.median,
    }
