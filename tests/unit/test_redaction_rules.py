"""Redaction rules: the rule set, the corpus, the contexts agents leak secrets in, the look-alikes
that must survive, decoded views, and hostile inputs."""

from __future__ import annotations

import base64
import json
import time
import zlib
from typing import Any
from urllib.parse import quote

import pytest

from bench.redaction import caught, evaluate
from bench.redaction_corpus import _github, render
from punk_records.envelope import MAX_PAYLOAD_DEPTH, parse_event
from punk_records.errors import InvalidEnvelope
from punk_records.redaction import (
    _github_checksum_ok,
    credential_family,
    redact,
    redact_if_needed,
    redact_text,
)
from punk_records.redaction_rules import RULES
from tests.factories import event_dict

# Synthetic values, assembled so that the repository holds nothing a scanner would flag.
PW = "Vq7" + "mZ2-xK9#pL4"
AWS_SECRET = "q8Lm2Wz7T" + "bPxRfiCY4/K7MDENG+wJalrXUtnFE12"
SENDGRID = "SG." + "aK9mZ3xQ7vL2pR8tW4nY6c" + "." + "Hd5Gf1Jk8Ls2Qw4Er6Ty0Ui3Op7As9Dz1Xc5Vb8Nm2Lk"
PEM_LINES = ["MIIEow" + "IBAAKCAQEA7bq98Jr2uvZtNZ3Tq4VtFq1XNSX1c4P0", "Zq8vLm3TnR7wXp2Kc9Hd" * 3]


def visible(value: Any) -> str:
    return json.dumps(value)


def test_given_the_rule_set_then_it_covers_at_least_90_families_each_described():
    families = [rule.family for rule in RULES]
    assert len(families) == len(set(families))
    assert len(families) >= 90
    for rule in RULES:
        assert rule.kind.isidentifier(), rule.family
        assert rule.kind.islower(), rule.family
        assert rule.facts, rule.family
        assert rule.literals or rule.anchor, rule.family


def test_given_the_repository_corpus_then_recall_and_false_positives_meet_the_targets():
    # The same corpus and scoring as `make bench` (bench/redaction_corpus.py).
    figures = evaluate(redact)
    assert figures["recall"] >= 0.98, figures["missed"]
    assert figures["false_positive_rate"] <= 0.005, figures["false_positives"]
    low = {family: r for family, r in figures["recall_per_family"].items() if r < 0.9}
    assert not low
    assert figures["clean_cases"] >= 300
    assert all(count >= 5 for count in _cases_per_family().values())


def _cases_per_family() -> dict[str, int]:
    from bench.redaction_corpus import secret_cases

    counts: dict[str, int] = {}
    for case in secret_cases():
        counts[case.family] = counts.get(case.family, 0) + 1
    return counts


def test_given_github_tokens_then_the_crc32_tail_is_checked():
    import random

    token = "ghp_" + _github(random.Random(3))
    assert _github_checksum_ok(token)
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not _github_checksum_ok(broken)
    # A token with a wrong tail still looks random: redacted all the same.
    assert redact_text(f"t {broken}") == "t [REDACTED:github_token]"
    assert zlib.crc32(b"") == 0


# Values that are not secrets: the false positives and the placeholders to keep.
KEPT = [
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db/password-AbC123",
    "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)",
    '{"type": "object", "properties": {"password": {"type": "string", "minLength": 8}}}',
    "nextToken=eyJvZmZzZXQiOiAxMDB9 next_page_token: CiAKGjBpNDd2Nmp2",
    "password: ********",
    "api_key = <your-api-key>",
    "API_KEY=YOUR_API_KEY_HERE",
    "DB_PASSWORD=${DB_PASSWORD}",
    "token: $GITHUB_TOKEN",
    'password = os.environ["DB_PASSWORD"]',
    "const apiKey = process.env.API_KEY;",
    "secret=xxxxxxxx",
    "password: changeme",
    "OPENAI_API_KEY=sk-...",
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "mysql -u app -p app_db",
    "Use --password-stdin so the password never lands in the history.",
    "password_policy: strict, max_tokens: 4096, primary_key: id",
    'token := os.Getenv("GITHUB_TOKEN")',
    "9fceb02d0ae598e95dc970b74767f19372d61af8 sha256:" + "e3b0c442" * 8,
    "auth: oauth2, authorization: basic",
    "password: ****1234",
    "secret: arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbC123",
    "password: required",
    "password: n/a",
    "heroku app 5f3c1c4e-8d3b-4f6e-9a39-0c5f2b7e8d11 released",
    "algolia index 5f3e9a1b2c4d6e8f0a1b3c5d7e9f1a2b rebuilt",
    "password = getpass.getpass()",
    "const token = await getToken();",
    "xoxb-your-bot-token",
    "Set-Cookie: theme=dark; Path=/",
]


@pytest.mark.parametrize("text", KEPT)
def test_given_a_lookalike_or_placeholder_when_redacted_then_it_is_kept(text: str):
    assert redact_text(text) == text
    assert redact_if_needed({"note": text, "nested": [text]}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"password": "********"},
        {"api_key": "<your-api-key>"},
        {"DB_PASSWORD": "${DB_PASSWORD}"},
        {"token": "$GITHUB_TOKEN"},
        {"schema": {"properties": {"password": {"type": "string"}}}},
        {"nextToken": "eyJvZmZzZXQiOiAxMDB9", "NextContinuationToken": "1ueGcxLPRx1Tr"},
    ],
)
def test_given_a_secret_name_holding_no_secret_when_redacted_then_unchanged(payload):
    assert redact(payload) == payload


# Where agents leak secrets (the contexts): text holding the secret, the secret.
CONTEXTS = [
    pytest.param(f"the SendGrid key is {SENDGRID}, rotate it", SENDGRID, id="prose"),
    pytest.param(
        "The Datadog API key is " + "5f3e9a1b2c4d6e8f" * 2 + " for prod",
        "5f3e9a1b2c4d6e8f" * 2,
        id="prose-keyword-format",
    ),
    pytest.param(
        f"    env:\n    - name: SMTP_PASSWORD\n      value: {PW}\n", PW, id="k8s-env-yaml"
    ),
    pytest.param(json.dumps({"name": "DB_PASS", "value": PW}), PW, id="k8s-env-json-text"),
    pytest.param(f"aws configure set aws_secret_access_key {AWS_SECRET}", AWS_SECRET, id="aws-cli"),
    pytest.param(f"AWS Secret Access Key [None]: {AWS_SECRET}", AWS_SECRET, id="aws-prompt"),
    pytest.param(f"--aws-secret-access-key {AWS_SECRET}", AWS_SECRET, id="aws-flag"),
    pytest.param(f"MY_S3_SECRET={AWS_SECRET}", AWS_SECRET, id="aws-unusual-name"),
    pytest.param(f"S3_BACKUP_KEY={AWS_SECRET}", AWS_SECRET, id="aws-key-name"),
    pytest.param(f"machine api.example.com login ci password {PW}", PW, id="netrc"),
    pytest.param(f"mysql -h db -u root -p{PW} app", PW, id="mysql"),
    pytest.param(f"sshpass -p '{PW}' ssh deploy@10.0.0.7", PW, id="sshpass"),
    pytest.param(f"curl -u deploy:{PW} https://api.example.com", PW, id="curl"),
    pytest.param(f"docker login -u ci -p {PW} registry.example.com", PW, id="docker-login"),
    pytest.param(f"redis-cli -h cache -a {PW} ping", PW, id="redis-cli"),
    pytest.param(f"openssl enc -aes-256-cbc -pass pass:{PW} -in a -out b", PW, id="openssl"),
    pytest.param(f"htpasswd -bc /etc/nginx/.htpasswd admin {PW}", PW, id="htpasswd"),
    pytest.param(f"keytool -genkey -keystore k.jks -storepass {PW}", PW, id="keytool"),
    pytest.param(f'mongosh "mongodb://db" --username app --password {PW}', PW, id="mongosh"),
    pytest.param(f"APP_KEY=base64:{PW}", PW, id="app-key"),
    pytest.param(f"DB_PASS={PW}", PW, id="db-pass"),
    pytest.param(f"RAILS_MASTER_KEY={PW}", PW, id="rails-master-key"),
    pytest.param(f"SMTP_PASS={PW}", PW, id="smtp-pass"),
    pytest.param(f"master_key: {PW}", PW, id="master-key"),
    pytest.param(f"pw={PW}", PW, id="pw"),
    pytest.param(f"[client]\npassword = {PW}\n", PW, id="ini"),
    pytest.param(f"Set-Cookie: session={PW}; HttpOnly", PW, id="set-cookie"),
    pytest.param(f"pass: {PW}", PW, id="pass"),
    pytest.param(f"<settings><password>{PW}</password></settings>", PW, id="xml"),
    pytest.param(f"<apiKey>{PW}</apiKey>", PW, id="xml-api-key"),
    pytest.param(f'<add key="DbPassword" value="{PW}" />', PW, id="xml-app-settings"),
    pytest.param(json.dumps(json.dumps({"password": PW})), PW, id="json-stringified-twice"),
    pytest.param("state=" + quote(f"token={SENDGRID}", safe=""), SENDGRID, id="url-encoded"),
    pytest.param(
        "c=" + quote(quote(f"password={PW}", safe=""), safe=""), PW, id="url-double-encoded"
    ),
]


@pytest.mark.parametrize(("text", "secret"), CONTEXTS)
def test_given_a_secret_in_context_when_redacted_then_it_is_gone(text: str, secret: str):
    for value in (text, {"log": text}, {"steps": [{"output": text}]}):
        result = visible(redact(value))
        assert secret not in result
        assert quote(secret, safe="") not in result
        assert "[REDACTED:" in result


def test_given_kubernetes_structures_when_redacted_then_secret_values_go():
    payload = {
        "containers": [
            {"env": [{"name": "DB_PASSWORD", "value": PW}, {"name": "X", "value": "1"}]}
        ],
        "secret": {"kind": "Secret", "stringData": {"SMTP_PASS": PW}},
        "kubeconfig": {
            "users": [{"user": {"client-key-data": base64.b64encode(b"k" * 40).decode()}}]
        },
    }
    result = redact(payload)
    assert PW not in visible(result)
    assert result["containers"][0]["env"][1] == {"name": "X", "value": "1"}
    assert result["containers"][0]["env"][0]["value"] == "[REDACTED:password]"
    assert result["kubeconfig"]["users"][0]["user"]["client-key-data"] == "[REDACTED:private_key]"


def test_given_an_aws_secret_in_a_pair_with_an_unusual_name_when_checked_then_redacted():
    payload = {"env": [{"name": "AWS_SK", "value": AWS_SECRET}]}
    assert redact_if_needed(payload) == {
        "env": [{"name": "AWS_SK", "value": "[REDACTED:aws_secret_access_key]"}]
    }


def test_given_a_pem_split_over_list_items_when_redacted_then_every_item_of_the_block_goes():
    lines = ["-----BEGIN RSA PRIVATE KEY-----", *PEM_LINES, "-----END RSA PRIVATE KEY-----"]
    result = redact({"key": ["before", *lines, "after"]})
    assert result["key"][0] == "before"
    assert result["key"][-1] == "after"
    assert all(item == "[REDACTED:private_key]" for item in result["key"][1:-1])
    assert len(result["key"]) == len(lines) + 2


def test_given_a_secret_in_a_decoded_view_then_only_its_original_span_is_replaced():
    text = "https://app.example.com/cb?next=%2Fhome&state=" + quote(f"token={SENDGRID}", safe="")
    result = redact_text(text)
    assert result.startswith("https://app.example.com/cb?next=%2Fhome&state=token%3D[REDACTED:")
    assert redact_text(result) == result


def test_given_the_family_marker_when_redacted_twice_then_unchanged():
    text = f"key {SENDGRID} and " + "ghp_" + "R7vT2pX8wN5bY4cH6jD1" + "fG0sA2eU9k3Lm9Qz"
    once = redact_text(text)
    assert once == "key [REDACTED:sendgrid_api_key] and [REDACTED:github_token]"
    assert redact_text(once) == once


def test_given_identifiers_then_credential_family_names_the_rule():
    assert credential_family("ws-42") is None
    assert credential_family(SENDGRID) == "sendgrid_api_key"


@pytest.mark.parametrize("family", ["github_token", "slack_token", "stripe_key", "jwt"])
def test_given_each_corpus_example_when_rendered_then_it_is_caught(family: str):
    import random

    from bench.redaction_corpus import Case

    rule = next(rule for rule in RULES if rule.family == family)
    value, parts = render(rule.example, random.Random(5))
    assert caught(Case(family, "field", {"x": value}, parts), redact)


# ------------------------------------------------------------------------ hostile inputs

HOSTILE = [
    pytest.param({"blob": "a1b2-c3d4_" * 100_000}, id="1MB-without-spaces"),
    pytest.param({"log": "password=" * 100_000}, id="100k-password="),
    pytest.param({"log": "password: " * 100_000}, id="100k-password:"),
    pytest.param({"blob": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 30_000}, id="base64-run"),
    pytest.param({"blob": "ghp_" + "Ab9x" * 60_000}, id="token-prefix-then-run"),
    pytest.param({"blob": "A" * 1_000_000}, id="1MB-of-A"),
    pytest.param({"q": "%25" * 100_000, "r": '\\"' * 100_000}, id="escapes"),
    pytest.param(
        {"items": [{"a": {"b": {"n": i, "t": "ok"}}} for i in range(10_000)]}, id="10k-objects"
    ),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_given_hostile_input_when_redacted_then_it_finishes_and_stays_idempotent(payload):
    # Speed is measured by `make bench` (worst ms per 256 KiB); here a backtracking or
    # quadratic matcher would take minutes, where the linear one takes milliseconds.
    started = time.perf_counter()
    once = redact(payload)
    assert time.perf_counter() - started < 5.0
    assert redact(once) == once


def test_given_hostile_repetition_then_a_real_secret_after_it_is_still_found():
    text = "password=" * 100_000 + " " + SENDGRID
    assert SENDGRID not in redact_text(text)


def test_given_10k_nested_objects_when_posted_then_refused_by_depth_before_redaction():
    payload: dict[str, Any] = {}
    for _ in range(10_000):
        payload = {"a": payload}
    with pytest.raises(InvalidEnvelope) as refused:
        parse_event(event_dict(payload=payload))
    assert refused.value.errors[0]["type"] == "too_deep"
    assert MAX_PAYLOAD_DEPTH < 10_000


def test_given_raw_json_judged_clean_then_the_full_path_finds_nothing_either():
    # Acceptance (ingest and consumer) skips walking a payload when one scan of the canonical
    # record finds no sign of work; that shortcut must never skip a payload the full path would
    # change, whatever the JSON's spelling.
    from bench.common import event_dicts
    from bench.redaction_corpus import corpus
    from punk_records.redaction import payload_json_clean

    secrets, clean = corpus()
    events = [event["payload"] for event in event_dicts(2_000, seed=3)]
    payloads = [case.payload for case in [*secrets, *clean]] + events
    skipped = 0
    for index, payload in enumerate(payloads):
        canonical = parse_event(event_dict(payload=payload)).kafka_value()
        spellings = [
            json.dumps(event_dict(payload=payload), ensure_ascii=a).encode() for a in (True, False)
        ]
        for raw in (canonical, *spellings):
            if payload_json_clean(raw):
                skipped += index >= len(payloads) - len(events)
                assert redact_if_needed(payload) is None, payload
    assert skipped > len(events) * 3 // 2  # the shortcut does apply to most realistic payloads
