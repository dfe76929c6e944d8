"""Write docs/openapi.json from the routes of every function behind the HTTP API:
``python -m local.openapi``.

Each function's document comes from Powertools' OpenAPI support
(``app.get_openapi_json_schema()``); they are merged into one, as API Gateway serves them under
one URL. A unit test fails when the committed file drifts from what this prints.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The functions behind the HTTP API, in the order their routes appear in the document.
FUNCTIONS = ("ingest", "query")
OPENAPI_PATH = REPO_ROOT / "docs" / "openapi.json"
INFO = {
    "title": "Punk Records API",
    "version": "1.0.0",
    "description": "Append-only event log for AI agents: write events (ingest function), read "
    "them back (query function). See docs/ingest.md, docs/query.md and docs/tokens.md.",
}


def load_app(name: str = "ingest") -> ModuleType:
    """Import functions/<name>/app.py by path (function folders are not packages)."""
    path = REPO_ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"{name}_app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One document with every path, component and tag of ``documents``; a path or component
    defined twice must be defined the same way."""
    merged: dict[str, Any] = {**documents[0], "info": INFO, "paths": {}, "components": {}}
    tags: dict[str, dict[str, Any]] = {}
    for document in documents:
        for path, operations in document.get("paths", {}).items():
            target = merged["paths"].setdefault(path, {})
            for method, operation in operations.items():
                if method in target:
                    raise ValueError(f"{method.upper()} {path} is served by two functions")
                target[method] = operation
        for section, items in document.get("components", {}).items():
            target = merged["components"].setdefault(section, {})
            for name, item in items.items():
                if target.setdefault(name, item) != item:
                    raise ValueError(f"components.{section}.{name} differs between functions")
        for tag in document.get("tags", []):
            tags.setdefault(tag["name"], tag)
    if tags:
        merged["tags"] = list(tags.values())
    return merged


def render() -> str:
    """The OpenAPI document as committed: indented JSON with a trailing newline."""
    documents = [json.loads(load_app(name).app.get_openapi_json_schema()) for name in FUNCTIONS]
    return json.dumps(merge(documents), indent=2) + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(OPENAPI_PATH.relative_to(REPO_ROOT), file=sys.stderr)
