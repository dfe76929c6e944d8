"""template.yaml agrees with the code: handlers, layer, environment variables, event sources."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from local.template import load_template
from punk_records import migrations
from punk_records.config import ADMIN, CONSUMER, INGEST, MIGRATE, QUERY, Settings
from punk_records.observability import NAMESPACE, SERVICE

FUNCTIONS_READING = (INGEST, CONSUMER, MIGRATE, QUERY, ADMIN)
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
# Read by the libraries, not by Settings.
LIBRARIES = {"POWERTOOLS_LOG_LEVEL", "PYDANTIC_DISABLE_PLUGINS"}


def environment(function: str) -> dict[str, Any]:
    return {
        **GLOBALS["Environment"]["Variables"],
        **FUNCTIONS[function].get("Environment", {}).get("Variables", {}),
    }


def prop(function: str, name: str) -> Any:
    return FUNCTIONS[function].get(name, GLOBALS.get(name))


def test_given_the_template_then_it_defines_exactly_the_five_functions() -> None:
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
    declared = set(environment(function)) - LIBRARIES
    assert declared == NEEDED[function]


def test_given_every_declared_variable_then_it_is_a_settings_field_and_every_field_is_used() -> (
    None
):
    fields = {name.upper() for name in Settings.model_fields}
    declared = set().union(*(set(environment(f)) for f in FUNCTIONS)) - LIBRARIES
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
        ("GET", "/memory"),
        ("GET", "/memory/{entry_id}"),
    }
    assert "Events" not in FUNCTIONS["AdminFunction"]  # sam remote invoke only
    api = RESOURCES["HttpApi"]["Properties"]
    assert "DestinationArn" in api["AccessLogSettings"]
    assert "$context.requestId" in api["AccessLogSettings"]["Format"]
    assert "header" not in api["AccessLogSettings"]["Format"].lower()
    settings = api["DefaultRouteSettings"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(settings)
    assert settings["DetailedMetricsEnabled"] is True  # per-route figures for the dashboard
    # The unauthenticated health route has its own, much lower, throttle.
    health = api["RouteSettings"]["GET /health"]
    assert 1 <= health["ThrottlingRateLimit"] <= 10
    assert health["ThrottlingBurstLimit"] <= 20
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
    # The mapping's own metrics: errors and lag are visible even when nothing is invoked.
    assert set(props["MetricsConfig"]["Metrics"]) == {"EventCount", "ErrorCount", "KafkaMetrics"}


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
        (
            "IngestFunction",
            [
                "DatabaseSecretArn",
                "ApiTokensSecretArn",
                "KafkaScramSecretArn",
                "KafkaServerRootCaSecretArn",
            ],
        ),
        (
            "ConsumerFunction",
            ["DatabaseSecretArn", "KafkaScramSecretArn", "KafkaServerRootCaSecretArn"],
        ),
        ("MigrateFunction", ["DatabaseSecretArn", "QueryDatabaseSecretArn"]),
        # Its own read-only login; never the consumer's credentials.
        ("QueryFunction", ["QueryDatabaseSecretArn", "ApiTokensSecretArn", "CursorKeySecret"]),
        # It writes the projection and redriven events: the consumer's login, and the tokens.
        ("AdminFunction", ["DatabaseSecretArn", "ApiTokensSecretArn"]),
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


def test_given_the_iam_policies_then_no_managed_msk_role_and_only_scoped_kafka_actions() -> None:
    for function in FUNCTIONS:
        for policy in FUNCTIONS[function].get("Policies", []):
            assert "AWSLambdaMSKExecutionRole" not in str(policy), function
    consumer = _statements("ConsumerFunction")
    kafka = [s for s in consumer if any(a.startswith("kafka:") for a in _as_list(s["Action"]))]
    assert kafka == [
        {
            "Effect": "Allow",
            "Action": ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"],
            "Resource": {"Ref": "MskClusterArn"},
        },
        {
            "Effect": "Allow",
            "Action": "kafka:ListScramSecrets",
            "Resource": {"Ref": "MskClusterArn"},
        },
    ]


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_given_a_kms_decrypt_grant_then_it_holds_only_through_secrets_manager(
    function: str,
) -> None:
    grants = [s for s in _statements(function) if "kms:Decrypt" in _as_list(s["Action"])]
    assert grants
    for statement in grants:
        assert statement["Resource"]["Ref"].endswith("KmsKeyArn")
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert via == {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"}


def test_given_the_ingest_function_then_its_concurrency_can_be_reserved() -> None:
    reserved = FUNCTIONS["IngestFunction"]["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved == [
        "HasIngestReservedConcurrency",
        {"Ref": "IngestReservedConcurrency"},
        {"Ref": "AWS::NoValue"},
    ]
    assert PARAMETERS["IngestReservedConcurrency"]["Default"] == 0


def test_given_every_log_group_then_it_outlives_the_stack() -> None:
    groups = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert set(groups) == {
        "ApiAccessLogGroup",
        "IngestLogGroup",
        "ConsumerLogGroup",
        "MigrateLogGroup",
        "QueryLogGroup",
        "AdminLogGroup",
    }
    for name, group in groups.items():
        assert group["DeletionPolicy"] == "Retain", name
        assert group["UpdateReplacePolicy"] == "Retain", name


# Lambda's synchronous invocation limit (request), and the largest API Gateway event around a
# body: 10,240 bytes of request line and headers plus the fixed fields.
INVOKE_LIMIT = 6 * 1024 * 1024
EVENT_ENVELOPE = 16 * 1024


def _base64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def test_given_the_size_parameters_then_every_maximum_fits_the_whole_path() -> None:
    body, payload, record = (
        PARAMETERS[p] for p in ("MaxBodyBytes", "MaxPayloadBytes", "MaxRecordBytes")
    )
    # A body, even base64-encoded by API Gateway, fits one synchronous invocation.
    assert _base64_size(body["MaxValue"]) + EVENT_ENVELOPE <= INVOKE_LIMIT
    # A record, base64-encoded in the mapping's event, fits one consumer invocation.
    assert _base64_size(record["MaxValue"]) + EVENT_ENVELOPE <= INVOKE_LIMIT
    # A payload at its maximum leaves room for the envelope inside the largest record.
    assert payload["MaxValue"] + 4096 <= record["MaxValue"]
    assert payload["Default"] + 4096 <= record["Default"]
    # The producer's limit is set from the parameter in both functions that read records.
    for function in ("IngestFunction", "ConsumerFunction"):
        assert environment(function)["MAX_RECORD_BYTES"] == {"Ref": "MaxRecordBytes"}
    field = Settings.model_fields["max_record_bytes"]
    assert field.default == record["Default"]


def test_given_a_deploy_then_migrations_rerun_when_the_database_or_the_migration_set_changes() -> (
    None
):
    resource = RESOURCES["Migrations"]
    props = resource["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert props["DatabaseSecretArn"] == {"Ref": "DatabaseSecretArn"}
    # Stale digest: run `make migrations-digest` after adding or changing a migration file.
    assert props["MigrationsDigest"] == migrations.digest()
    # CloudFormation waits longer than the function may run, so the function always answers.
    timeout = PARAMETERS["MigrationsTimeout"]
    assert FUNCTIONS["MigrateFunction"]["Timeout"] == {"Ref": "MigrationsTimeout"}
    assert props["ServiceTimeout"] > timeout["MaxValue"]


def test_given_the_digest_then_it_changes_with_any_migration_file(monkeypatch) -> None:
    before = migrations.digest()
    extra = (9999, "9999_more.sql", "CREATE TABLE t (id int);")
    monkeypatch.setattr(migrations, "available", lambda: [*ORIGINAL_AVAILABLE(), extra])
    assert migrations.digest() != before


ORIGINAL_AVAILABLE = migrations.available


@pytest.mark.parametrize("function", ["IngestFunction", "ConsumerFunction", "QueryFunction"])
def test_given_a_function_that_touches_the_database_then_it_waits_for_the_migrations(
    function: str,
) -> None:
    assert RESOURCES[function]["DependsOn"] == "Migrations"
    assert "DependsOn" not in RESOURCES["MigrateFunction"]


def test_given_the_alarms_then_errors_5xx_lag_mapping_errors_and_reads_are_watched() -> None:
    alarms = {
        n: r["Properties"] for n, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) == {
        "ConsumerErrorsAlarm",
        "DeadLetteredRecordsAlarm",
        "Ingest5xxAlarm",
        "ConsumerOffsetLagAlarm",
        "ConsumerMappingErrorsAlarm",
        "QueryErrorsAlarm",
        "QueryLatencyAlarm",
    }
    assert alarms["QueryErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": "QueryFunction"}
    assert alarms["QueryLatencyAlarm"]["Dimensions"][0]["Value"] == {"Ref": "QueryFunction"}
    assert alarms["QueryLatencyAlarm"]["ExtendedStatistic"] == "p99"
    assert alarms["ConsumerErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": "ConsumerFunction"}
    assert alarms["Ingest5xxAlarm"]["Dimensions"][0]["Value"] == {"Ref": "HttpApi"}
    # No lag figure at all means the mapping is not polling: that must alarm, not hide.
    lag = alarms["ConsumerOffsetLagAlarm"]
    assert (lag["MetricName"], lag["TreatMissingData"]) == ("OffsetLag", "breaching")
    assert lag["Dimensions"][0]["Value"] == {"Ref": "ConsumerFunction"}
    # The dead-letter metric is the consumer's own EMF metric: same name, namespace, dimension.
    dead = alarms["DeadLetteredRecordsAlarm"]
    assert "RecordsDeadLettered" in emitted_metrics()
    assert dead["Namespace"] == NAMESPACE
    assert dead["Dimensions"] == [{"Name": "service", "Value": SERVICE}]
    # The mapping's error metrics, on its own UUID, whichever mapping exists.
    mapping = alarms["ConsumerMappingErrorsAlarm"]
    stats = [m["MetricStat"]["Metric"] for m in mapping["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in stats} <= AWS_METRICS["AWS/Lambda"]
    assert {m["MetricName"] for m in stats} >= {"PollingErrorCount", "CommitErrorCount"}
    for metric in stats:
        assert metric["Dimensions"][0]["Name"] == "EventSourceMappingUUID"
        assert metric["Dimensions"][0]["Value"]["Fn::If"][0] == "UseMsk"
    for name, props in alarms.items():
        assert props["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic", name


# Metrics AWS publishes that the dashboard and alarms may name (AWS docs: Lambda function
# metrics, event source mapping metrics for Kafka, HTTP API metrics).
AWS_METRICS = {
    "AWS/Lambda": {
        "Invocations",
        "Errors",
        "Throttles",
        "Duration",
        "ConcurrentExecutions",
        "OffsetLag",
        "PolledEventCount",
        "InvokedEventCount",
        "FailedInvokeEventCount",
        "FilteredOutEventCount",
        "PollingErrorCount",
        "InvokeErrorCount",
        "CommitErrorCount",
        "MaxOffsetLag",
        "SumOffsetLag",
    },
    "AWS/ApiGateway": {"Count", "4xx", "5xx", "Latency", "IntegrationLatency", "DataProcessed"},
}


def emitted_metrics() -> set[str]:
    """Every metric name the code passes to Powertools (add_metric / single_metric)."""
    names = set()
    for source in [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers").rglob("*.py")]:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(
                node.func, "attr", getattr(node.func, "id", "")
            ) in {
                "add_metric",
                "single_metric",
            }:
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names.add(str(keyword.value.value))
    return names


def _dashboard() -> dict[str, Any]:
    template, variables = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", template))
    assert names <= set(RESOURCES) | set(PARAMETERS) | set(variables) | {"AWS::Region"}
    return json.loads(re.sub(r"\$\{[^}]+\}", "1", template))


def _dashboard_metrics() -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for widget in _dashboard()["widgets"]:
        for row in widget["properties"]["metrics"]:
            fields = [f for f in row if not isinstance(f, dict)]
            if not fields:
                continue  # a metric-math expression
            namespace, name, *dims = fields
            found.append((namespace, name, dict(zip(dims[::2], dims[1::2], strict=True))))
    return found


def test_given_the_dashboard_then_every_metric_it_names_is_emitted_by_the_code_or_by_aws() -> None:
    emitted = emitted_metrics()
    metrics = _dashboard_metrics()
    assert metrics
    for namespace, name, dims in metrics:
        if namespace == NAMESPACE:
            assert name in emitted, name
            assert dims == {"service": SERVICE}, name
        else:
            assert name in AWS_METRICS[namespace], (namespace, name)
    named = {name for _, name, _ in metrics}
    # What an operator looks for first.
    assert {
        "Count",
        "4xx",
        "5xx",
        "Latency",
        "EventsAccepted",
        "RecordsReceived",
        "OffsetLag",
        "BatchesFailed",
        "RecordsDeadLettered",
        "Errors",
        "Throttles",
        "ConcurrentExecutions",
    } <= named


def test_given_the_dashboard_then_alarm_thresholds_are_drawn_and_its_url_is_an_output() -> None:
    lines = [
        line
        for widget in _dashboard()["widgets"]
        for line in widget["properties"].get("annotations", {}).get("horizontal", [])
    ]
    labels = " ".join(line["label"] for line in lines)
    for alarm in (
        "ConsumerOffsetLagAlarm",
        "DeadLetteredRecordsAlarm",
        "ConsumerErrorsAlarm",
        "Ingest5xxAlarm",
        "ConsumerMappingErrorsAlarm",
    ):
        assert alarm in labels
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    assert '"value": ${ConsumerOffsetLagThreshold}' in body
    assert "${Dashboard}" in TEMPLATE["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


def test_given_the_outputs_then_api_url_function_names_and_layer_arn_are_there() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "ApiUrl", "IngestFunctionName", "ConsumerFunctionName", "QueryFunctionName", "LayerArn"
    } <= set(outputs)  # fmt: skip
    assert outputs["LayerArn"]["Value"] == {"Ref": "PunkRecordsLayer"}


def test_given_a_linter_finding_suppressed_in_the_template_then_a_one_line_reason_says_why() -> (
    None
):
    lines = (ROOT / "template.yaml").read_text(encoding="utf-8").splitlines()
    suppressed = 0
    for index, line in enumerate(lines):
        ids = re.findall(r"\b([A-Z]+\d{4})\b", line) if "ignore_checks:" in line else []
        for check in ids:
            # cfn-lint has no reason field: the comment block right above names every check.
            above = []
            for previous in reversed(lines[:index]):
                if not previous.strip().startswith("#"):
                    break
                above.append(previous)
            assert any(check in comment for comment in above), f"line {index + 1}: {check}"
            suppressed += 1
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            comment = skip.get("comment", "")
            assert comment.strip(), (name, skip["id"])
            assert "\n" not in comment.strip(), (name, skip["id"])
            suppressed += 1
    assert suppressed  # the check above is not vacuous


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
