"""Ingest cost per event against the real broker, next to raw kafka-python with the same settings.

The handler runs in-process as on a warm container: routing, auth, body parsing, validation,
redaction, producing and the wait for every ``acks=all`` acknowledgement. The baseline is a
kafka-python producer built by the same factory (same acks, idempotence, linger, timeouts)
sending the very bytes, keys and headers the handler produces and waiting for every future.
Handler and baseline runs alternate, so both see the same machine load.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from bench.common import Spread, compact, event_dicts, lambda_context, percentile, progress, timed


def _requests(events: Sequence[dict[str, Any]], per_request: int) -> list[dict[str, Any]]:
    from local.samples.apigw import request

    chunks = [events[i : i + per_request] for i in range(0, len(events), per_request)]
    return [
        request("POST", "/events", "bench", body=compact(c[0] if per_request == 1 else c).decode())
        for c in chunks
    ]


def _records(events: Sequence[dict[str, Any]]) -> list[tuple[bytes, bytes, list]]:
    """What the handler sends for ``events``: value, key and headers of the redacted envelope."""
    from punk_records.envelope import parse_event

    records = []
    for event in events:
        env = parse_event(event).redacted()
        records.append((env.kafka_value(), env.kafka_key(), env.kafka_headers()))
    return records


def _raw_send(producer: Any, topic: str, records: Sequence[tuple[bytes, bytes, list]]) -> None:
    futures = [producer.send(topic, value=v, key=k, headers=h) for v, k, h in records]
    for future in futures:
        future.get(timeout=10)


def load_app() -> ModuleType:
    """functions/ingest/app.py with its log lines kept off the terminal (still formatted)."""
    from local.openapi import load_app as load

    module = load()
    module.logger.registered_handler.setStream(io.StringIO())
    return module


def measure(bootstrap: str, topic: str, single_runs: int, batch_runs: int) -> dict[str, Any]:
    """Milliseconds per event for one event and for batches of 100; see the module docstring."""
    from local.samples.apigw import DEV_TOKEN
    from punk_records.bootstrap import container
    from punk_records.producer import create_producer

    os.environ.update(
        {
            "API_TOKENS": DEV_TOKEN,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_TOPIC": topic,
        }
    )
    container.reset()
    app = load_app()
    raw = create_producer(container.settings())
    context = lambda_context("punk-records-ingest")
    warmup = 10
    results: dict[str, Any] = {}
    try:
        for label, size, runs in (("single", 1, single_runs), ("batch100", 100, batch_runs)):
            events = event_dicts((runs + warmup) * size, seed=size, prefix=f"ingest-{label}")
            requests = _requests(events, size)
            records = _records(events)
            handler_ms: list[float] = []
            raw_ms: list[float] = []
            statuses: list[int] = []
            with contextlib.redirect_stdout(io.StringIO()):  # EMF documents
                for i, req in enumerate(requests):
                    chunk = records[i * size : (i + 1) * size]

                    def run_handler(r: dict[str, Any] = req, out: list[int] = statuses) -> float:
                        return timed(lambda: out.append(app.handler(r, context)["statusCode"]))

                    def run_raw(c: list[tuple[bytes, bytes, list]] = chunk) -> float:
                        return timed(lambda: _raw_send(raw, topic, c))

                    # Which goes first alternates, so that neither always meets a warmer broker.
                    if i % 2:
                        baseline, handler = run_raw(), run_handler()
                    else:
                        handler, baseline = run_handler(), run_raw()
                    if statuses[-1] != 202:
                        raise RuntimeError(f"ingest answered {statuses[-1]}")
                    if i >= warmup:
                        handler_ms.append(handler * 1000 / size)
                        raw_ms.append(baseline * 1000 / size)
                    if (i + 1) % max(1, len(requests) // 4) == 0:
                        progress(f"ingest {label}: {i + 1}/{len(requests)} requests")
            ratios = [h / r for h, r in zip(handler_ms, raw_ms, strict=True)]
            results[label] = {
                "handler_ms_per_event": Spread.of(handler_ms).as_dict(),
                "raw_ms_per_event": Spread.of(raw_ms).as_dict(),
                "handler_p99_ms_per_event": percentile(handler_ms, 0.99),
                "raw_p99_ms_per_event": percentile(raw_ms, 0.99),
                "ratio": Spread.of(ratios).as_dict(),
                "ratio_of_medians": Spread.of(handler_ms).median / Spread.of(raw_ms).median,
            }
    finally:
        raw.close(timeout=5)
        container.reset()
    return results
