"""The SAM template as the local tools read it: CloudFormation short-form tags, each function's
settings (Globals merged, parameters resolved) and its ``--env-vars`` overrides.

One reader for the emulator, the HTTP endpoint, the event source mapping, the stack and the
tests, so they all see the same function.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128
DEFAULT_REGION = "us-east-1"
_PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "local",
    "AWS::URLSuffix": "amazonaws.com",
}


class TemplateError(RuntimeError):
    """The template lacks something a local tool needs, or holds what it cannot resolve."""


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation short-form tags (``!Ref X``) as their long form."""


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, short-form intrinsics turned into ``{"Ref": ...}`` etc."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (safe loader subclass)


@dataclass(frozen=True)
class FunctionSpec:
    """What the emulator needs to know about one ``AWS::Serverless::Function``."""

    logical_id: str
    code_dir: Path
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    layer_dirs: tuple[Path, ...] = field(default=())


def function_spec(
    logical_id: str,
    template_path: Path = TEMPLATE,
    parameter_overrides: Mapping[str, str] | None = None,
    region: str = DEFAULT_REGION,
) -> FunctionSpec:
    """Read ``logical_id`` from the template, Globals merged in, values resolved.

    Parameters resolve to their override or default. Raise TemplateError for an unknown
    function or a code location, handler, runtime, timeout or memory size it cannot resolve.
    """
    template = load_template(template_path)
    resources = template.get("Resources", {})
    resource = resources.get(logical_id)
    if not resource or resource.get("Type") != "AWS::Serverless::Function":
        functions = sorted(
            name
            for name, res in resources.items()
            if res.get("Type") == "AWS::Serverless::Function"
        )
        raise TemplateError(
            f"no function {logical_id!r} in {template_path}; functions: {functions}"
        )
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    props = resource.get("Properties") or {}
    resolver = _Resolver(template, parameter_overrides or {}, region)

    def prop(name: str, default: Any = None) -> Any:
        return props.get(name, globals_.get(name, default))

    variables = {
        **((globals_.get("Environment") or {}).get("Variables") or {}),
        **((props.get("Environment") or {}).get("Variables") or {}),
    }
    environment = {name: resolver.resolve_or_none(value) or "" for name, value in variables.items()}
    base = template_path.parent
    layer_dirs = tuple(
        base / resources[layer["Ref"]]["Properties"]["ContentUri"] / "python"
        for layer in prop("Layers", [])
        if isinstance(layer, dict)
        and resources.get(layer.get("Ref"), {}).get("Type") == "AWS::Serverless::LayerVersion"
    )
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=base / resolver.resolve(prop("CodeUri"), f"{logical_id} CodeUri"),
        handler=resolver.resolve(prop("Handler"), f"{logical_id} Handler"),
        runtime=resolver.resolve(prop("Runtime"), f"{logical_id} Runtime"),
        timeout_s=int(resolver.resolve(prop("Timeout", DEFAULT_TIMEOUT_S), "Timeout")),
        memory_mb=int(resolver.resolve(prop("MemorySize", DEFAULT_MEMORY_MB), "MemorySize")),
        environment=environment,
        layer_dirs=layer_dirs,
    )


class _Resolver:
    """Resolves what a function's settings may use locally: literals, Ref and a plain Sub.

    Like ``sam local invoke``, an environment value that cannot be resolved (a parameter with
    no default and no override, or another intrinsic) becomes an empty string; the other
    settings must resolve.
    """

    def __init__(
        self, template: Mapping[str, Any], overrides: Mapping[str, str], region: str
    ) -> None:
        self._values = {**_PSEUDO_PARAMETERS, "AWS::Region": region}
        for name, spec in (template.get("Parameters") or {}).items():
            if name in overrides:
                self._values[name] = str(overrides[name])
            elif "Default" in spec:
                default = spec["Default"]
                self._values[name] = ",".join(default) if isinstance(default, list) else default

    def resolve(self, value: Any, what: str) -> str:
        """``value`` as a string; raise TemplateError naming ``what`` if it cannot be resolved."""
        resolved = self.resolve_or_none(value)
        if resolved is None:
            raise TemplateError(f"{what}: cannot resolve {value!r} locally")
        return resolved

    def resolve_or_none(self, value: Any) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            found = self._values.get(value["Ref"])
            return None if found is None else str(found)
        if (
            isinstance(value, dict)
            and set(value) == {"Fn::Sub"}
            and isinstance(value["Fn::Sub"], str)
        ):
            names = re.findall(r"\$\{([^}!]+)\}", value["Fn::Sub"])
            if any(name not in self._values for name in names):
                return None
            return re.sub(
                r"\$\{([^}!]+)\}", lambda m: str(self._values[m.group(1)]), value["Fn::Sub"]
            )
        return None


def http_routes(template: Mapping[str, Any]) -> dict[str, str]:
    """API Gateway route keys (``GET /events/{event_id}``) of the template's HTTP API events,
    each with the logical id of the function that serves it."""
    routes: dict[str, str] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                props = event.get("Properties") or {}
                routes[f"{props['Method'].upper()} {props['Path']}"] = logical_id
    return routes


def load_env_vars(path: Path | None, spec: FunctionSpec) -> dict[str, str]:
    """Overrides for ``spec`` from a ``sam local invoke --env-vars`` file.

    As with SAM: ``Parameters`` applies to every function, the function's own block wins, and
    only variables the template declares for the function are taken.
    """
    if path is None:
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    shared = data.get("Parameters") or {}
    own = data.get(spec.logical_id) or {}
    # The shared block is meant for several functions, so only the function's own block warns.
    ignored = sorted(name for name in own if name not in spec.environment)
    if ignored:
        print(
            f"warning: {path}: {spec.logical_id} does not declare {', '.join(ignored)} in the "
            "template; ignored (as sam local invoke does)",
            file=sys.stderr,
        )
    merged = {**shared, **own}
    return {name: _env_value(value) for name, value in merged.items() if name in spec.environment}


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
