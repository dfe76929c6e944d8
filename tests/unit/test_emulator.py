"""local.emulator without starting anything: environment, binary lookup, reports, cleanup."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from local import emulator
from local.emulator import (
    EmulatorError,
    LambdaFunction,
    is_function_error,
    parse_reports,
    rie_binary,
)
from tests.unit.test_template import TEMPLATE


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return path


def test_given_overrides_when_the_environment_is_built_then_they_win_and_the_host_stays_out(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_ONLY_SECRET", "do-not-leak")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"Api": {"TOPIC": "from-file", "LEVEL": "ERROR"}}))

    fn = LambdaFunction(
        "Api", env_vars=env_file, env_overrides={"TOPIC": "override"}, template=template
    )

    env = fn.environment
    assert env["TOPIC"] == "override"
    assert env["LEVEL"] == "ERROR"
    assert "HOST_ONLY_SECRET" not in env
    assert env["AWS_REGION"] == "ap-south-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "Api"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["PYTHONPATH"] == str(template.parent / "layers/shared/python")
    assert env["AWS_ACCESS_KEY_ID"] == "testing"


def test_given_no_start_when_invoked_then_it_says_to_start_first(template: Path) -> None:
    with pytest.raises(EmulatorError, match="start"):
        LambdaFunction("Api", template=template).invoke({})


@pytest.mark.parametrize(
    ("machine", "binary"),
    [
        ("x86_64", "aws-lambda-rie-x86_64"),
        ("AMD64", "aws-lambda-rie-x86_64"),
        ("aarch64", "aws-lambda-rie-arm64"),
        ("arm64", "aws-lambda-rie-arm64"),
    ],
)
def test_given_a_machine_when_the_emulator_is_looked_up_then_its_architecture_is_chosen(
    machine: str, binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rapid = tmp_path / "lib" / "python3.11" / "site-packages" / "samcli" / "local" / "rapid"
    rapid.mkdir(parents=True)
    for name in ("aws-lambda-rie-x86_64", "aws-lambda-rie-arm64"):
        (rapid / name).write_bytes(b"\x7fELF")
        (rapid / name).chmod(0o644)
    monkeypatch.setattr(emulator, "SAM_VENV", tmp_path)
    monkeypatch.delenv("AWS_LAMBDA_RIE", raising=False)

    found = rie_binary(machine)

    assert found == rapid / binary
    assert os.access(found, os.X_OK)


def test_given_no_sam_cli_when_the_emulator_is_looked_up_then_the_error_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulator, "SAM_VENV", tmp_path)
    monkeypatch.delenv("AWS_LAMBDA_RIE", raising=False)
    with pytest.raises(EmulatorError, match="make sam-venv"):
        rie_binary("x86_64")


def test_given_an_unknown_architecture_when_the_emulator_is_looked_up_then_it_is_refused() -> None:
    with pytest.raises(EmulatorError, match="riscv64"):
        rie_binary("riscv64")


def test_given_emulator_output_when_parsed_then_each_report_line_gives_its_fields() -> None:
    logs = (
        "START RequestId: a Version: $LATEST\n"
        "END RequestId: a\n"
        "REPORT RequestId: a\tInit Duration: 0.02 ms\tDuration: 50.07 ms\t"
        "Billed Duration: 51 ms\tMemory Size: 256 MB\tMax Memory Used: 256 MB\t\n"
        "REPORT RequestId: b\tDuration: 0.64 ms\tBilled Duration: 1 ms\t\n"
    )

    reports = parse_reports(logs)

    assert reports[0]["RequestId"] == "a"
    assert reports[0]["Init Duration"] == "0.02 ms"
    assert reports[0]["Memory Size"] == "256 MB"
    assert reports[1] == {"RequestId": "b", "Duration": "0.64 ms", "Billed Duration": "1 ms"}


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}, True),
        ({"statusCode": 500, "errorType": "x", "errorMessage": "y"}, False),
        ({"batchItemFailures": []}, False),
        (None, False),
    ],
)
def test_given_an_invoke_result_then_lambdas_error_payload_is_recognised(
    result: object, error: bool
) -> None:
    assert is_function_error(result) is error


def test_given_no_emulator_binary_when_started_then_no_temporary_directory_is_left(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def missing() -> Path:
        raise EmulatorError("aws-lambda-rie-x86_64 not found")

    monkeypatch.setattr(emulator, "rie_binary", missing)
    with pytest.raises(EmulatorError, match="not found"):
        LambdaFunction("Api", template=template).start()
    assert list(scratch.iterdir()) == []


def test_given_a_start_when_ports_are_chosen_then_two_distinct_ones_in_one_request(
    template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []

    def ports(count: int) -> list[int]:
        asked.append(count)
        raise OSError("no port for this test")

    monkeypatch.setattr(emulator, "rie_binary", lambda: Path("/bin/true"))
    monkeypatch.setattr(emulator, "free_ports", ports)
    with pytest.raises(OSError, match="no port"):
        LambdaFunction("Api", template=template).start()
    assert asked == [2]
