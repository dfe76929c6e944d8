"""docs/openapi.json is generated from the ingest routes and must not drift from them."""

from __future__ import annotations

import json

from local.openapi import OPENAPI_PATH, render


def test_given_the_routes_when_the_openapi_document_is_rendered_then_the_committed_file_matches():
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `python -m local.openapi`"
    )


def test_given_the_openapi_document_then_it_describes_auth_statuses_and_the_request_body():
    document = json.loads(render())
    post = document["paths"]["/events"]["post"]
    assert post["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert set(post["responses"]) == {"202", "400", "401", "403", "413", "415", "500", "503"}
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "Retry-After" in post["responses"]["503"]["headers"]
    shapes = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [s["type"] for s in shapes] == ["object", "array", "object"]
    assert "$ref" not in json.dumps(post["requestBody"])
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "503"}


def test_given_the_openapi_document_then_every_route_of_the_template_is_described():
    document = json.loads(render())
    routes = {f"{m.upper()} {path}" for path, ops in document["paths"].items() for m in ops}
    assert routes == {
        "POST /events",
        "GET /health",
        "GET /events",
        "GET /events/{event_id}",
        "GET /dead-letters",
        "GET /memory",
        "GET /memory/{entry_id}",
    }


def test_given_the_read_routes_then_parameters_scopes_and_errors_are_described():
    paths = json.loads(render())["paths"]
    listing = paths["/events"]["get"]
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert listing["parameters"][0]["name"] == "workspace_id"
    assert parameters["workspace_id"]["required"] is True
    assert set(parameters) == {
        "workspace_id", "type", "satellite_id", "trace_id", "severity", "since", "until",
        "limit", "cursor",
    }  # fmt: skip
    assert parameters["type"]["schema"]["type"] == "array"
    assert parameters["type"]["explode"] is True
    assert parameters["limit"]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 500, "default": 100,
    }  # fmt: skip
    assert "null" not in json.dumps(listing["parameters"])
    assert set(listing["responses"]) == {"200", "400", "401", "403", "500", "503"}
    assert set(paths["/events/{event_id}"]["get"]["responses"]) == {
        "200", "400", "401", "403", "404", "500", "503",
    }  # fmt: skip
    letters = paths["/dead-letters"]["get"]
    assert {p["name"] for p in letters["parameters"]} == {"topic", "since", "limit", "cursor"}
    for route in (listing, letters, paths["/events/{event_id}"]["get"]):
        assert route["security"] == [{"bearerAuth": []}]
