"""Calling handlers in-process as Lambda would: load ``functions/<name>/app.py``, fake a context."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def load_function(name: str) -> ModuleType:
    """``functions/<name>/app.py`` under the module name ``<name>_app`` (every function has an
    ``app.py``, so they cannot share the plain name)."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_app", ROOT / "functions" / name / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lambda_context(function_name: str, request_id: str = "c0ffee00-0000-4000-8000-000000000001"):
    """The attributes of a Lambda context object that Powertools reads."""
    return SimpleNamespace(
        function_name=function_name,
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}",
        aws_request_id=request_id,
    )


def sample_event(file_name: str) -> dict[str, Any]:
    """One of the committed sample events in ``events/``."""
    return json.loads((EVENTS / file_name).read_text(encoding="utf-8"))
