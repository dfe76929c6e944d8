"""The template's parameter constraints and Rules reject the parameter sets that would deploy a
broken stack, as CloudFormation evaluates them before creating anything (a small evaluator of
the rule functions the template uses; nothing is deployed)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:punk-records/db-AbCdEf"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALIAS = f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/punk-records"
CLUSTER = f"arn:aws:kafka:eu-west-1:{ACCOUNT}:cluster/punk/0b1c2d3e-1111-2222-3333-444455556666-2"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:punk-records-alarms"

BASE = {
    "KafkaBootstrapServers": "b-1.kafka.internal:9092,b-2.kafka.internal:9092",
    "SubnetIds": "subnet-0a,subnet-0b",
    "SecurityGroupIds": "sg-0a",
    "DatabaseSecretArn": SECRET,
    "ApiTokensSecretArn": SECRET,
    "QueryDatabaseSecretArn": SECRET,
}


def check_parameters(values: dict[str, str]) -> list[str]:
    """Problems CloudFormation reports for parameter values, before any Rule."""
    problems = []
    for name, spec in TEMPLATE["Parameters"].items():
        if name not in values and "Default" not in spec:
            problems.append(f"{name}: required")
            continue
        value = str(values.get(name, spec.get("Default")))
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"{name}: does not match AllowedPattern")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}: not an allowed value")
        if spec["Type"] == "Number":
            number = float(value)
            if number < spec.get("MinValue", number) or number > spec.get("MaxValue", number):
                problems.append(f"{name}: out of range")
    return problems


def _eval(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_eval(item, values) for item in node]
    if not isinstance(node, dict):
        return str(node)
    [(function, args)] = node.items()
    if function == "Ref":
        spec = TEMPLATE["Parameters"][args]
        return str(values.get(args, spec.get("Default")))
    args = _eval(args, values)
    match function:
        case "Fn::Equals":
            return args[0] == args[1]
        case "Fn::Not":
            return not args[0]
        case "Fn::And":
            return all(args)
        case "Fn::Or":
            return any(args)
        case "Fn::Contains":
            return args[1] in args[0]
        case "Fn::EachMemberIn":
            return all(item in args[1] for item in args[0])
    raise AssertionError(f"rule function {function} not supported by this evaluator")


def check_rules(values: dict[str, str]) -> list[str]:
    """The AssertDescription of every failing assertion."""
    failed = []
    for rule in TEMPLATE["Rules"].values():
        if "RuleCondition" in rule and not _eval(rule["RuleCondition"], values):
            continue
        failed += [
            a["AssertDescription"] for a in rule["Assertions"] if not _eval(a["Assert"], values)
        ]
    return failed


def rejected(**overrides: str) -> list[str]:
    values = {**BASE, **overrides}
    return check_parameters(values) + check_rules(values)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"MskClusterArn": CLUSTER, "KafkaAuthMode": "iam"},
        {
            "MskClusterArn": CLUSTER,
            "KafkaAuthMode": "scram",
            "KafkaScramSecretArn": SECRET,
            "KafkaScramSecretKmsKeyArn": KEY,
        },
        {"KafkaAuthMode": "scram", "KafkaScramSecretArn": SECRET},  # self-managed, AWS key
        {"KafkaTls": "true", "KafkaServerRootCaSecretArn": SECRET},
        {"Stage": "prod", "AlarmTopicArn": TOPIC, "DatabaseSecretKmsKeyArn": KEY},
    ],
)
def test_given_a_consistent_parameter_set_then_it_is_accepted(overrides: dict[str, str]) -> None:
    assert rejected(**overrides) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"MskClusterArn": CLUSTER, "KafkaAuthMode": "scram", "KafkaScramSecretArn": SECRET},
            "SCRAM on MSK needs KafkaScramSecretKmsKeyArn",
        ),
        (
            {
                "MskClusterArn": CLUSTER,
                "KafkaAuthMode": "scram",
                "KafkaScramSecretArn": SECRET,
                "KafkaScramSecretKmsKeyArn": ALIAS,
            },
            "KafkaScramSecretKmsKeyArn: does not match AllowedPattern",
        ),
        ({"DatabaseSecretKmsKeyArn": ALIAS}, "DatabaseSecretKmsKeyArn: does not match"),
        ({"DatabaseSecretKmsKeyArn": "alias/aws/secretsmanager"}, "DatabaseSecretKmsKeyArn: does"),
        ({"DatabaseSecretArn": "punk-records/db"}, "DatabaseSecretArn: does not match"),
        ({"KafkaScramSecretArn": "AmazonMSK_punk"}, "KafkaScramSecretArn: does not match"),
        ({"AlarmTopicArn": "punk-records-alarms"}, "AlarmTopicArn: does not match"),
        ({"KafkaAuthMode": "iam"}, "KafkaAuthMode iam needs MskClusterArn"),
        ({"KafkaAuthMode": "scram"}, "KafkaAuthMode scram needs KafkaScramSecretArn"),
        ({"Stage": "prod"}, "Stage prod needs AlarmTopicArn"),
        (
            {"MskClusterArn": CLUSTER, "KafkaServerRootCaSecretArn": SECRET, "KafkaTls": "true"},
            "KafkaServerRootCaSecretArn is for self-managed Kafka",
        ),
        ({"KafkaServerRootCaSecretArn": SECRET}, "KafkaServerRootCaSecretArn needs TLS"),
        ({"KafkaBootstrapServers": "b-1:9092, b-2:9092"}, "KafkaBootstrapServers: does not"),
        ({"MaxPayloadBytes": "6000000"}, "MaxPayloadBytes: out of range"),
        ({"MaxBodyBytes": "6000000"}, "MaxBodyBytes: out of range"),
        ({"MaxRecordBytes": "8388608"}, "MaxRecordBytes: out of range"),
    ],
)
def test_given_a_parameter_set_that_cannot_work_then_it_is_rejected_with_the_reason(
    overrides: dict[str, str], reason: str
) -> None:
    problems = rejected(**overrides)
    assert any(problem.startswith(reason) for problem in problems), problems


def test_given_one_subnet_then_the_self_managed_mapping_cannot_be_built() -> None:
    # Rules cannot count list items; the self-managed mapping names the second subnet, so
    # CloudFormation refuses a single subnet when it resolves the template (docs/deploy.md).
    access = TEMPLATE["Resources"]["ConsumerSelfManagedKafkaMapping"]["Properties"][
        "SourceAccessConfigurations"
    ]
    selected = [a["URI"]["Fn::Sub"][1]["Id"] for a in access if a.get("Type") == "VPC_SUBNET"]
    assert {"Fn::Select": [1, {"Ref": "SubnetIds"}]} in selected
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "at least two subnets" in deploy


def test_given_the_prod_config_then_a_deploy_without_an_alarm_topic_is_refused() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    overrides = dict(
        item.split("=", 1)
        for item in config["prod"]["deploy"]["parameters"]["parameter_overrides"].split()
    )
    assert overrides["Stage"] == "prod"
    problems = rejected(**overrides)
    assert any(problem.startswith("Stage prod needs AlarmTopicArn") for problem in problems)
    assert rejected(**overrides, AlarmTopicArn=TOPIC) == []
