"""Sample trigger events for every function, generated from real envelopes.

``python -m local.samples`` rewrites ``events/`` from the generators below; a unit test fails when
the committed files drift from what the generators produce. Generators are deterministic (fixed
UUIDs and timestamps) so the files only change when the contract does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
# Each module exposes ``samples() -> dict[str, dict]``: file name -> event.
GENERATORS = ("local.samples.apigw", "local.samples.kafka")


def all_samples() -> dict[str, dict[str, Any]]:
    """Every sample event by file name."""
    found: dict[str, dict[str, Any]] = {}
    for name in GENERATORS:
        generate: Callable[[], dict[str, dict[str, Any]]] = import_module(name).samples
        found.update(generate())
    return found


def render(event: dict[str, Any]) -> str:
    """The committed text of one sample: indented JSON with a trailing newline."""
    return json.dumps(event, indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path = EVENTS_DIR) -> list[Path]:
    """Write every sample into ``directory``; return the paths written."""
    directory.mkdir(exist_ok=True)
    written = []
    for file_name, event in sorted(all_samples().items()):
        path = directory / file_name
        path.write_text(render(event), encoding="utf-8")
        written.append(path)
    return written
