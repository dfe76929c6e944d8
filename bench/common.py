"""Shared pieces of the benchmark suite: realistic events, statistics, progress, machine facts."""

from __future__ import annotations

import base64
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from local.envelopes import envelope_dict

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "punk-records.events.v1"
EVENT_TYPES = (
    "proposal.created",
    "decision.recorded",
    "risk.detected",
    "finding.logged",
    "task.created",
    "task.updated",
    "memory.candidate",
    "memory.promoted",
    "memory.retracted",
)
# Roughly one event in ten carries something the redaction must remove.
SECRET_SHARE = 0.1
_WORDS = (
    "disk",
    "usage",
    "above",
    "threshold",
    "on",
    "volume",
    "replica",
    "lag",
    "increased",
    "after",
    "deploy",
    "rollback",
    "candidate",
    "memory",
    "promoted",
    "from",
    "scout",
    "observation",
    "latency",
    "regression",
    "detected",
    "in",
    "checkout",
    "service",
    "cache",
    "hit",
    "ratio",
    "dropped",
    "customer",
    "reported",
    "timeout",
    "while",
    "exporting",
    "report",
    "proposal",
    "to",
    "shard",
    "the",
    "events",
    "table",
    "by",
    "workspace",
    "retention",
    "policy",
    "review",
)
_SECRETS = (
    lambda r: {"db_password": f"Pa55-{r.getrandbits(48):x}"},
    lambda r: {"headers": {"Authorization": f"Bearer eyJhbGciOiJIUzI1NiJ9.{r.getrandbits(128):x}"}},
    lambda r: {"note": f"rotated AKIA{r.getrandbits(64):016X} by hand, see runbook"},
    lambda r: {"config": f"api_key={r.getrandbits(96):x}&region=eu-west-1"},
    lambda r: {"clone": f"https://deploy:{r.getrandbits(64):x}@git.example.com/punk.git"},
    lambda r: {"github_token": f"ghp_{r.getrandbits(200):050x}"[:40]},
)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _payload(rng: random.Random, kind: str, index: int) -> dict[str, Any]:
    """A payload of a few hundred bytes to a few KB, shaped loosely after ``kind``."""
    payload: dict[str, Any] = {
        "summary": _sentence(rng, rng.randint(6, 16)),
        "source": {"host": f"db-{index % 7}", "service": rng.choice(("api", "etl", "web"))},
        "tags": rng.sample(["prod", "storage", "latency", "security", "billing", "ml"], 3),
    }
    if kind.startswith("task."):
        payload["task"] = {"id": index, "status": rng.choice(("open", "doing", "done"))}
    if kind.startswith("memory."):
        payload["memory"] = {"key": f"mem-{index % 997}", "score": round(rng.random(), 3)}
    # A long tail of bigger payloads: detail paragraphs and metric series.
    for _ in range(rng.choice((0, 0, 1, 2, 4, 8))):
        payload.setdefault("details", []).append(_sentence(rng, rng.randint(20, 60)))
    if rng.random() < 0.3:
        payload["metrics"] = {f"m{i}": round(rng.random() * 100, 2) for i in range(20)}
    if rng.random() < SECRET_SHARE:
        payload.update(rng.choice(_SECRETS)(rng))
    return payload


def event_dicts(count: int, seed: int = 7, prefix: str = "bench") -> list[dict[str, Any]]:
    """``count`` distinct, valid envelopes (deterministic for a seed) as JSON-like dicts."""
    rng = random.Random(seed)
    base = uuid.uuid5(uuid.NAMESPACE_URL, f"punk-records/{prefix}/{seed}")
    events = []
    for i in range(count):
        kind = EVENT_TYPES[i % len(EVENT_TYPES)]
        events.append(
            envelope_dict(
                event_id=str(uuid.uuid5(base, f"e{i}")),
                ts=f"2026-11-26T06:{i // 60 % 60:02d}:{i % 60:02d}Z",
                workspace_id=f"ws-{i % 50}",
                satellite_id=f"sat-{i % 13}",
                trace_id=str(uuid.uuid5(base, f"t{i // 4}")),
                type=kind,
                severity=("low", "medium", "high")[i % 3],
                confidence=round(rng.random(), 3),  # drawn before the payload, as it always was
                payload=_payload(rng, kind, i),
            )
        )
    return events


def compact(value: Any) -> bytes:
    """Compact UTF-8 JSON, as producers write Kafka values."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def esm_event(events: Sequence[dict[str, Any]], partitions: int = 3) -> dict[str, Any]:
    """An MSK event source mapping batch carrying ``events`` as their producers wrote them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, event in enumerate(events):
        partition, offset = i % partitions, i // partitions
        headers = [("event_id", event["event_id"].encode()), ("type", event["type"].encode())]
        groups.setdefault(f"{TOPIC}-{partition}", []).append(
            {
                "topic": TOPIC,
                "partition": partition,
                "offset": offset,
                "timestamp": 1_795_672_800_000 + offset,
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(event["workspace_id"].encode()).decode(),
                "value": base64.b64encode(compact(event)).decode(),
                "headers": [{name: list(data)} for name, data in headers],
            }
        )
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/punk/bench",
        "bootstrapServers": "127.0.0.1:9092",
        "records": groups,
    }


def lambda_context(name: str) -> SimpleNamespace:
    """Enough of a LambdaContext for Powertools' decorators."""
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        aws_request_id="bench",
        log_stream_name="bench",
        get_remaining_time_in_millis=lambda: 60_000,
    )


@dataclass(frozen=True)
class Spread:
    """A median with its spread over the repetitions (min, max, interquartile range)."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        ordered = sorted(samples)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))

    def scaled(self, factor: float) -> Spread:
        """The same spread in another unit (a negative factor swaps the ends)."""
        low, high = sorted((self.low * factor, self.high * factor))
        q1, q3 = sorted((self.q1 * factor, self.q3 * factor))
        return Spread(self.median * factor, low, high, q1, q3, self.runs)

    def inverse(self, numerator: float) -> Spread:
        """``numerator / x`` for every figure, e.g. seconds to records per second."""
        return Spread(
            numerator / self.median,
            numerator / self.high,
            numerator / self.low,
            numerator / self.q3,
            numerator / self.q1,
            self.runs,
        )

    def text(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"

    def as_dict(self) -> dict[str, float]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "q1": self.q1,
            "q3": self.q3,
            "runs": self.runs,
        }


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by the nearest-rank method."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed(run: Callable[[], object], before: Callable[[], object] | None = None) -> float:
    """Seconds ``run`` takes (``before`` runs first, untimed)."""
    if before is not None:
        before()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# A section measured in a child process (bench/query.py) counts from the suite's start as well:
# the monotonic clock is one clock for every process of the machine.
_STARTED = float(os.environ.get("BENCH_STARTED") or time.monotonic())


def suite_started() -> float:
    """When the suite started, on the monotonic clock."""
    return _STARTED


def progress(message: str) -> None:
    """One progress line on stderr with the time since the suite started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
