"""Smoke test of the benchmark suite: every figure is measured and lands in results.json.

Tiny sizes and one repetition, against the session's Kafka and PostgreSQL: this checks that the
suite runs and reports, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from local.kafka_service import Kafka
from local.postgres_service import Postgres

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {
    "consumer_vs_copy_ratio_100",
    "consumer_vs_copy_ratio_1k",
    "consumer_vs_copy_ratio_10k",
    "ingest_overhead_ratio_batch100",
    "ingest_single_p50_ms",
    "ingest_single_p99_ms",
    "init_ms_ingest",
    "init_ms_consumer",
    "init_ms_query",
    "layer_mb",
    "e2e_events_per_s",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "consumer_peak_rss_mb",
    "init_ratio_vs_minimal_ingest",
    "init_ratio_vs_minimal_consumer",
    "init_ratio_vs_minimal_query",
    "redaction_recall",
    "redaction_false_positive_rate",
    "redaction_us_p50",
    "redaction_worst_ms_256k",
    "consumer_memory_mix_ratio",
    "query_p50_ms",
    "query_p99_ms",
    "query_vs_sql_ratio",
}


def test_given_quick_mode_when_the_suite_runs_then_every_figure_is_reported(
    kafka: Kafka, postgres: Postgres, tmp_path: Path
) -> None:
    # GIVEN a benchmarks page with hand-written text around the generated section
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nHand-written notes stay.\n")
    command = [
        sys.executable, "-m", "bench", "--quick", "--e2e-events", "200",
        "--dsn", postgres.dsn, "--bootstrap", kafka.bootstrap,
        "--out", str(tmp_path), "--docs", str(docs),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    # WHEN the suite runs
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    # THEN results.json holds exactly the figures the issue names, all numbers
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == REQUIRED_KEYS
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in results.values())
    # AND the table is printed, the details kept, and the page updated around the notes
    assert "handler ÷ COPY rate" in run.stdout
    assert "redaction recall per family: age_secret_key" in run.stdout
    assert json.loads((tmp_path / "details.json").read_text())["machine"]["cpus"] >= 1
    page = docs.read_text()
    assert page.startswith("# Benchmarks\n\nHand-written notes stay.\n")
    assert '"consumer_vs_copy_ratio_10k"' in page
