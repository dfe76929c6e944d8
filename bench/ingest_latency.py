"""Ingest handler latency against a real Kafka broker: median and p99, single event and batch.

    PYTHONPATH=layers/punk_records/python .venv/bin/python -m bench.ingest_latency [--runs 300]

Starts a private broker (or uses ``--bootstrap``), creates a 3-partition topic, then invokes the
handler in-process as Lambda would on a warm container: the timing covers routing, auth,
parsing, validation, redaction and the wait for every ``acks=all`` acknowledgement.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from local.samples.apigw import DEV_TOKEN, request
from local.services import Kafka


def _event(workspace: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "ts": "2026-11-26T06:00:00Z",
        "workspace_id": f"ws-{workspace}",
        "satellite_id": "sat-bench",
        "trace_id": str(uuid.uuid4()),
        "type": "finding.logged",
        "severity": "medium",
        "confidence": 0.5,
        "payload": {"summary": "disk usage above 90%", "host": "db-1", "token": "abc123"},
    }


def _request(count: int) -> dict[str, Any]:
    body = _event(0) if count == 1 else [_event(i % 7) for i in range(count)]
    return request("POST", "/events", "bench", body=json.dumps(body, separators=(",", ":")))


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(handler: Any, count: int, runs: int, warmup: int = 20) -> dict[str, float]:
    """Invoke ``handler`` ``runs`` times with ``count`` events each; latencies in ms."""
    ctx = SimpleNamespace(
        function_name="punk-records-ingest",
        memory_limit_in_mb=512,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:punk-records-ingest",
        aws_request_id="bench",
    )
    requests = [_request(count) for _ in range(warmup + runs)]
    latencies: list[float] = []
    for i, event in enumerate(requests):
        # Logs and EMF go to stdout as in Lambda; keep them off the terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            started = time.perf_counter()
            response = handler(event, ctx)
            elapsed = (time.perf_counter() - started) * 1000
        if response["statusCode"] != 202:
            raise SystemExit(f"unexpected status {response['statusCode']}: {response['body']}")
        if i >= warmup:
            latencies.append(elapsed)
    return {
        "events": count,
        "runs": runs,
        "median_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--topic", help="existing topic to use with --bootstrap")
    args = parser.parse_args()
    if bool(args.bootstrap) != bool(args.topic):
        parser.error("--bootstrap and --topic go together")

    with contextlib.ExitStack() as stack:
        if args.bootstrap:
            bootstrap, topic = args.bootstrap, args.topic
        else:
            kafka = Kafka(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "kafka")
            kafka.start()
            stack.callback(kafka.stop)
            bootstrap, topic = kafka.bootstrap, f"bench-{uuid.uuid4().hex[:8]}"
            kafka.create_topic(topic, partitions=3)
        os.environ.update(
            {
                "API_TOKENS": DEV_TOKEN,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_TOPIC": topic,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        from local.openapi import load_app  # after the environment is set

        handler = load_app().handler
        results = [measure(handler, 1, args.runs), measure(handler, 100, args.runs)]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
