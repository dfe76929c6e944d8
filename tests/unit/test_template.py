"""local.template: CloudFormation short forms, function specs, ``--env-vars`` overrides."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

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
