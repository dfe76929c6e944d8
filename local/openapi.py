"""Write docs/openapi.json from the ingest function's routes: ``python -m local.openapi``.

The document comes from Powertools' OpenAPI support (``app.get_openapi_json_schema()``); a unit
test fails when the committed file drifts from what this prints.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_PATH = REPO_ROOT / "functions" / "ingest" / "app.py"
OPENAPI_PATH = REPO_ROOT / "docs" / "openapi.json"


def load_app() -> ModuleType:
    """Import functions/ingest/app.py by path (function folders are not packages)."""
    spec = importlib.util.spec_from_file_location("ingest_app", APP_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {APP_PATH}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render() -> str:
    """The OpenAPI document as committed: indented JSON with a trailing newline."""
    return load_app().app.get_openapi_json_schema() + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(OPENAPI_PATH.relative_to(REPO_ROOT), file=sys.stderr)
