"""Cold start: init time of each function under the Lambda emulator, import time, layer size.

The emulator's own ``Init Duration`` is near zero because it starts the runtime inside the first
invocation; so the init time here is the first invocation's ``Duration`` minus a warm one, both
for a request that touches no client (a wrong token; an empty batch). Tracing is left on, as
``Tracing: Active`` has it in Lambda (the emulator would otherwise pose as ``sam local``).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, Spread, compact, event_dicts, progress

FUNCTIONS = {"ingest": "IngestFunction", "consumer": "ConsumerFunction", "query": "QueryFunction"}
# Powertools turns the tracer off when it sees AWS_SAM_LOCAL; Lambda does not set it.
AS_LAMBDA = {"AWS_SAM_LOCAL": "", "API_TOKENS": "bench-token"}
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def _cheap_event(name: str) -> dict[str, Any]:
    """An invocation that opens no connection (a wrong token; an empty batch), so first minus
    warm is the init alone."""
    if name == "ingest":
        from local.samples.apigw import request

        body = compact(event_dicts(1)[0]).decode()
        return request("POST", "/events", "bench", body=body, token="not-the-token")  # noqa: S106
    if name == "query":
        from local.samples.apigw import request

        return request("GET", "/events", "bench", token="not-the-token")  # noqa: S106
    return {"eventSource": "aws:kafka", "eventSourceArn": "arn:bench", "records": {}}


# The baseline of the init ratio: a handler with the same Powertools decorators and nothing of
# ours, run the same way. Absolute init times move with the machine; the ratio does not.
_MINIMAL = {
    "ingest": """
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths

logger = Logger(service="minimal")
metrics = Metrics(namespace="Minimal", service="minimal")
tracer = Tracer(service="minimal", auto_patch=False)
app = APIGatewayHttpResolver()


@app.post("/events")
def post_events() -> Response:
    return Response(401, "application/json", '{"error": "unauthorized"}')


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event, context):
    return app.resolve(event, context)
""",
    "consumer": """
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import KafkaEvent, event_source

logger = Logger(service="minimal")
metrics = Metrics(namespace="Minimal", service="minimal")
tracer = Tracer(service="minimal", auto_patch=False)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=KafkaEvent)
def handler(event, context):
    return {"records": len(list(event.records))}
""",
}

# The query function has the ingest function's decorators and resolver; only its route differs.
_MINIMAL["query"] = _MINIMAL["ingest"].replace(
    '@app.post("/events")\ndef post_events()', '@app.get("/events")\ndef get_events()'
)


def minimal_template(name: str, directory: Path) -> Path:
    """A copy of template.yaml whose ``name`` function runs the minimal handler instead."""
    from local.template import TEMPLATE, load_template

    template = load_template(TEMPLATE)
    code = directory / "minimal"
    code.mkdir()
    (code / "app.py").write_text(_MINIMAL[name].lstrip())
    properties = template["Resources"][FUNCTIONS[name]]["Properties"]
    properties["CodeUri"] = str(code)
    properties["Handler"] = "app.handler"
    for resource in template["Resources"].values():
        content = (resource.get("Properties") or {}).get("ContentUri")
        if resource.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(content, str):
            resource["Properties"]["ContentUri"] = str(TEMPLATE.parent / content)
    path = directory / "template.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def _duration_ms(report: Mapping[str, str]) -> float:
    return float(report["Duration"].split()[0])


def init_ms(
    name: str, containers: int, warm: int = 5, template: Path | None = None
) -> dict[str, Any]:
    """First-invocation minus warm-invocation ``Duration`` over fresh containers (of the
    function in ``template`` when given, e.g. :func:`minimal_template`)."""
    from local.emulator import LambdaFunction
    from local.template import TEMPLATE

    event = _cheap_event(name)
    label = f"{name} (minimal)" if template else name
    inits, firsts, warms = [], [], []
    for i in range(containers):
        with LambdaFunction(
            FUNCTIONS[name], env_overrides=AS_LAMBDA, template=template or TEMPLATE
        ) as function:
            for _ in range(warm + 1):
                result = function.invoke(event)
                if isinstance(result, dict) and "errorType" in result:
                    raise RuntimeError(f"{name} failed: {result['errorType']}")
            durations = [_duration_ms(r) for r in function.reports()]
        first, warm_ms = durations[0], statistics.median(durations[1:])
        inits.append(first - warm_ms)
        firsts.append(first)
        warms.append(warm_ms)
        progress(f"cold start {label}: container {i + 1}/{containers}: {first - warm_ms:.0f} ms")
    return {
        "init_ms": Spread.of(inits).as_dict(),
        "first_invoke_ms": Spread.of(firsts).as_dict(),
        "warm_invoke_ms": Spread.of(warms).as_dict(),
    }


def _import_env(name: str) -> dict[str, str]:
    from local.emulator import LambdaFunction

    return LambdaFunction(FUNCTIONS[name], env_overrides=AS_LAMBDA).environment


def _importtime(name: str, env: Mapping[str, str]) -> tuple[float, dict[str, float]]:
    """Total import ms of the handler module and self ms per top-level package."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import app"],
        cwd=ROOT / "functions" / name,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    total = 0.0
    packages: dict[str, float] = {}
    for line in out.splitlines():
        match = _IMPORT_LINE.match(line)
        if match is None:
            continue
        self_us, cumulative_us, _, module = match.groups()
        if module == "app":
            total = int(cumulative_us) / 1000
            continue
        top = module.split(".")[0]
        packages[top] = packages.get(top, 0.0) + int(self_us) / 1000
    return total, packages


def import_ms(name: str, runs: int) -> dict[str, Any]:
    """``python -X importtime`` of the handler module, with and without bytecode caches.

    Without caches is what a layer built with ``--no-compile`` costs in Lambda, where
    ``/opt`` is read-only and nothing gets cached between cold starts.
    """
    env = _import_env(name)
    totals, uncached = [], []
    per_package: dict[str, list[float]] = {}
    for _ in range(runs):
        total, packages = _importtime(name, env)
        totals.append(total)
        for top, ms in packages.items():
            per_package.setdefault(top, []).append(ms)
        with tempfile.TemporaryDirectory(prefix="bench-pycache-") as empty:
            fresh = {**env, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
            uncached.append(_importtime(name, fresh)[0])
    largest = sorted(
        ((top, statistics.median(ms)) for top, ms in per_package.items()),
        key=lambda item: -item[1],
    )[:8]
    progress(f"import {name}: {statistics.median(totals):.0f} ms")
    return {
        "import_ms": Spread.of(totals).as_dict(),
        "import_uncached_ms": Spread.of(uncached).as_dict(),
        "largest_importers_ms": {top: round(ms, 1) for top, ms in largest},
    }


def layer_mb(architecture: str = "arm64") -> dict[str, Any]:
    """Size of the layer as ``make build`` builds it, built afresh into a temporary directory."""
    sam = ROOT / ".cache" / "sam-venv" / "bin" / "sam"
    env = {
        **os.environ,
        "LAYER_ARCHITECTURE": architecture,
        "PIP": f"{sys.executable} -m pip",
        "PIP_CACHE_DIR": str(ROOT / ".cache" / "pip"),
        "SAM_CLI_TELEMETRY": "0",
    }
    progress(f"building the layer for {architecture} (sam build, as make build does)")
    with tempfile.TemporaryDirectory(prefix="bench-layer-") as build_dir:
        subprocess.run(
            [str(sam), "build", "PunkRecordsLayer", "--build-dir", build_dir,
             "--parameter-overrides", f"Architecture={architecture}"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        layer = Path(build_dir) / "PunkRecordsLayer"
        files = [p for p in layer.rglob("*") if p.is_file()]
        by_package: dict[str, int] = {}
        for path in files:
            parts = path.relative_to(layer / "python").parts
            top = re.split(r"[-.]", parts[0])[0] if len(parts) > 1 else "(files)"
            by_package[top] = by_package.get(top, 0) + path.stat().st_size
    largest = sorted(by_package.items(), key=lambda item: -item[1])[:8]
    return {
        "layer_mb": sum(by_package.values()) / 2**20,
        "architecture": architecture,
        "largest_mb": {top: round(b / 2**20, 1) for top, b in largest},
    }
