"""Bearer-token authentication: the header, token sources (env, Secrets Manager), rotation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from punk_records.auth import TokenSource, Unauthorized, authorize, bearer_token
from punk_records.aws_secrets import read_json_secret
from punk_records.config import Settings
from punk_records.errors import ConfigurationError, SecretUnavailable
from punk_records.tokens import Scope


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A mocked Secrets Manager (moto) and empty Powertools caches before and after."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    parameters.clear_caches()
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")
    parameters.clear_caches()


def settings(**values: object) -> TokenSource:
    """The token source of a container configured with ``values``."""
    return TokenSource(Settings.model_validate(values), read_json_secret)


def headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def entry(token: str, token_id: str, workspaces: list[str], scopes: list[str]) -> dict:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return {"id": token_id, "sha256": digest, "workspaces": workspaces, "scopes": scopes}


def test_given_api_tokens_with_blanks_when_read_then_each_trimmed_token_is_valid():
    source = settings(api_tokens=" one , two,, ")
    assert authorize(headers("one"), source).scopes == {Scope.EVENTS_WRITE}
    assert authorize(headers("two"), source).all_workspaces
    assert len(source.current().tokens) == 2


def test_given_scoped_entries_in_api_tokens_when_authorizing_then_the_entry_is_returned():
    source = settings(
        api_tokens=json.dumps({"tokens": [entry("t-1", "ci", ["ws-a"], ["events:read"])]})
    )
    token = authorize(headers("t-1"), source)
    assert token.id == "ci"
    assert token.workspaces == {"ws-a"}
    with pytest.raises(Unauthorized):
        authorize(headers("t-2"), source)


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_given_no_token_configured_when_authorizing_then_configuration_error(value):
    with pytest.raises(ConfigurationError):
        authorize(headers("any"), settings(api_tokens=value))


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("abc", None),
    ],
)
def test_given_an_authorization_header_when_parsed_then_only_bearer_tokens_count(header, token):
    assert bearer_token({"Authorization": header}) == token


@pytest.mark.parametrize("candidate", ["tökén", "tok\ud800en"])
def test_given_a_non_ascii_token_when_authorizing_then_unauthorized_not_a_crash(candidate):
    with pytest.raises(Unauthorized):
        authorize(headers(candidate), settings(api_tokens="token"))


def test_given_a_tokens_secret_when_authorizing_then_its_tokens_win_over_api_tokens(secrets):
    arn = secrets.create_secret(Name="punk/api-tokens", SecretString='{"tokens": ["from-secret"]}')[
        "ARN"
    ]
    config = settings(api_tokens="from-env", api_tokens_secret_arn=arn)
    authorize(headers("from-secret"), config)
    with pytest.raises(Unauthorized):
        authorize(headers("from-env"), config)


def test_given_a_rotated_secret_when_the_cache_expired_then_new_token_valid_and_old_refused(
    secrets,
):
    arn = secrets.create_secret(Name="punk/api-tokens", SecretString='{"tokens": ["old"]}')["ARN"]
    config = settings(api_tokens_secret_arn=arn, api_tokens_cache_s=0)
    authorize(headers("old"), config)
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"tokens": ["new"]}))
    authorize(headers("new"), config)
    with pytest.raises(Unauthorized):
        authorize(headers("old"), config)


def test_given_a_secret_with_entries_when_rotated_then_old_and_new_work_until_the_old_goes(
    secrets,
):
    old = entry("old-token", "ci", ["ws-a"], ["events:write"])
    new = entry("new-token", "ci-2", ["ws-a"], ["events:write"])
    arn = secrets.create_secret(Name="punk/api-tokens", SecretString=json.dumps({"tokens": [old]}))[
        "ARN"
    ]
    config = settings(api_tokens_secret_arn=arn, api_tokens_cache_s=0)
    assert authorize(headers("old-token"), config).id == "ci"
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"tokens": [old, new]}))
    assert authorize(headers("old-token"), config).id == "ci"
    assert authorize(headers("new-token"), config).id == "ci-2"
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"tokens": [new]}))
    with pytest.raises(Unauthorized):
        authorize(headers("old-token"), config)


def test_given_a_rotated_secret_within_the_cache_ttl_then_the_cached_tokens_still_apply(secrets):
    arn = secrets.create_secret(Name="punk/api-tokens", SecretString='{"tokens": ["old"]}')["ARN"]
    config = settings(api_tokens_secret_arn=arn, api_tokens_cache_s=300)
    authorize(headers("old"), config)
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"tokens": ["new"]}))
    authorize(headers("old"), config)


def test_given_a_missing_secret_when_authorizing_then_secret_unavailable(secrets):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:punk/none-AbCdEf"
    with pytest.raises(SecretUnavailable):
        authorize(headers("any"), settings(api_tokens_secret_arn=arn))


@pytest.mark.parametrize("secret", ['{"token": "a"}', '{"tokens": "a"}', '{"tokens": []}'])
def test_given_a_secret_without_a_token_list_when_authorizing_then_configuration_error(
    secrets, secret
):
    arn = secrets.create_secret(Name="punk/api-tokens", SecretString=secret)["ARN"]
    with pytest.raises(ConfigurationError):
        authorize(headers("a"), settings(api_tokens_secret_arn=arn))
