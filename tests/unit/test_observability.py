"""Tracing is patched per library, on first use, not at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from aws_lambda_powertools import Logger
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


def test_given_a_sentence_or_a_json_object_when_logged_then_text_stays_text_and_json_nests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = Logger(service="t", json_deserializer=observability.message_json)

    logger.info("query request")
    logger.info('{"step": "migrate", "applied": 2}')
    logger.info("[1, 2]")
    logger.info("42")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["message"] for line in lines] == [
        "query request",
        {"step": "migrate", "applied": 2},
        [1, 2],
        "42",
    ]
