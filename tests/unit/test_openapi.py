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
    assert set(post["responses"]) == {"202", "400", "401", "413", "415", "500", "503"}
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "Retry-After" in post["responses"]["503"]["headers"]
    shapes = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [s["type"] for s in shapes] == ["object", "array", "object"]
    assert "$ref" not in json.dumps(post["requestBody"])
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
