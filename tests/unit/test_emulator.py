"""local.emulator without starting anything: template reading, environment, binary lookup."""

from __future__ import annotations

import json
import os
import textwrap
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
from local.template import TemplateError, function_spec, load_env_vars, load_template

TEMPLATE = textwrap.dedent(
    """\
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Topic: {Type: String, Default: events}
      Secret: {Type: String}
      Subnets: {Type: CommaDelimitedList, Default: "a,b"}
      Memory: {Type: Number, Default: 256}
    Globals:
      Function:
        Runtime: python3.13
        Timeout: 7
        Layers: [!Ref Shared]
        Environment:
          Variables:
            LEVEL: INFO
            SECRET_ARN: !Ref Secret
    Resources:
      Shared:
        Type: AWS::Serverless::LayerVersion
        Properties: {ContentUri: layers/shared/}
      Api:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/api/
          Handler: app.handler
          MemorySize: !Ref Memory
          Environment:
            Variables:
              LEVEL: DEBUG
              TOPIC: !Ref Topic
              REGION_TOPIC: !Sub "${AWS::Region}-${Topic}"
              FLAG: true
              PICK: !If [SomeCondition, a, b]
              ARN: !GetAtt Shared.Arn
      Queue:
        Type: AWS::SQS::Queue
    """
)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return path


def test_given_short_form_intrinsics_when_loaded_then_they_are_the_long_form(
    template: Path,
) -> None:
    variables = load_template(template)["Resources"]["Api"]["Properties"]["Environment"]
    assert variables["Variables"]["TOPIC"] == {"Ref": "Topic"}
    assert variables["Variables"]["PICK"] == {"Fn::If": ["SomeCondition", "a", "b"]}
    assert variables["Variables"]["ARN"] == {"Fn::GetAtt": ["Shared", "Arn"]}


def test_given_a_function_when_read_then_globals_merge_and_the_function_wins(
    template: Path,
) -> None:
    spec = function_spec("Api", template, region="eu-west-1")

    assert spec.code_dir == template.parent / "functions/api/"
    assert spec.handler == "app.handler"
    assert spec.runtime == "python3.13"
    assert spec.timeout_s == 7
    assert spec.memory_mb == 256
    assert spec.layer_dirs == (template.parent / "layers/shared/python",)
    assert spec.environment["LEVEL"] == "DEBUG"
    assert spec.environment["TOPIC"] == "events"
    assert spec.environment["REGION_TOPIC"] == "eu-west-1-events"
    assert spec.environment["FLAG"] == "true"


def test_given_unresolvable_values_when_read_then_they_are_blank_as_in_sam_local(
    template: Path,
) -> None:
    env = function_spec("Api", template).environment
    assert env["SECRET_ARN"] == ""
    assert env["PICK"] == ""
    assert env["ARN"] == ""


def test_given_parameter_overrides_when_read_then_they_win_over_defaults(template: Path) -> None:
    spec = function_spec("Api", template, {"Topic": "other", "Secret": "arn:s"})
    assert spec.environment["TOPIC"] == "other"
    assert spec.environment["SECRET_ARN"] == "arn:s"


def test_given_a_name_that_is_no_function_when_read_then_the_error_lists_the_functions(
    template: Path,
) -> None:
    with pytest.raises(TemplateError, match=r"\['Api'\]"):
        function_spec("Queue", template)


def test_given_an_env_vars_file_when_loaded_then_shared_then_own_values_for_declared_names(
    template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"LEVEL": "WARNING", "TOPIC": "shared", "UNDECLARED_SHARED": "x"},
                "Api": {"TOPIC": "own", "UNDECLARED_OWN": "y", "FLAG": False},
                "Other": {"LEVEL": "ERROR"},
            }
        )
    )

    values = load_env_vars(env_file, function_spec("Api", template))

    assert values == {"LEVEL": "WARNING", "TOPIC": "own", "FLAG": "false"}
    warning = capsys.readouterr().err
    assert "UNDECLARED_OWN" in warning
    assert "UNDECLARED_SHARED" not in warning


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
