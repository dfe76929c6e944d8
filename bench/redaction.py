"""Redaction figures: recall per family and false positives on the repository's corpus
(``bench/redaction_corpus.py``), microseconds per realistic payload, and the worst time per
256 KiB of hostile input.

Recall counts a secret case as caught when none of its random parts survives in the redacted
payload, read as it is, URL-decoded (twice) and JSON-unescaped: a partly redacted secret is a
miss. A clean case is a false positive when redaction changes it at all.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from bench.common import event_dicts, percentile, progress
from bench.redaction_corpus import Case, corpus

_KIB_256 = 256 * 1024


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*_strings(key), *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _visible(value: Any) -> str:
    """Every string of ``value`` as written, URL-decoded twice and JSON-unescaped."""
    views = []
    for text in _strings(value):
        once = unquote(text)
        views += [text, once, unquote(once), text.replace('\\"', '"').replace("\\\\", "\\")]
        views.append(once.replace('\\"', '"').replace("\\\\", "\\"))
    return "\n".join(views)


def caught(case: Case, redact: Callable[[Any], Any]) -> bool:
    """True when no part of the case's secret survives redaction."""
    visible = _visible(redact(case.payload))
    return not any(part in visible for part in case.secrets)


def evaluate(redact: Callable[[Any], Any], seed: int = 10) -> dict[str, Any]:
    """Recall per family, overall recall and the false-positive rate on the corpus."""
    secrets, clean = corpus(seed)
    per_family: dict[str, list[int]] = {}
    missed: list[str] = []
    for case in secrets:
        hit = caught(case, redact)
        counts = per_family.setdefault(case.family, [0, 0])
        counts[0] += hit
        counts[1] += 1
        if not hit:
            missed.append(f"{case.family}/{case.context}")
    changed = [f"{case.context}" for case in clean if redact(case.payload) != case.payload]
    hits = sum(found for found, _ in per_family.values())
    return {
        "secret_cases": len(secrets),
        "families": len(per_family),
        "clean_cases": len(clean),
        "recall": hits / len(secrets),
        "false_positive_rate": len(changed) / len(clean),
        "recall_per_family": {
            family: round(found / total, 3) for family, (found, total) in sorted(per_family.items())
        },
        "missed": missed,
        "false_positives": changed,
    }


HOSTILE_RUNS = 15


def _hostile_inputs() -> dict[str, Any]:
    """256 KiB payloads built to make a backtracking or quadratic matcher crawl."""
    base64_run = (
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0" * 4000
    )
    return {
        "no_spaces": {"blob": ("a1b2-c3d4_" * (_KIB_256 // 10))},
        "repeated_password=": {"log": "password=" * (_KIB_256 // 9)},
        "repeated_password:": {"log": "password: " * (_KIB_256 // 10)},
        "base64_run": {"blob": base64_run[:_KIB_256]},
        "repeated_prefixes": {"log": "ghp_sk-AKIAxoxb-eyJ" * (_KIB_256 // 19)},
        "url_encoded": {"q": "%25" * (_KIB_256 // 3)},
        "escaped": {"q": '\\"' * (_KIB_256 // 2)},
        "pem_without_end": {"key": "-----BEGIN PRIVATE KEY-----" + "A" * (_KIB_256 - 27)},
        "nested_objects": {"items": [{"a": {"b": {"n": i, "tag": "ok"}}} for i in range(10_000)]},
        # The same objects, one of them with a secret-named key; and line breaks in every one.
        "nested_one_secret": {"items": _objects(10_000, secret_at=5_000)},
        "nested_line_breaks": {"items": _objects(10_000, tag="ok\nok")},
        "ghp_long_run": {
            "blob": "ghp_" + base64_run[: _KIB_256 - 4].replace("+", "x").replace("/", "y")
        },
        "token_run_without_digits": {"blob": "sk-" + "abcdefghij" * ((_KIB_256 - 3) // 10)},
        "deep_object": _deep(60),
        "many_strings": {"s": [f"token{i}" for i in range(_KIB_256 // 12)]},
    }


def _objects(count: int, tag: str = "ok", secret_at: int | None = None) -> list[Any]:
    items: list[Any] = [{"a": {"b": {"n": i, "tag": tag}}} for i in range(count)]
    if secret_at is not None:
        items[secret_at] = {"a": {"db_password": "hunter2-x9"}}
    return items


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"password": "hunter2-x9"}
    for level in range(depth):
        node = {f"level{level}": node, "note": "token: abc"}
    return node


def timings(redact: Callable[[Any], Any], events: int = 5_000, seed: int = 7) -> dict[str, Any]:
    """Microseconds per realistic payload (the benchmark's event mix) and the hostile worst."""
    payloads = [event["payload"] for event in event_dicts(events, seed=seed, prefix="redaction")]
    for payload in payloads[:200]:
        redact(payload)  # compile and warm
    samples = []
    for payload in payloads:
        started = time.perf_counter()
        redact(payload)
        samples.append((time.perf_counter() - started) * 1e6)
    hostile = {}
    for name, payload in _hostile_inputs().items():
        runs = []
        # The fastest of HOSTILE_RUNS: a figure of milliseconds moved by a fifth between runs
        # of 5.
        for _ in range(HOSTILE_RUNS):
            started = time.perf_counter()
            redact(payload)
            runs.append((time.perf_counter() - started) * 1e3)
        size = len(json.dumps(payload))
        hostile[name] = {
            "ms": min(runs),
            "kib": round(size / 1024),
            "ms_per_256k": min(runs) * _KIB_256 / max(size, _KIB_256),
        }
    return {
        "us_per_payload": {
            "median": statistics.median(samples),
            "p99": percentile(samples, 0.99),
            "worst": max(samples),
            "runs": len(samples),
        },
        "hostile_ms": hostile,
        "worst_ms_256k": max(item["ms_per_256k"] for item in hostile.values()),
    }


def measure(events: int = 5_000) -> dict[str, Any]:
    """Corpus figures and timings of ``punk_records.redaction.redact_if_needed``."""
    from punk_records.redaction import redact, redact_if_needed

    def redact_checked(value: Any) -> Any:
        result = redact_if_needed(value)
        return value if result is None else result

    progress("redaction: corpus recall and false positives")
    figures = evaluate(redact)
    recall, false = figures["recall"], figures["false_positive_rate"]
    progress(f"redaction: recall {recall:.3f}, false positives {false:.3f}; timing payloads")
    return {**figures, **timings(redact_checked, events)}
