"""Scoped tokens: both secret forms, API_TOKENS, lookup by digest, scopes, workspaces, the CLI."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

import punk_records.tokens
from punk_records.config import Settings
from punk_records.errors import ConfigurationError, MissingScope, WorkspaceForbidden
from punk_records.tokens import (
    Scope,
    TokenSource,
    new_token,
    parse_api_tokens,
    parse_token_set,
)


def no_secret(arn: str, max_age: int) -> dict:
    raise AssertionError(f"no secret should be read here ({arn})")


def entry(
    token: str,
    token_id: str = "ci",  # noqa: S107 (an id)
    workspaces=("ws-a",),
    scopes=("events:read",),
):
    return {
        "id": token_id,
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "workspaces": list(workspaces),
        "scopes": list(scopes),
    }


def test_given_entries_when_a_token_is_presented_then_its_entry_matches_by_digest():
    tokens = parse_token_set(
        {"tokens": [entry("alpha", "a"), entry("beta", "b", ["*"], ["events:write"])]}, "test"
    )
    assert tokens.match("alpha").id == "a"
    beta = tokens.match("beta")
    assert beta.id == "b"
    assert beta.may_use("any-workspace")
    assert beta.scopes == {Scope.EVENTS_WRITE}
    assert tokens.match("gamma") is None
    assert tokens.match("alph") is None


def test_given_the_plain_form_when_parsed_then_each_token_writes_everywhere_as_legacy():
    tokens = parse_token_set({"tokens": ["one", " two ", ""]}, "test")
    assert tokens.legacy_count == 2
    two = tokens.match("two")
    assert two.scopes == {Scope.EVENTS_WRITE}
    assert two.all_workspaces
    assert two.id.startswith("legacy-")
    assert "two" not in two.id


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("one,two", 2),  # today's comma-separated form
        (json.dumps({"tokens": ["one"]}), 1),
        (json.dumps({"tokens": [entry("one")]}), 1),
    ],
)
def test_given_api_tokens_in_each_accepted_form_when_parsed_then_tokens_match(value, ids):
    tokens = parse_api_tokens(value)
    assert len(tokens.tokens) == ids
    assert tokens.match("one") is not None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"tokens": []}, "holds no token"),
        ({"token": []}, 'expected {"tokens"'),
        ({"tokens": [entry("x") | {"sha256": "abc"}]}, "'sha256' must be 64"),
        ({"tokens": [entry("x") | {"scopes": ["event:write"]}]}, "unknown scope(s) event:write"),
        ({"tokens": [entry("x") | {"workspaces": []}]}, "'workspaces' must be a non-empty"),
        ({"tokens": [entry("x") | {"id": "has space"}]}, "'id' must be"),
        ({"tokens": [entry("x") | {"note": 1}]}, "unknown field(s) note"),
        ({"tokens": [entry("x"), entry("y")]}, "appears twice"),
        ({"tokens": [entry("x", "a"), entry("x", "b")]}, "repeats the sha256"),
        ({"tokens": [3]}, "expected an object or a string"),
    ],
)
def test_given_an_invalid_document_when_parsed_then_the_error_names_the_problem(document, message):
    with pytest.raises(ConfigurationError) as info:
        parse_token_set(document, "the secret")
    assert message in str(info.value)
    assert "the secret" in str(info.value)


def test_given_invalid_json_in_api_tokens_when_parsed_then_the_error_quotes_nothing():
    with pytest.raises(ConfigurationError) as info:
        parse_api_tokens('{"tokens": ["s3cr3t-value"')
    assert "s3cr3t" not in str(info.value)


def test_given_several_entries_when_one_matches_then_every_digest_is_still_compared(monkeypatch):
    tokens = parse_token_set({"tokens": [entry(f"t{i}", f"id{i}") for i in range(4)]}, "test")
    calls: list[bytes] = []
    real = punk_records.tokens.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    monkeypatch.setattr(punk_records.tokens.hmac, "compare_digest", spy)
    assert tokens.match("t0").id == "id0"
    # THEN four comparisons, each of the candidate's digest (hashed once), never the token
    assert calls == [hashlib.sha256(b"t0").digest()] * 4


def test_given_a_token_without_the_scope_when_required_then_missing_scope_names_it():
    token = parse_token_set({"tokens": [entry("t")]}, "test").match("t")
    token.require_scope(Scope.EVENTS_READ)
    with pytest.raises(MissingScope) as info:
        token.require_scope(Scope.DEAD_LETTERS_READ)
    assert "dead_letters:read" in str(info.value)
    assert info.value.status == 403


def test_given_a_mixed_batch_when_checked_then_every_offending_index_is_named():
    token = parse_token_set({"tokens": [entry("t", workspaces=["ws-a", "ws-c"])]}, "t").match("t")
    token.require_workspaces(["ws-a", "ws-c"], batch=True)
    with pytest.raises(WorkspaceForbidden) as info:
        token.require_workspaces(["ws-a", "ws-b", "ws-c", "ws-d"], batch=True)
    assert [e["loc"] for e in info.value.errors] == [[1, "workspace_id"], [3, "workspace_id"]]
    assert "items 1, 3" in str(info.value)
    assert "'ws-b', 'ws-d'" in str(info.value)


def test_given_a_single_event_outside_the_list_when_checked_then_loc_has_no_index():
    token = parse_token_set({"tokens": [entry("t")]}, "t").match("t")
    with pytest.raises(WorkspaceForbidden) as info:
        token.require_workspaces(["ws-b"], batch=False)
    assert info.value.errors[0]["loc"] == ["workspace_id"]


def test_given_a_token_source_when_read_twice_then_the_document_is_parsed_once(monkeypatch):
    document = {"tokens": [entry("t")]}
    reads: list[tuple[str, int]] = []

    def read(arn: str, max_age: int) -> dict:
        reads.append((arn, max_age))
        return document

    parsed: list[object] = []
    real = punk_records.tokens.parse_token_set
    monkeypatch.setattr(
        punk_records.tokens, "parse_token_set", lambda d, s: parsed.append(d) or real(d, s)
    )
    source = TokenSource(Settings(api_tokens_secret_arn="arn:secret", api_tokens_cache_s=30), read)
    assert source.current().match("t") is not None
    assert source.current().match("t") is not None
    assert reads == [("arn:secret", 30)] * 2
    assert len(parsed) == 1


def test_given_a_rotated_secret_when_read_then_the_new_set_applies():
    documents = [{"tokens": [entry("old", "old")]}, {"tokens": [entry("new", "new")]}]
    source = TokenSource(Settings(api_tokens_secret_arn="arn"), lambda _a, _m: documents[0])
    assert source.current().match("old") is not None
    documents[0] = {"tokens": [entry("old", "old"), entry("new", "new")]}
    assert source.current().match("new") is not None
    assert source.current().match("old") is not None


def test_given_plain_tokens_when_parsed_by_the_source_then_a_deprecation_warning_is_logged(
    caplog,
):
    caplog.set_level(logging.WARNING)
    source = TokenSource(Settings(api_tokens="plain-one"), no_secret)
    source.current()
    source.current()
    warnings = [r for r in caplog.records if r.getMessage() == "deprecated plain API tokens"]
    assert len(warnings) == 1
    assert "plain-one" not in caplog.text


def test_given_the_new_command_when_run_then_it_prints_a_token_and_its_matching_entry(capsys):
    code = punk_records.tokens._cli(
        ["new", "--id", "ci", "--workspace", "ws-a", "--scope", "events:read",
         "--scope", "events:write"]
    )  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].removeprefix("token: ")
    document = json.loads(lines[1].removeprefix("entry: "))
    assert token.startswith("prk_")
    assert len(token) > 40
    assert document == {
        "id": "ci",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "workspaces": ["ws-a"],
        "scopes": ["events:read", "events:write"],
    }
    # AND the printed entry authenticates the printed token
    assert parse_token_set({"tokens": [document]}, "t").match(token).id == "ci"


def test_given_two_new_tokens_when_made_then_they_differ():
    assert new_token("a", ["*"], ["admin"])[0] != new_token("a", ["*"], ["admin"])[0]


def test_given_a_bad_id_when_the_new_command_runs_then_it_fails_with_a_message(capsys):
    code = punk_records.tokens._cli(
        ["new", "--id", "no spaces", "--workspace", "ws-a", "--scope", "events:read"]
    )
    assert code == 2
    assert "'id' must be" in capsys.readouterr().err


def test_given_a_plain_token_on_stdin_when_hashed_then_the_entry_writes_everywhere(
    capsys, monkeypatch
):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("old-plain-token\n"))
    assert punk_records.tokens._cli(["hash", "--id", "legacy-ci"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sha256"] == hashlib.sha256(b"old-plain-token").hexdigest()
    assert document["workspaces"] == ["*"]
    assert document["scopes"] == ["events:write"]


def test_given_a_document_when_checked_then_each_entry_is_listed(capsys, tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [entry("a", "ci"), "plain"]}))
    assert punk_records.tokens._cli(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ci: workspaces ws-a; scopes events:read" in out
    assert "deprecated" in out
    assert "plain\n" not in out
