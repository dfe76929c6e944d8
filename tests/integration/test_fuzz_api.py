"""schemathesis against the local stack, driven by the generated OpenAPI document.

Every route of docs/openapi.json (a unit test keeps it equal to what the routes generate), every
check but one, a bounded number of examples per route and a fixed seed, so a run is repeatable
and a failure can be replayed. The check left out, ``unsupported_method``, wants ``405`` for an
undeclared method; API Gateway HTTP APIs answer ``404 {"message":"Not Found"}`` (a test of the
local endpoint asserts exactly that). ``schemathesis.toml`` next to this file lists the few
answers the document cannot express.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local.stack import REPO_ROOT, Stack

pytestmark = pytest.mark.integration

OPENAPI = REPO_ROOT / "docs" / "openapi.json"
# Per-operation expectations the document cannot carry (opaque cursors, a path UUID).
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).parent / "st"
MAX_EXAMPLES = 40
SEED = 20261129


@pytest.fixture
def stack(local_stack: Stack) -> Stack:
    return local_stack


def test_given_the_openapi_document_when_fuzzed_then_no_5xx_and_every_response_as_documented(
    stack: Stack, tmp_path: Path
) -> None:
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", str(OPENAPI),
        "--url", stack.api_url,
        "--header", f"Authorization: Bearer {stack.token()}",
        "--checks", "all",
        "--exclude-checks", "unsupported_method",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--generation-allow-x00", "false",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--workers", "2",
        "--no-color",
        "--report", "junit",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip

    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False
    )

    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert "Operations:" in run.stdout
