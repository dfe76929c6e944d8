"""Redaction: every detector, the look-alikes that must survive, key names, idempotence."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from punk_records.redaction import REDACTED_PREFIX, redact, redact_if_needed, redact_payload

# Fake credentials, assembled so that the repository holds nothing a secret scanner would flag.
AWS_KEY_ID = "AKIA" + "Q4MZ7RT2XW5NB8KD"
AWS_TEMP_KEY_ID = "ASIA" + "Q3EGT5KNLWHXRZ2P"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCY4q8Lm2Wz7T"
GITHUB_BODY = "k3Lm9QzR7vT2pX8wN5bY" + "4cH6jD1fG0sA2eU9"
JWT = (
    ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in ({"alg": "HS256", "typ": "JWT"}, {"sub": "agent-7", "iat": 1700000000})
    )
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEowIBAAKCAQEA" + "7bq98Jr2uvZtNZ3T\nq4VtFq1XNSX1c4P0"
BASIC = base64.b64encode(b"deploy:hunter2-long").decode()
FINE_GRAINED_TAIL = "pX8wN5bY4cH6jD1fG0sA2eU9" + "Lq7Rz3Vt8Kw2Mn5Bx4Jc9Gh1Fd6Sa0Pe3Uy7Io2Tk"
SLACK_HOOK_PATH = "T04QZ8M1K/B05RJ7N2P/" + "aK9mZ3xQ7vL2pR8tW4nY6cHd"


def pem(label: str, *, truncated: bool = False) -> str:
    block = f"-----BEGIN {label}-----\n{PEM_BODY}"
    return block if truncated else f"{block}\n-----END {label}-----"


def all_text(value: Any) -> str:
    """Every string in a JSON-like value (keys included), one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(f"{all_text(key)}\n{all_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "\n".join(all_text(item) for item in value)
    return ""


# (text holding a secret, the secret part that must disappear, the marker kind that replaces it)
SECRETS = [
    pytest.param(f"key id {AWS_KEY_ID} used", AWS_KEY_ID, "aws_access_key_id", id="aws-key-id"),
    pytest.param(
        f"temp {AWS_TEMP_KEY_ID} used", AWS_TEMP_KEY_ID, "aws_access_key_id", id="aws-temp-key-id"
    ),
    pytest.param(
        f"aws_secret_access_key = {AWS_SECRET}",
        AWS_SECRET,
        "aws_secret_access_key",
        id="aws-secret-ini",
    ),
    pytest.param(
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        AWS_SECRET,
        "aws_secret_access_key",
        id="aws-secret-env",
    ),
    pytest.param(
        f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
        AWS_SECRET,
        "aws_secret_access_key",
        id="aws-secret-json-text",
    ),
    pytest.param(
        f"deploy,{AWS_KEY_ID},{AWS_SECRET}", AWS_SECRET, "aws_secret_access_key", id="aws-csv-pair"
    ),
    pytest.param(pem("RSA PRIVATE KEY"), PEM_BODY, "private_key", id="pem-rsa"),
    pytest.param(pem("PRIVATE KEY"), PEM_BODY, "private_key", id="pem-pkcs8"),
    pytest.param(pem("EC PRIVATE KEY"), PEM_BODY, "private_key", id="pem-ec"),
    pytest.param(pem("OPENSSH PRIVATE KEY"), PEM_BODY, "private_key", id="pem-openssh"),
    pytest.param(pem("ENCRYPTED PRIVATE KEY"), PEM_BODY, "private_key", id="pem-encrypted"),
    pytest.param(pem("PGP PRIVATE KEY BLOCK"), PEM_BODY, "private_key", id="pem-pgp"),
    pytest.param(
        pem("RSA PRIVATE KEY", truncated=True), PEM_BODY, "private_key", id="pem-truncated"
    ),
    pytest.param(f"session {JWT} expired", JWT, "jwt", id="jwt"),
    pytest.param(
        "Authorization: Bearer " + "opaque-Token_1234.abcd~efgh",
        "opaque-Token_1234.abcd~efgh",
        "bearer_token",
        id="bearer-opaque",
    ),
    pytest.param(
        "authorization: bearer " + "Ab9xKq2Lm7Zt4Wn8Rv3Yp6Hs",
        "Ab9xKq2Lm7Zt4Wn8Rv3Yp6Hs",
        "bearer_token",
        id="bearer-lowercase",
    ),
    pytest.param(
        f'curl -H "Authorization: Basic {BASIC}" https://api.example.com',
        BASIC,
        "basic_auth",
        id="basic",
    ),
    *[
        pytest.param(f"token {prefix}_{GITHUB_BODY} leaked", GITHUB_BODY, "github_token", id=prefix)
        for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")
    ],
    pytest.param(
        "github_pat_" + "11ABCDEFG0" + "k3Lm9QzR7vT2" + "_" + FINE_GRAINED_TAIL,
        FINE_GRAINED_TAIL,
        "github_token",
        id="github-fine-grained",
    ),
    pytest.param(
        "glpat-" + "Zq8vLm3TnR7wXp2Kc9Hd", "Zq8vLm3TnR7wXp2Kc9Hd", "gitlab_token", id="gitlab"
    ),
    *[
        pytest.param(
            f"xox{kind}-" + "1234567890-" + "AbCdEfGhIjKlMnOp",
            "1234567890-AbCdEfGhIjKlMnOp",
            "slack_token",
            id=f"slack-xox{kind}",
        )
        for kind in "bpars"
    ],
    pytest.param(
        "https://hooks.slack.com/services/" + SLACK_HOOK_PATH,
        SLACK_HOOK_PATH,
        "slack_webhook",
        id="slack-webhook",
    ),
    *[
        pytest.param(
            f"{prefix}" + "4eC39HqLyjWDarjtT1zdp7dc",
            "4eC39HqLyjWDarjtT1zdp7dc",
            "stripe_key",
            id=f"stripe-{prefix.rstrip('_')}",
        )
        for prefix in ("sk_live_", "sk_test_", "rk_live_", "rk_test_")
    ],
    pytest.param(
        "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "stripe_webhook_secret",
        id="stripe-webhook-secret",
    ),
    pytest.param(
        "maps key AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "google_api_key",
        id="google-api-key",
    ),
    pytest.param(
        "OPENAI key sk-proj-" + "T3BlbkFJ" + "a1B2c3D4e5F6g7H8",
        "T3BlbkFJa1B2c3D4e5F6g7H8",
        "openai_api_key",
        id="openai",
    ),
    pytest.param(
        "sk-ant-api03-" + "Qm9n" * 6,
        "Qm9n" * 6,
        "anthropic_api_key",
        id="anthropic",
    ),
    pytest.param(
        "postgres://app:" + "s3cr3t-Pa55" + "@db.internal:5432/app",
        "s3cr3t-Pa55",
        "password",
        id="url-postgres",
    ),
    pytest.param(
        "mongodb+srv://admin:" + "Mongo!Pass" + "@cluster0.example.net/test",
        "Mongo!Pass",
        "password",
        id="url-mongodb-srv",
    ),
    pytest.param(
        "redis://:" + "r3dis-pw" + "@cache:6379/0", "r3dis-pw", "password", id="url-no-user"
    ),
    pytest.param(
        "clone https://deploy:" + "p@ss:word" + "@git.example.com/repo.git",
        "p@ss:word",
        "password",
        id="url-password-with-at-and-colon",
    ),
    pytest.param(
        "host=db user=app password=" + "Lib-pq-pw" + " dbname=app",
        "Lib-pq-pw",
        "password",
        id="libpq-keyword",
    ),
    pytest.param(
        "host=db password='" + "two words" + "' dbname=app",
        "two words",
        "password",
        id="libpq-quoted",
    ),
    pytest.param(
        "Server=tcp:db;User Id=app;Password=" + "Ado.Net-pw" + ";Encrypt=True",
        "Ado.Net-pw",
        "password",
        id="ado-password",
    ),
    pytest.param(
        "Driver={ODBC};Uid=app;Pwd=" + "Odbc-pw" + ";", "Odbc-pw", "password", id="odbc-pwd"
    ),
    pytest.param("password: " + "hunter2", "hunter2", "password", id="yaml-password"),
    pytest.param(
        'config = {"client_secret": "' + "cs-98765" + '"}', "cs-98765", "secret", id="json-secret"
    ),
    pytest.param(
        r"{\"api_key\": \"" + "escaped-key-1" + r"\"}", "escaped-key-1", "secret", id="escaped-json"
    ),
    pytest.param("X-Api-Key: " + "k-12345", "k-12345", "secret", id="header-api-key"),
    pytest.param(
        "https://example.com/reset?token=" + "rst-8841" + "&lang=en",
        "rst-8841",
        "secret",
        id="url-query-token",
    ),
    pytest.param(
        "Authorization: token " + "opaque1234", "opaque1234", "secret", id="authorization-token"
    ),
    pytest.param("DB_PWD=" + "p4ss", "p4ss", "password", id="env-pwd-suffix"),
    pytest.param(
        "GITHUB_TOKEN=ghp_" + GITHUB_BODY, GITHUB_BODY, "github_token", id="label-with-known-kind"
    ),
]

# Where a secret can sit: alone, inside text, deep in a structure, as a dict key.
CONTEXTS: list[Any] = [
    pytest.param(lambda text: text, id="alone"),
    pytest.param(lambda text: f"The agent ran:\n{text}\nthen stopped.", id="in-text"),
    pytest.param(lambda text: {"steps": [{"output": text, "n": 1}]}, id="nested"),
    pytest.param(lambda text: {"by_command": {text: "ok"}}, id="dict-key"),
]

# Ordinary values that look a little like secrets and must come back unchanged.
LOOKALIKES = [
    pytest.param("6f1c1c4e-8d3b-4f6e-9a39-0c5f2b7e8d11", id="uuid"),
    pytest.param("9fceb02d0ae598e95dc970b74767f19372d61af8", id="git-sha"),
    pytest.param("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 by ada", id="git-sha-in-text"),
    pytest.param(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="sha256"
    ),
    pytest.param("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-is-not-labelled", id="bare-40-chars"),
    pytest.param("SGVsbG8sIHdvcmxkISBUaGlzIGlzIGp1c3QgcHJvc2Uu", id="base64-prose"),
    pytest.param("ada.lovelace@example.com", id="email"),
    pytest.param("https://github.com/acme/punk-records/pull/42?tab=files#diff", id="url"),
    pytest.param("https://ada@example.com/path", id="url-user-no-password"),
    pytest.param("http://localhost:8080/health", id="url-port"),
    pytest.param("ssh://git@github.com:22/acme/repo.git", id="ssh-url"),
    pytest.param("2026-11-26T06:00:00.123+02:00", id="iso-timestamp"),
    pytest.param("12:30:45", id="clock-time"),
    pytest.param("1234567890123456789012345678901234567890", id="long-number"),
    pytest.param("Reset your password at https://example.com/account", id="prose-password"),
    pytest.param("Forgot password: click the link below", id="prose-password-colon"),
    pytest.param("The token expired, so the agent requested a new token.", id="prose-token"),
    pytest.param("Bearer authentication is described in RFC 6750.", id="prose-bearer"),
    pytest.param("Basic authentication sends credentials in a header.", id="prose-basic"),
    pytest.param("the bearer of this letter", id="prose-bearer-lowercase"),
    pytest.param("Use the API key from the vault; never paste the secret.", id="prose-key"),
    pytest.param("max_tokens: 4096, token_count=12, input_tokens=900", id="token-counters"),
    pytest.param("password_policy: strict", id="password-policy"),
    pytest.param("secret_santa_count: 3", id="secret-santa"),
    pytest.param("monkey=3 keyboard=us primary_key_column=id", id="key-words"),
    pytest.param("token: null, password = None", id="null-values"),
    pytest.param("password=[REDACTED:password]", id="already-redacted"),
    pytest.param("pip install scikit-learn; sk-learn-style-naming-is-fine", id="sk-words"),
    pytest.param("ASIA and AKIA are prefixes; AKIA123 is too short", id="aws-prefixes"),
    pytest.param("if token == expected: return", id="code-comparison"),
    pytest.param("", id="empty"),
    pytest.param(
        {
            "max_tokens": 4096,
            "token_count": 12,
            "input_tokens": 900,
            "tokens_used": 7,
            "tokens": 5,
            "keyboard": "qwerty",
            "monkey": "george",
            "primary_key_column": "id",
            "secret_santa_count": 3,
            "secret_name": "prod/db",
            "password_policy": "strict",
            "author": "ada",
            "oauth_provider": "github",
            "key": "value",
        },
        id="innocent-key-names",
    ),
    pytest.param(
        {"password": None, "secret": "", "token": [], "apiKey": {}, "is_secret": True},
        id="secret-names-with-nothing-to-hide",
    ),
    pytest.param([1, 2.5, True, None, "plain"], id="scalars"),
]


@pytest.mark.parametrize("wrap", CONTEXTS)
@pytest.mark.parametrize(("text", "secret", "kind"), SECRETS)
def test_given_secret_when_redacted_then_it_is_gone_and_marked(
    text: str, secret: str, kind: str, wrap: Callable[[str], Any]
):
    # GIVEN a secret somewhere in a value
    value = wrap(text)
    # WHEN it is redacted
    result = all_text(redact(value))
    # THEN the secret is gone and a marker names its kind
    assert secret not in result
    assert f"{REDACTED_PREFIX}{kind}]" in result


@pytest.mark.parametrize("value", LOOKALIKES)
def test_given_lookalike_when_redacted_then_unchanged(value: Any):
    assert redact(value) == value
    assert redact({"wrapped": [value]}) == {"wrapped": [value]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "postgres://app:s3cret@db.internal:5432/app?sslmode=require",
            "postgres://app:[REDACTED:password]@db.internal:5432/app?sslmode=require",
            id="url-keeps-user-and-host",
        ),
        pytest.param(
            "https://ghp_" + GITHUB_BODY + ":x-oauth-basic@github.com/acme/repo",
            "https://[REDACTED:github_token]:[REDACTED:password]@github.com/acme/repo",
            id="url-user-is-a-token",
        ),
        pytest.param(
            "Authorization: Bearer " + JWT,
            "Authorization: Bearer [REDACTED:jwt]",
            id="bearer-keeps-scheme",
        ),
        pytest.param(
            "Authorization: Basic " + BASIC,
            "Authorization: Basic [REDACTED:basic_auth]",
            id="basic-keeps-scheme",
        ),
        pytest.param(
            "Authorization: Bearer abc",
            "Authorization: Bearer [REDACTED:bearer_token]",
            id="authorization-label-short-token",
        ),
        pytest.param(
            '{"Authorization": "Bearer abc"}',
            '{"Authorization": "Bearer [REDACTED:bearer_token]"}',
            id="quoted-authorization-keeps-scheme",
        ),
        pytest.param(
            '{"Authorization": "Bearer ' + JWT + '"}',
            '{"Authorization": "Bearer [REDACTED:jwt]"}',
            id="quoted-authorization-with-jwt",
        ),
        pytest.param(
            "Authorization=Bearer " + JWT,
            "Authorization=Bearer [REDACTED:jwt]",
            id="assigned-authorization-with-jwt",
        ),
        pytest.param(
            "Server=db;User Id=app;Password=pw1;Encrypt=True",
            "Server=db;User Id=app;Password=[REDACTED:password];Encrypt=True",
            id="ado-keeps-other-fields",
        ),
        pytest.param(
            "before\n" + pem("RSA PRIVATE KEY") + "\nafter",
            "before\n[REDACTED:private_key]\nafter",
            id="pem-keeps-surroundings",
        ),
        pytest.param(
            f"{AWS_KEY_ID} {AWS_SECRET}",
            "[REDACTED:aws_access_key_id] [REDACTED:aws_secret_access_key]",
            id="aws-pair",
        ),
        pytest.param(
            "https://hooks.slack.com/services/" + SLACK_HOOK_PATH,
            "https://hooks.slack.com/services/[REDACTED:slack_webhook]",
            id="slack-webhook-keeps-host",
        ),
        pytest.param(
            "password: hunter2, user: ada",
            "password: [REDACTED:password], user: ada",
            id="colon-field-in-list",
        ),
        pytest.param(
            "password: hunter2 | user: ada",
            "password: [REDACTED:password] | user: ada",
            id="colon-field-in-table",
        ),
        pytest.param("password=>hunter2", "password=>[REDACTED:password]", id="arrow"),
        pytest.param(
            "private_key=" + pem("RSA PRIVATE KEY"),
            "private_key=[REDACTED:private_key]",
            id="named-private-key-block",
        ),
        pytest.param(
            "Basic Bearer " + "abc.def-123",
            "Basic Bearer [REDACTED:bearer_token]",
            id="rejected-match-hides-nothing",
        ),
        pytest.param(
            pem("RSA PRIVATE KEY") + "ghp_" + GITHUB_BODY,
            "[REDACTED:private_key][REDACTED:github_token]",
            id="token-glued-to-key-block",
        ),
    ],
)
def test_given_secret_in_context_when_redacted_then_context_is_kept(text: str, expected: str):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param({"password": "hunter2"}, {"password": "[REDACTED:password]"}, id="password"),
        pytest.param({"DB_PASSWORD": 1234}, {"DB_PASSWORD": "[REDACTED:password]"}, id="number"),
        pytest.param({"passwd": "v4Lu3-s3cr3t"}, {"passwd": "[REDACTED:password]"}, id="passwd"),
        pytest.param({"pwd": "v4Lu3-s3cr3t"}, {"pwd": "[REDACTED:password]"}, id="pwd"),
        pytest.param(
            {"passphrase": "v4Lu3-s3cr3t"}, {"passphrase": "[REDACTED:password]"}, id="passphrase"
        ),
        pytest.param(
            {"clientSecret": "v4Lu3-s3cr3t"}, {"clientSecret": "[REDACTED:secret]"}, id="camel"
        ),
        pytest.param(
            {"X-Api-Key": "v4Lu3-s3cr3t"}, {"X-Api-Key": "[REDACTED:secret]"}, id="header-name"
        ),
        pytest.param({"api keys": ["a", "b"]}, {"api keys": "[REDACTED:secret]"}, id="plural"),
        pytest.param(
            {"access_token": "v4Lu3-s3cr3t"}, {"access_token": "[REDACTED:secret]"}, id="token"
        ),
        pytest.param(
            {"refreshToken": "v4Lu3-s3cr3t"}, {"refreshToken": "[REDACTED:secret]"}, id="refresh"
        ),
        pytest.param(
            {"id_token": "v4Lu3-s3cr3t"}, {"id_token": "[REDACTED:secret]"}, id="id-token"
        ),
        pytest.param(
            {"aws_session_token": "v4Lu3-s3cr3t"},
            {"aws_session_token": "[REDACTED:secret]"},
            id="session",
        ),
        pytest.param({"auth": ["u", "p"]}, {"auth": "[REDACTED:secret]"}, id="auth-list"),
        pytest.param(
            {"Authorization": "v4Lu3-s3cr3t"}, {"Authorization": "[REDACTED:secret]"}, id="authz"
        ),
        pytest.param(
            {"private_key": "v4Lu3-s3cr3t"}, {"private_key": "[REDACTED:private_key]"}, id="private"
        ),
        pytest.param(
            {"signing_key": "v4Lu3-s3cr3t"}, {"signing_key": "[REDACTED:secret]"}, id="signing"
        ),
        pytest.param(
            {"Set-Cookie": "v4Lu3-s3cr3t"}, {"Set-Cookie": "[REDACTED:secret]"}, id="cookie"
        ),
        pytest.param({"credentials": [1]}, {"credentials": "[REDACTED:secret]"}, id="credentials"),
        pytest.param(
            {"aws_secret_access_key": "v4Lu3-s3cr3t"},
            {"aws_secret_access_key": "[REDACTED:aws_secret_access_key]"},
            id="aws-secret-name",
        ),
        pytest.param({"token": JWT}, {"token": "[REDACTED:jwt]"}, id="value-kind-wins"),
        pytest.param(
            {"config": {"db": {"password": 0.5}}},
            {"config": {"db": {"password": "[REDACTED:password]"}}},
            id="deep",
        ),
    ],
)
def test_given_secret_named_key_when_redacted_then_whole_value_is_marked(
    payload: dict[str, Any], expected: dict[str, Any]
):
    assert redact_payload(payload) == expected


def test_given_tokens_as_keys_when_redacted_then_keys_are_marked_and_kept_apart():
    # GIVEN two different tokens used as keys, next to a key that already looks redacted
    first, second = "ghp_" + GITHUB_BODY, "ghp_" + GITHUB_BODY[::-1]
    payload = {first: 1, "[REDACTED:github_token]#2": "x", second: 2}
    # WHEN redacted
    result = redact_payload(payload)
    # THEN every entry survives under a distinct, deterministic key
    assert result == {
        "[REDACTED:github_token]": 1,
        "[REDACTED:github_token]#2": "x",
        "[REDACTED:github_token]#3": 2,
    }
    assert redact_payload(result) == result


def test_given_marker_in_key_when_redacted_then_key_name_rule_ignores_the_marker():
    # "[REDACTED:github_token]" spells "...token"; the value under it is not a secret by name
    assert redact({"ghp_" + GITHUB_BODY: "visible"}) == {"[REDACTED:github_token]": "visible"}


def test_given_truncated_private_key_before_other_fields_when_redacted_then_all_are_scanned():
    payload = {
        "a": pem("RSA PRIVATE KEY", truncated=True),
        "b": "-----END RSA PRIVATE KEY-----",
        "c": "token ghp_" + GITHUB_BODY,
    }
    assert redact_payload(payload) == {
        "a": "[REDACTED:private_key]",
        "b": "-----END RSA PRIVATE KEY-----",
        "c": "token [REDACTED:github_token]",
    }


def test_given_secret_parts_split_over_fields_when_redacted_then_fields_are_not_joined():
    payload = {"a": "password", "b": "= hunter2", "c": "postgres://u", "d": ":pw@host"}
    assert redact_payload(payload) == payload


# Glued combinations found by fuzzing, where one marker changes what its neighbour looks like.
GLUED = [
    pem("EC PRIVATE KEY") + "sk-ant-api03-" + "Qm9n" * 6,
    "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY" + pem("PRIVATE KEY"),
    pem("EC PRIVATE KEY") + "Bearer Bearer /clone https://deploy:pw@git.example.com/r.git",
    f"https://u:-deploy,{AWS_KEY_ID},{AWS_SECRET}@h",
    "password=>the bearer of this letter",
    "DB_PWD=p4ss:Basic Bearer sha256:e3b0c44298fc1c149afbf4c8996fb92427",
    f"{AWS_KEY_ID}{AWS_KEY_ID}{AWS_KEY_ID} and {AWS_KEY_ID}",
    "password: abc" + pem("PRIVATE KEY"),
]


def corpus() -> list[Any]:
    """Every test value, one parameter each, plus all secrets at once as values and as keys."""
    texts = [param.values[0] for param in SECRETS]
    return [
        *[pytest.param(param.values[0], id=f"secret-{param.id}") for param in SECRETS],
        *[pytest.param(param.values[0], id=f"lookalike-{param.id}") for param in LOOKALIKES],
        *[pytest.param(text, id=f"glued-{number}") for number, text in enumerate(GLUED)],
        pytest.param(
            {"all": texts, "by_key": {text: text for text in texts}, "glued": GLUED},
            id="everything-nested",
        ),
    ]


@pytest.mark.parametrize("value", corpus())
def test_given_any_value_when_redacted_twice_then_second_pass_changes_nothing(value: Any):
    once = redact(value)
    assert redact(once) == once


def test_given_same_input_when_redacted_repeatedly_then_same_output():
    value = [param.values[0] for param in corpus()]
    results = [redact(copy.deepcopy(value)) for _ in range(3)]
    assert results[0] == results[1] == results[2]


def test_given_input_when_redacted_then_input_is_not_mutated_and_result_is_a_copy():
    value = {"nested": {"password": "hunter2", "list": [f"use ghp_{GITHUB_BODY}", {"k": "v"}]}}
    before = copy.deepcopy(value)
    result = redact_payload(value)
    assert value == before
    assert result["nested"] is not value["nested"]
    assert result["nested"]["list"][1] is not value["nested"]["list"][1]


@pytest.mark.parametrize(
    "unit",
    ["password:", "pwd:a ", "Authorization: Bearer ", "Bearer Bearer ", "://a:", "eyJa.", "="],
)
def test_given_hostile_repetition_when_redacted_then_time_stays_linear(unit: str):
    # GIVEN a 256 KiB string built to make a backtracking pattern go quadratic
    text = unit * (256 * 1024 // len(unit)) + " x"
    started = time.perf_counter()
    # WHEN redacted
    redact(text)
    # THEN it takes milliseconds, not minutes (quadratic patterns took over 100 s here)
    assert time.perf_counter() - started < 2.0


# ------------------------------------------------------------- redact_if_needed (the hot path)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"summary": "disk usage above 90%", "tags": ["prod"], "n": 3}, id="clean"),
        pytest.param(
            {"max_tokens": 512, "primary_key": "id", "note": "Bearer auth"}, id="look-alikes"
        ),
        pytest.param({}, id="empty"),
    ],
)
def test_given_nothing_to_redact_when_checked_then_none_and_no_copy(payload):
    assert redact(payload) == payload
    assert redact_if_needed(payload) is None


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"note": f"token {JWT} leaked"}, id="jwt-in-text"),
        pytest.param({"headers": {"Authorization": f"Basic {BASIC}"}}, id="basic-in-a-secret-key"),
        pytest.param({"log": f"curl -H 'authorization: BASIC {BASIC}'"}, id="upper-case-scheme"),
        # Not ASCII: (?i:) also matches the long s, which str.lower() leaves alone.
        pytest.param({"log": f"Authorization: BA\u017fIC {BASIC}"}, id="long-s-scheme"),
        pytest.param({"db_password": "hunter2"}, id="secret-named-key"),
        pytest.param({"nested": [{"x": AWS_KEY_ID}]}, id="nested-aws-key-id"),
        pytest.param({"password": "[REDACTED:password]"}, id="already-redacted"),
        # Secret-named keys are enough for a copy, even when they hold nothing to hide.
        pytest.param({"password": None, "token": "", "secret": False}, id="secret-names-no-data"),
    ],
)
def test_given_a_secret_when_checked_then_the_same_as_redact(payload):
    result = redact_if_needed(payload)
    assert result is not None
    assert result == redact(payload)
    assert result is not payload


# ------------------------------------------------------- large values and the JSON prefilter


def _spaced(value: Any, space: str) -> Any:
    """``value`` with every space in its strings (keys included) written as ``space``."""
    if isinstance(value, str):
        return value.replace(" ", space)
    if isinstance(value, dict):
        return {_spaced(key, space): _spaced(item, space) for key, item in value.items()}
    if isinstance(value, list):
        return [_spaced(item, space) for item in value]
    return value


def test_given_line_breaks_in_strings_when_json_scans_clean_then_nothing_to_redact():
    # redact_if_needed trusts one scan of the value's JSON, where a line break or a tab is an
    # escape; the scan reads those as themselves and must still miss nothing the walk finds.
    from pydantic_core import to_json

    from bench.common import event_dicts
    from bench.redaction_corpus import corpus as repository_corpus
    from punk_records.redaction import payload_json_clean

    secrets, clean = repository_corpus()
    payloads = [case.payload for case in [*secrets, *clean]]
    payloads += [event["payload"] for event in event_dicts(500, seed=5)]
    skipped = 0
    for payload in payloads:
        for space in ("\n", "\t", "\r\n", " \n\t"):
            variant = _spaced(payload, space)
            if payload_json_clean(to_json(variant)):
                skipped += 1
                assert redact(variant) == variant, variant
    assert skipped > 1_000  # most clean payloads with line breaks skip the walk


def _padding(count: int) -> list[dict[str, Any]]:
    return [{"a": {"b": {"n": index, "tag": "ok"}}} for index in range(count)]


def test_given_a_large_list_with_a_few_secrets_when_checked_then_the_same_as_redact():
    items: list[Any] = _padding(3_000)
    items[1_500] = {"db_password": "hunter2-x9Q"}
    items[2_500] = f"use ghp_{GITHUB_BODY}"
    items[2_800] = {"name": "DB_PASSWORD", "value": "s3cr3t-Value-9"}
    items[2_999] = [AWS_KEY_ID]
    payload = {"items": items, "note": "deploy done"}
    before = copy.deepcopy(payload)

    result = redact_if_needed(payload)

    assert payload == before
    assert result == redact(payload)
    assert result["items"][1_500] == {"db_password": "[REDACTED:password]"}
    assert result["items"][2_800]["value"] == "[REDACTED:password]"
    assert GITHUB_BODY not in json.dumps(result)
    assert AWS_KEY_ID not in json.dumps(result)
    assert result["items"][:1_500] == before["items"][:1_500]
    assert redact_if_needed(result) in (None, result)


def test_given_every_corpus_secret_beside_clean_fields_when_checked_then_the_same_as_redact():
    # redact_if_needed's shortcuts must change nothing for a secret among ordinary fields:
    # every family, in every context, comes out as redact() makes it.
    from bench.redaction_corpus import corpus as repository_corpus

    secrets, clean = repository_corpus()
    beside = {
        "summary": "rollback of the canary in eu-west-1 after the latency alert",
        "source": {"host": "db-3", "service": "api"},
        "tags": ["prod", "latency", "security"],
    }
    checked = 0
    for case in [*secrets, *clean]:
        payload = {**beside, **case.payload}
        result = redact_if_needed(payload)
        assert (payload if result is None else result) == redact(payload), case
        if case.secrets:
            assert result is not None, case
            checked += 1
    assert checked > 1_000


def test_given_a_name_value_pair_beside_other_fields_when_checked_then_the_value_is_redacted():
    payload = {"name": "DB_PASSWORD", "value": "s3cr3t-Value-9", "kind": "env", "note": "ok"}
    result = redact_if_needed(payload)
    assert result == redact(payload)
    assert result["value"] == "[REDACTED:password]"


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "unterminated"])
def test_given_a_pem_block_over_many_list_items_when_checked_then_every_line_is_redacted(
    closed: bool,
):
    # A block opened in one run of items goes on into the next runs, which alone scan clean.
    lines = [f"MIIEowIBAAKCAQEA{index:04d}" for index in range(100)]
    block = ["-----BEGIN RSA PRIVATE KEY-----", *lines]
    if closed:
        block.append("-----END RSA PRIVATE KEY-----")
    payload = {"key": ["note"] * 31 + block + ["after"] * 40, "pad": _padding(1_000)}

    result = redact_if_needed(payload)

    assert result == redact(payload)
    kept = result["key"]
    assert kept[:31] == ["note"] * 31
    assert kept[31 : 31 + len(block)] == ["[REDACTED:private_key]"] * len(block)
    assert not any(line in json.dumps(result) for line in lines)
    if closed:
        assert kept[31 + len(block) :] == ["after"] * 40


def test_given_ascii_text_when_no_placeholder_hint_occurs_then_the_pattern_finds_nothing():
    # _placeholder skips its (slow) pattern for ASCII text without any hint: every way the
    # pattern can match must show a hint, in any letter case and at any position.
    import random

    from bench.redaction_corpus import corpus as repository_corpus
    from punk_records.redaction import _PLACEHOLDER, _PLACEHOLDER_FIRST, _PLACEHOLDER_HINTS

    pieces = [
        "${", "{{", "$(", "%(", "<x>", "...", "$A", "%PATH%", "process.env", "os.environ",
        "getenv", "ENV[", "secrets.", "vars.", "env:", "(using ", "with ", "EXAMPLE", "your_api",
        "your-", "_here", "-here", "insert_", "replace-", "enter ", "put_", "paste-", "add ",
        "[REDACTED:", "xX*#", "***", "arn:", "op:", "vault:", "projects/p/secrets/", "!Ref ",
        "!Sub ", "!GetAtt ",
    ]  # fmt: skip
    rng = random.Random(10)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:+= "
    texts = []
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        piece = rng.choice(pieces)
        piece = "".join(c.upper() if rng.random() < 0.5 else c for c in piece)
        at = rng.randint(0, len(text))
        texts.append(text[:at] + piece + text[at:])
        texts.append(text)
    secrets, clean = repository_corpus()
    texts += [json.dumps(case.payload) for case in [*secrets, *clean]]
    matched = 0
    for text in filter(str.isascii, texts):
        if _PLACEHOLDER.search(text) is not None:
            matched += 1
            lower = text.lower()
            assert text[0] in _PLACEHOLDER_FIRST or any(h in lower for h in _PLACEHOLDER_HINTS)
    assert matched > 5_000
