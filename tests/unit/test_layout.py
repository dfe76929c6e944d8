"""The structure check (local/layout.py): the package's layers hold, and a crossing is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import layout


def package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "punk_records"
    root.mkdir()
    for name, source in files.items():
        (root / name).write_text(source, encoding="utf-8")
    return root


def test_given_the_package_as_committed_when_checked_then_no_import_crosses_a_layer():
    found = layout.modules()
    assert {m.name for m in found} >= {"ingest", "http_api", "bootstrap", "store", "ports"}
    assert layout.violations(found) == []
    assert layout.main(["--quiet"]) == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from punk_records.store import EventStore\n",
            "ingest (domain) imports punk_records.store",
        ),
        ("from punk_records import http_api\n", "ingest (domain) imports punk_records.http_api"),
        ("def f():\n    import punk_records.producer\n", "imports punk_records.producer"),
        ("from aws_lambda_powertools.event_handler import Response\n", "only the http layer"),
        ("from local.stack import Stack\n", "imports local.stack, which is not in the layer"),
    ],
)
def test_given_a_domain_module_importing_across_when_checked_then_it_is_named(
    tmp_path, source, expected
):
    root = package(tmp_path, {"ingest.py": source, "store.py": "", "http_api.py": ""})
    (problem,) = layout.violations(layout.modules(root))
    assert expected in problem


def test_given_a_module_without_a_layer_when_checked_then_it_must_be_assigned(tmp_path):
    root = package(tmp_path, {"newthing.py": "import json\n"})
    assert layout.violations(layout.modules(root)) == [
        "newthing: no layer; add it to local/layout.py LAYERS"
    ]


def test_given_the_http_module_when_it_imports_the_event_handler_then_that_is_allowed(tmp_path):
    root = package(
        tmp_path,
        {"http_api.py": "from aws_lambda_powertools.event_handler import Response\n"},
    )
    assert layout.violations(layout.modules(root)) == []
