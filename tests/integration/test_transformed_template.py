"""The CloudFormation template SAM makes of template.yaml (what `sam deploy` submits): ordering,
IAM, retention and monitoring hold after the transform, for MSK and self-managed Kafka."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from punk_records import migrations

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".cache" / "sam-venv" / "bin" / "python"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:punk-records/db-AbCdEf"
REQUIRED = {
    "KafkaBootstrapServers": "b-1.example:9098,b-2.example:9098",
    "SubnetIds": ["subnet-0a", "subnet-0b"],
    "SecurityGroupIds": ["sg-0a"],
    "DatabaseSecretArn": SECRET,
    "ApiTokensSecretArn": SECRET,
    "QueryDatabaseSecretArn": SECRET,
}
MSK_IAM = {
    **REQUIRED,
    "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/punk/0b1c2d3e-1111-2",
    "KafkaAuthMode": "iam",
}


def transformed(parameters: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(SAM_PYTHON),
            str(ROOT / "tests" / "integration" / "sam_transform.py"),
            str(ROOT / "template.yaml"),
            json.dumps(parameters),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["Resources"]


@pytest.fixture(scope="module", params=["self-managed", "msk-iam"])
def resources(request: pytest.FixtureRequest) -> dict[str, Any]:
    return transformed(REQUIRED if request.param == "self-managed" else MSK_IAM)


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_given_the_functions_then_those_that_touch_the_database_are_created_after_migrations(
    resources,
) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    assert set(functions) == {
        "IngestFunction",
        "ConsumerFunction",
        "QueryFunction",
        "MigrateFunction",
        "AdminFunction",
    }
    for name in ("IngestFunction", "ConsumerFunction", "QueryFunction", "AdminFunction"):
        assert "Migrations" in json.dumps(functions[name].get("DependsOn")), name
    assert "DependsOn" not in functions["MigrateFunction"]
    for name, mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").items():
        assert mapping["DependsOn"] == "Migrations", name


def test_given_the_migrations_resource_then_the_database_and_the_migration_set_drive_it(
    resources,
) -> None:
    props = resources["Migrations"]["Properties"]
    assert props["DatabaseSecretArn"] == {"Ref": "DatabaseSecretArn"}
    assert props["MigrationsDigest"] == migrations.digest()
    assert "LayerVersion" not in props


def test_given_the_roles_then_no_managed_msk_policy_and_no_describe_cluster_for_the_producer(
    resources,
) -> None:
    roles = of_type(resources, "AWS::IAM::Role")
    for name, role in roles.items():
        managed = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
        assert "AWSLambdaMSKExecutionRole" not in managed, name
        for statement in statements(role):
            if "kms:Decrypt" in actions(statement):
                assert "kms:ViaService" in statement["Condition"]["StringEquals"], name
            if statement["Resource"] == "*":
                assert set(actions(statement)) <= {"ec2:DescribeVpcs", "ec2:DescribeSecurityGroups"}
    ingest = {a for s in statements(roles["IngestFunctionRole"]) for a in actions(s)}
    assert "kafka-cluster:DescribeCluster" not in ingest
    assert "kafka-cluster:WriteData" in ingest


def test_given_the_log_groups_then_every_one_is_retained(resources) -> None:
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(groups) == 6
    for name, group in groups.items():
        assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain"), name


def test_given_the_api_stage_then_health_has_its_own_throttle_and_routes_report_metrics(
    resources,
) -> None:
    [stage] = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["DefaultRouteSettings"]["DetailedMetricsEnabled"] is True
    assert props["RouteSettings"]["GET /health"]["ThrottlingRateLimit"] <= 10


def test_given_the_mappings_then_their_metrics_are_on(resources) -> None:
    for name, mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").items():
        assert "ErrorCount" in mapping["Properties"]["MetricsConfig"]["Metrics"], name


def test_given_the_ingest_function_then_its_reserved_concurrency_is_wired(resources) -> None:
    ingest = resources["IngestFunction"]["Properties"]
    assert ingest["ReservedConcurrentExecutions"]["Fn::If"][0] == "HasIngestReservedConcurrency"
