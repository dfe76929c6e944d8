"""Tracing is patched per library, on first use, not at import."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from aws_xray_sdk import global_sdk_config

from punk_records import observability


@pytest.fixture
def tracing_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # psycopg.connect is restored by monkeypatch, whatever the patch did to it.
    monkeypatch.setattr(psycopg, "connect", psycopg.connect)
    monkeypatch.setattr(observability.tracer, "disabled", False)
    # What Tracer does in Lambda; it switched the X-Ray SDK off when it found itself outside.
    global_sdk_config.set_sdk_enabled(True)
    observability.trace_library.cache_clear()
    yield
    global_sdk_config.set_sdk_enabled(False)
    observability.trace_library.cache_clear()


def test_given_tracing_off_when_a_library_is_traced_then_it_is_left_alone() -> None:
    observability.trace_library.cache_clear()
    original = psycopg.connect

    observability.trace_library("psycopg")

    assert psycopg.connect is original


def test_given_tracing_on_when_psycopg_is_traced_then_connect_is_wrapped_once(
    tracing_on: None,
) -> None:
    original = psycopg.connect

    observability.trace_library("psycopg")
    wrapped = psycopg.connect
    observability.trace_library("psycopg")

    assert wrapped is not original
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]  # one wrapper, not one per call
    assert psycopg.connect is wrapped


def test_given_a_fresh_interpreter_when_consumer_modules_load_then_no_unused_client_loads() -> None:
    code = (
        "import sys, punk_records, punk_records.consumer, punk_records.observability;"
        "print(' '.join(m for m in ('kafka', 'boto3') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert loaded == ""
