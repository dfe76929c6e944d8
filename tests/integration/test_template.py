"""template.yaml agrees with the code: handlers, layer, environment variables, event sources."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from local.template import load_template
from punk_records.config import CONSUMER, INGEST, MIGRATE, QUERY, Settings
from punk_records.observability import NAMESPACE, SERVICE

FUNCTIONS_READING = (INGEST, CONSUMER, MIGRATE, QUERY)
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
GLOBALS: dict[str, Any] = TEMPLATE["Globals"]["Function"]
FUNCTIONS = {
    name: res["Properties"]
    for name, res in RESOURCES.items()
    if res["Type"] == "AWS::Serverless::Function"
}

# What each function reads, as Settings declares it next to each field (``read_by``).
NEEDED = {
    f"{function}Function": Settings.variables_read_by(function) for function in FUNCTIONS_READING
}
POWERTOOLS = {"POWERTOOLS_LOG_LEVEL"}


def environment(function: str) -> dict[str, Any]:
    return {
        **GLOBALS["Environment"]["Variables"],
        **FUNCTIONS[function].get("Environment", {}).get("Variables", {}),
    }


def prop(function: str, name: str) -> Any:
    return FUNCTIONS[function].get(name, GLOBALS.get(name))


def test_given_the_template_then_it_defines_exactly_the_four_functions() -> None:
    assert set(FUNCTIONS) == set(NEEDED)


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_given_a_function_then_its_handler_is_defined_at_module_level_in_its_code_uri(
    function: str,
) -> None:
    module, _, attribute = prop(function, "Handler").rpartition(".")
    source = ROOT / FUNCTIONS[function]["CodeUri"] / f"{module.replace('.', '/')}.py"
    assert source.is_file(), f"{function}: {source} missing"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)} | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in defined


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_given_a_function_then_it_declares_exactly_the_settings_it_reads(function: str) -> None:
    declared = set(environment(function)) - POWERTOOLS
    assert declared == NEEDED[function]


def test_given_every_declared_variable_then_it_is_a_settings_field_and_every_field_is_used() -> (
    None
):
    fields = {name.upper() for name in Settings.model_fields}
    declared = set().union(*(set(environment(f)) for f in FUNCTIONS)) - POWERTOOLS
    read = set().union(*NEEDED.values())
    assert declared <= fields
    # AWS_REGION is set by Lambda itself; every other setting is read by some function.
    assert fields - read == {"AWS_REGION"}
    assert fields - declared == {"AWS_REGION"}


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_given_an_environment_value_then_it_is_a_literal_or_a_parameter_the_emulator_resolves(
    function: str,
) -> None:
    for name, value in environment(function).items():
        if isinstance(value, dict):
            assert set(value) == {"Ref"}, name
            # Or a secret the stack creates: locally it is empty and the plain variable next to
            # it (CURSOR_KEY for CURSOR_KEY_SECRET_ARN) is used, as with sam local invoke.
            ref = value["Ref"]
            assert ref in PARAMETERS or RESOURCES[ref]["Type"] == "AWS::SecretsManager::Secret"
        else:
            assert isinstance(value, str), f"{name}: quote literals, Lambda wants strings"


def test_given_the_kafka_auth_parameter_then_its_values_are_the_ones_the_code_accepts() -> None:
    accepted = set(get_args(Settings.model_fields["kafka_auth_mode"].annotation))
    assert set(PARAMETERS["KafkaAuthMode"]["AllowedValues"]) == accepted


def test_given_the_layer_then_it_is_built_by_its_makefile_for_the_functions_runtime() -> None:
    layers = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert list(layers) == ["PunkRecordsLayer"]
    layer = layers["PunkRecordsLayer"]
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "python" / "punk_records" / "__init__.py").is_file()
    assert (content / "requirements.txt").is_file()
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (content / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^build-PunkRecordsLayer:", makefile, re.MULTILINE)
    runtime = GLOBALS["Runtime"]
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    version = re.search(r"^LAYER_PYTHON_VERSION \?= (\S+)$", makefile, re.MULTILINE)
    assert version
    assert f"python{version.group(1)}" == runtime
    arch = {"Ref": "Architecture"}
    assert layer["Properties"]["CompatibleArchitectures"] == [arch]
    assert layer["Metadata"]["BuildArchitecture"] == arch
    assert GLOBALS["Architectures"] == [arch]
    default_arch = re.search(r"^LAYER_ARCHITECTURE \?= (\S+)$", makefile, re.MULTILINE)
    assert default_arch
    assert default_arch.group(1) == PARAMETERS["Architecture"]["Default"]


def test_given_the_functions_then_each_uses_the_layer_and_a_runtime_supported_past_2027() -> None:
    assert GLOBALS["Layers"] == [{"Ref": "PunkRecordsLayer"}]
    for function in FUNCTIONS:
        assert prop(function, "Runtime") in {"python3.13", "python3.14"}
        assert "Layers" not in FUNCTIONS[function]


def _routes(function: str) -> set[tuple[str, str]]:
    return {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for event in FUNCTIONS[function].get("Events", {}).values()
        if event["Type"] == "HttpApi" and event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    }


def test_given_the_http_api_then_writes_go_to_ingest_reads_to_query_with_logs_and_throttling() -> (
    None
):
    assert _routes("IngestFunction") == {("POST", "/events"), ("GET", "/health")}
    assert _routes("QueryFunction") == {
        ("GET", "/events"),
        ("GET", "/events/{event_id}"),
        ("GET", "/dead-letters"),
    }
    api = RESOURCES["HttpApi"]["Properties"]
    assert "DestinationArn" in api["AccessLogSettings"]
    assert "$context.requestId" in api["AccessLogSettings"]["Format"]
    assert "header" not in api["AccessLogSettings"]["Format"].lower()
    settings = api["DefaultRouteSettings"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(settings)
    assert api["CorsConfiguration"]["Fn::If"][0] == "HasCors"
    ingest_timeout = PARAMETERS["IngestTimeout"]
    assert ingest_timeout["MaxValue"] < 30


def _decision_table() -> dict[str, str]:
    """The ESM settings table of docs/consumer.md: setting -> value column."""
    text = (ROOT / "docs" / "consumer.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)(?:\.\w+)*` \| ([^|]+) \|", text, re.MULTILINE)
    return {name: value.strip() for name, value in rows}


MAPPINGS = ("ConsumerMskMapping", "ConsumerSelfManagedKafkaMapping")


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_given_an_event_source_mapping_then_it_follows_the_consumer_error_handling_decision(
    mapping: str,
) -> None:
    decision = _decision_table()
    props = RESOURCES[mapping]["Properties"]
    provisioned_only = {"Fn::If": ["UseProvisionedPollers"]}
    assert decision["FunctionResponseTypes"].startswith("leave unset")
    assert "FunctionResponseTypes" not in props
    assert decision["DestinationConfig"] == "none"
    assert "DestinationConfig" not in props
    assert decision["StartingPosition"] == "`TRIM_HORIZON`"
    assert props["StartingPosition"] == "TRIM_HORIZON"
    # Unset in the doc means Lambda's defaults; the template spells them out where allowed.
    for setting, default in (
        ("MaximumRetryAttempts", -1),
        ("MaximumRecordAgeInSeconds", -1),
        ("BisectBatchOnFunctionError", False),
    ):
        assert decision[setting].startswith("leave unset")
        condition, value, otherwise = props[setting]["Fn::If"]
        assert [condition] == provisioned_only["Fn::If"]
        assert value == default
        assert otherwise == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_given_an_event_source_mapping_then_it_reads_the_topic_into_the_consumer(
    mapping: str,
) -> None:
    props = RESOURCES[mapping]["Properties"]
    assert props["FunctionName"] == {"Ref": "ConsumerFunction"}
    assert props["Topics"] == [{"Ref": "KafkaTopic"}]
    assert props["BatchSize"] == {"Ref": "ConsumerBatchSize"}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "ConsumerBatchingWindowSeconds"}
    config = props.get("AmazonManagedKafkaEventSourceConfig") or props.get(
        "SelfManagedKafkaEventSourceConfig"
    )
    assert config == {"ConsumerGroupId": {"Ref": "ConsumerGroupId"}}
    assert RESOURCES[mapping]["DependsOn"] == "Migrations"


def test_given_the_conditions_then_exactly_one_mapping_exists_for_any_cluster_arn() -> None:
    conditions = TEMPLATE["Conditions"]
    assert RESOURCES["ConsumerMskMapping"]["Condition"] == "UseMsk"
    assert RESOURCES["ConsumerSelfManagedKafkaMapping"]["Condition"] == "UseSelfManagedKafka"
    assert conditions["UseMsk"] == {"Fn::Not": [conditions["UseSelfManagedKafka"]]}
    assert conditions["UseSelfManagedKafka"] == {"Fn::Equals": [{"Ref": "MskClusterArn"}, ""]}


def test_given_the_consumer_then_its_timeout_fits_a_kafka_event_source() -> None:
    timeout = PARAMETERS["ConsumerTimeout"]
    assert timeout["MaxValue"] <= 14 * 60
    assert timeout["MinValue"] >= 60
    assert FUNCTIONS["ConsumerFunction"]["Timeout"] == {"Ref": "ConsumerTimeout"}


def _statements(function: str) -> list[dict[str, Any]]:
    found = []
    for policy in FUNCTIONS[function].get("Policies", []):
        if isinstance(policy, dict) and "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        if isinstance(policy, dict):
            found.extend(policy.get("Statement", []))
    return found


def _secret_policies(function: str) -> list[Any]:
    arns = []
    for policy in FUNCTIONS[function].get("Policies", []):
        if isinstance(policy, dict) and "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
            arns.append(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"])
    return arns


@pytest.mark.parametrize(
    ("function", "secrets"),
    [
        ("IngestFunction", ["DatabaseSecretArn", "ApiTokensSecretArn", "KafkaScramSecretArn"]),
        ("ConsumerFunction", ["DatabaseSecretArn", "KafkaScramSecretArn"]),
        ("MigrateFunction", ["DatabaseSecretArn", "QueryDatabaseSecretArn"]),
        # Its own read-only login; never the consumer's credentials.
        ("QueryFunction", ["QueryDatabaseSecretArn", "ApiTokensSecretArn", "CursorKeySecret"]),
    ],
)
def test_given_a_function_then_it_reads_exactly_its_secrets_and_nothing_is_granted_on_star(
    function: str, secrets: list[str]
) -> None:
    assert _secret_policies(function) == [{"Ref": name} for name in secrets]
    for statement in _statements(function):
        if statement["Resource"] == "*":
            # Describe calls take no resource; they are what a self-managed Kafka ESM needs.
            assert set(statement["Action"]) == {"ec2:DescribeVpcs", "ec2:DescribeSecurityGroups"}
        assert not any(action.endswith(":*") for action in _as_list(statement["Action"]))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_given_msk_iam_auth_then_producer_and_consumer_get_only_their_kafka_cluster_actions() -> (
    None
):
    ingest = {a for s in _statements("IngestFunction") for a in _as_list(s["Action"])}
    consumer = {a for s in _statements("ConsumerFunction") for a in _as_list(s["Action"])}
    assert {a for a in ingest if a.startswith("kafka-cluster:")} == {
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeCluster",
        "kafka-cluster:WriteDataIdempotently",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:WriteData",
    }
    assert {a for a in consumer if a.startswith("kafka-cluster:")} == {
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeClusterDynamicConfiguration",
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
        "kafka-cluster:DescribeGroup",
        "kafka-cluster:AlterGroup",
    }


def test_given_the_alarms_then_errors_dead_letters_5xx_lag_and_reads_are_watched() -> None:
    by_name = {
        name: res["Properties"]
        for name, res in RESOURCES.items()
        if res["Type"] == "AWS::CloudWatch::Alarm"
    }
    watched = {
        (props["MetricName"], props["Dimensions"][0]["Value"].get("Ref", ""))
        for props in by_name.values()
        if isinstance(props["Dimensions"][0]["Value"], dict)
    }
    assert {("Errors", "QueryFunction"), ("Duration", "QueryFunction")} <= watched
    assert by_name["QueryLatencyAlarm"]["ExtendedStatistic"] == "p99"
    alarms = {
        props["MetricName"]: props
        for name, props in by_name.items()
        if not name.startswith("Query")
    }
    assert set(alarms) == {"Errors", "RecordsDeadLettered", "5xx", "OffsetLag"}
    assert alarms["Errors"]["Dimensions"][0]["Value"] == {"Ref": "ConsumerFunction"}
    assert alarms["OffsetLag"]["Dimensions"][0]["Value"] == {"Ref": "ConsumerFunction"}
    assert alarms["5xx"]["Dimensions"][0]["Value"] == {"Ref": "HttpApi"}
    # The dead-letter metric is the consumer's own EMF metric: same name, namespace, dimension.
    consumer_source = (ROOT / "functions" / "consumer" / "app.py").read_text(encoding="utf-8")
    assert 'name="RecordsDeadLettered"' in consumer_source
    assert alarms["RecordsDeadLettered"]["Namespace"] == NAMESPACE
    assert alarms["RecordsDeadLettered"]["Dimensions"] == [{"Name": "service", "Value": SERVICE}]


def test_given_a_deploy_then_the_migrations_custom_resource_runs_on_every_new_layer() -> None:
    migrations = RESOURCES["Migrations"]["Properties"]
    assert migrations["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert migrations["LayerVersion"] == {"Ref": "PunkRecordsLayer"}


def test_given_the_outputs_then_api_url_function_names_and_layer_arn_are_there() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "ApiUrl", "IngestFunctionName", "ConsumerFunctionName", "QueryFunctionName", "LayerArn"
    } <= set(outputs)  # fmt: skip
    assert outputs["LayerArn"]["Value"] == {"Ref": "PunkRecordsLayer"}


def test_given_the_query_function_then_it_logs_in_with_its_own_secret_and_signs_cursors() -> None:
    env = environment("QueryFunction")
    assert env["DATABASE_SECRET_ARN"] == {"Ref": "QueryDatabaseSecretArn"}
    assert env["CURSOR_KEY_SECRET_ARN"] == {"Ref": "CursorKeySecret"}
    generated = RESOURCES["CursorKeySecret"]["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "key"
    assert generated["PasswordLength"] >= 32
    assert PARAMETERS["QueryTimeout"]["MaxValue"] < 30
    migrate = environment("MigrateFunction")
    assert migrate["QUERY_DATABASE_SECRET_ARN"] == {"Ref": "QueryDatabaseSecretArn"}
