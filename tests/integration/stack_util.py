"""The local stack for tests that need all of it: started and stopped through the `make up` CLI."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from local.stack import REPO_ROOT, Stack


def stack_cli(root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m local.stack --dir root ARGS`` (what ``make up``/``down``/``status`` run)."""
    return subprocess.run(
        [sys.executable, "-m", "local.stack", "--dir", str(root), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def running_stack(prefix: str) -> Iterator[Stack]:
    """A whole stack in its own temporary directory and free ports, down and deleted after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = stack_cli(root, "up", "--api-port", "0", "--fast-postgres")
        assert result.returncode == 0, f"up failed:\n{result.stdout}\n{result.stderr}"
        yield Stack(root)
    finally:
        stack_cli(root, "down")
        shutil.rmtree(root, ignore_errors=True)
