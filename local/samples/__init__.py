"""Sample trigger events for every function, generated from real envelopes.

``python -m local.samples`` rewrites ``events/`` from the generators below; a unit test fails when
the committed files drift from what the generators produce. Generators are deterministic (fixed
UUIDs and timestamps) so the files only change when the contract does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from local import envelopes

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
# Each module exposes ``samples() -> dict[str, dict]``: file name -> event.
GENERATORS = (
    "local.samples.apigw",
    "local.samples.apigw_query",
    "local.samples.kafka",
    "local.samples.admin",
)


def fixed_id(namespace: uuid.UUID, name: str) -> str:
    """A fixed UUID per name, so regenerating the samples changes nothing."""
    return str(uuid.uuid5(namespace, name))


def envelope_dict(namespace: uuid.UUID, name: str, **overrides: Any) -> dict[str, Any]:
    """A valid envelope as a satellite sends it; its ids derive from ``name``."""
    fields: dict[str, Any] = {
        "ts": "2026-11-26T07:00:00+01:00",
        "satellite_id": "sat-scout-1",
        "confidence": 0.8,
        "payload": {"summary": f"sample finding {name}"},
        "event_id": fixed_id(namespace, f"event:{name}"),
        "trace_id": fixed_id(namespace, f"trace:{name}"),
        **overrides,
    }
    return envelopes.envelope_dict(**fields)


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
