"""Held-out redaction cases: formats and contexts that ``bench/redaction_corpus.py`` does not
generate from the rules' own templates.

The repository corpus renders each rule's ``example``, so it cannot show where a rule is
narrower than the real format. These cases are written by hand from the formats' public
descriptions (prefix variants, length ranges, optional parts, newer versions) and from the
places agents leak secrets (prose worded differently, manifests, stringified JSON, encoded URLs,
command lines with every flag spelling, odd key names, XML, headers). Every value is synthetic,
assembled at run time from a seeded generator, so the repository holds nothing a scanner would
flag; the clean cases are the look-alikes and placeholders that must come back unchanged.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from punk_records.redaction import payload_json_clean, redact, redact_if_needed

_RNG = random.Random(1010)
_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase + string.digits
_LOWER = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"
_B64 = _ALNUM + "+/"
_URL = _ALNUM + "_-"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _r(alphabet: str, length: int) -> str:
    """Random characters of ``alphabet`` with at least two character classes where it has them
    (a value of one class reads as a word or a number, not a key)."""
    classes = [
        set(group) & set(alphabet)
        for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    ]
    wanted = min(2, sum(1 for group in classes if group))
    while True:
        value = "".join(_RNG.choice(alphabet) for _ in range(length))
        if sum(1 for group in classes if group & set(value)) >= wanted:
            return value


def _uuid() -> str:
    return str(uuid.UUID(int=_RNG.getrandbits(128), version=4))


def _github(prefix: str) -> str:
    body = _r(_ALNUM, 30)
    crc = zlib.crc32(body.encode())
    tail = ""
    while crc:
        crc, rest = divmod(crc, 62)
        tail = _B62[rest] + tail
    return prefix + body + tail.rjust(6, "0")


def _b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _jwt(claims: dict[str, Any], alg: str = "RS256") -> str:
    header = _b64url_json({"alg": alg, "typ": "JWT"})
    return f"{header}.{_b64url_json(claims)}.{_r(_URL, 86)}"


def _pw() -> str:
    return _r(_ALNUM, 9) + _RNG.choice("!#%^*_@") + str(_RNG.randint(10, 99)) + _r(_ALNUM, 3)


def _pem_lines(label: str, lines: int = 5) -> list[str]:
    return [
        f"-----BEGIN {label}-----",
        *(_r(_B64, 64) for _ in range(lines)),
        _r(_B64, 20) + "==",
        f"-----END {label}-----",
    ]


@dataclass(frozen=True)
class Held:
    family: str
    context: str
    payload: Any
    secrets: tuple[str, ...]


CASES: list[Held] = []


def _add(family: str, context: str, payload: Any, *secrets: str) -> None:
    CASES.append(Held(family, context, payload, secrets))


def _everywhere(family: str, value: str, *contexts: Callable[[str], tuple[str, Any]]) -> None:
    for make in contexts:
        context, payload = make(value)
        _add(family, context, payload, value)


# Context shapes the repository corpus does not produce.
def prose(v: str) -> tuple[str, Any]:
    return "prose", {"message": f"Heads up: I pasted {v} into the ticket by mistake, please rotate"}


def prose_colon(v: str) -> tuple[str, Any]:
    return "prose", {"answer": f"Here's the credential you asked for -> {v}. Don't share it."}


def yaml_key(v: str) -> tuple[str, Any]:
    return "yaml", {"file": f"service:\n  name: billing\n  credentials:\n    value: {v}\n"}


def json_string(v: str) -> tuple[str, Any]:
    return "stringified", {"tool_result": json.dumps({"ok": True, "data": {"config": v}})}


def json_twice(v: str) -> tuple[str, Any]:
    return "stringified_twice", {"raw": json.dumps(json.dumps({"cfg": [{"v": v}]}))}


def url_query(v: str) -> tuple[str, Any]:
    return "url_encoded", {"url": "https://api.example.net/v2/items?limit=5&k=" + quote(v, safe="")}


def double_encoded(v: str) -> tuple[str, Any]:
    redirect = quote("https://app.example.net/cb?t=" + quote(v, safe=""), safe="")
    return "double_encoded", {"location": f"https://login.example.net/?redirect_uri={redirect}"}


def markdown(v: str) -> tuple[str, Any]:
    return "markdown", {"content": f"Run this:\n\n```bash\nexport CI_CRED={v}\n./release.sh\n```"}


def python_code(v: str) -> tuple[str, Any]:
    return "code", {"diff": f'+client = Client(region="eu", credential="{v}")'}


def docker_env(v: str) -> tuple[str, Any]:
    return "command", {"argv": f"docker run --rm -e UPSTREAM_CRED={v} ghcr.io/acme/tool:1.2"}


def list_item(v: str) -> tuple[str, Any]:
    return "list_item", {"args": ["deploy", "--region", "eu-west-1", v]}


def log_kv(v: str) -> tuple[str, Any]:
    return "log", {"line": f'ts=2026-11-29T10:01:02Z level=debug msg="init client" using={v} ok=1'}


def header(v: str) -> tuple[str, Any]:
    return "http_header", {"headers": {"X-Upstream": v, "Accept": "application/json"}}


def k8s_secret_yaml(v: str) -> tuple[str, Any]:
    text = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: upstream\nstringData:\n  cred: {v}\n"
    return "k8s_stringdata", {"manifest": text}


def terraform(v: str) -> tuple[str, Any]:
    return "terraform", {"hcl": f'provider "upstream" {{\n  region = "eu"\n  cred = "{v}"\n}}'}


FORMAT_CONTEXTS = (prose, json_string, url_query, list_item)
MORE_CONTEXTS = (prose_colon, yaml_key, json_twice, double_encoded, markdown, python_code,
                 docker_env, log_kv, header, k8s_secret_yaml, terraform)  # fmt: skip


def _family(family: str, values: list[str], extra: int = 2) -> None:
    """Each value in the format contexts, plus ``extra`` more contexts picked per value."""
    for value in values:
        picks = _RNG.sample(MORE_CONTEXTS, extra)
        _everywhere(family, value, *(_RNG.sample(FORMAT_CONTEXTS, 2)), *picks)


# ------------------------------------------------------------------------- prefixed formats

_family(
    "aws_access_key_id",
    ["AKIA" + _r(_UPPER, 16), "ASIA" + _r("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)],
)
_family(
    "github",
    [
        _github("ghp_"),
        _github("ghs_"),
        _github("gho_"),
        _github("ghu_"),
        _github("ghr_"),
        "github_pat_11" + _r(_UPPER, 20) + "_" + _r(_ALNUM, 59),
    ],
)
_family(
    "gitlab",
    [
        "glpat-" + _r(_URL, 20),
        "gldt-" + _r(_URL, 20),
        "glrt-t1_" + _r(_URL, 27),
        "glft-" + _r(_URL, 20),
        "glcbt-64_" + _r(_URL, 20),
        "glsoat-" + _r(_URL, 20),
        "glptt-" + _r(_HEX, 40),
        "GR1348941" + _r(_URL, 20),
        "glimt-" + _r(_LOWER, 25),
        "glagent-" + _r(_URL, 50),
        "gloas-" + _r(_HEX, 64),
        "glpat-" + _r(_URL, 27) + ".01.12" + _r(_LOWER, 7),
    ],
    extra=1,
)
_family(
    "slack",
    [
        "xoxb-" + _r(string.digits, 12) + "-" + _r(string.digits, 13) + "-" + _r(_ALNUM, 24),
        "xoxp-" + "-".join(_r(string.digits, 12) for _ in range(3)) + "-" + _r(_HEX, 32),
        "xoxe.xoxp-1-" + _r(_UPPER, 163),
        "xoxe-1-" + _r(_UPPER, 146),
        "xapp-1-A" + _r(_UPPER, 10) + "-" + _r(string.digits, 13) + "-" + _r(_HEX, 64),
        "xoxc-" + _r(string.digits, 12) + "-" + _r(string.digits, 12) + "-" + _r(_HEX, 64),
        "xoxs-" + _r(string.digits, 12) + "-" + _r(string.digits, 12) + "-" + _r(_HEX, 64),
    ],
    extra=1,
)
_family(
    "slack_webhook",
    [
        "https://hooks.slack.com/services/T"
        + _r(_UPPER, 10)
        + "/B"
        + _r(_UPPER, 10)
        + "/"
        + _r(_ALNUM, 24),
        "https://hooks.slack.com/workflows/T"
        + _r(_UPPER, 10)
        + "/A"
        + _r(_UPPER, 10)
        + "/"
        + _r(string.digits, 18)
        + "/"
        + _r(_ALNUM, 24),
    ],
)
_family(
    "stripe",
    [
        "sk_live_51" + _r(_ALNUM, 97),
        "rk_live_51" + _r(_ALNUM, 97),
        "sk_test_" + _r(_ALNUM, 24),
        "whsec_" + _r(_ALNUM, 32),
        "rk_test_" + _r(_ALNUM, 24),
    ],
    extra=1,
)
_family(
    "openai",
    [
        "sk-proj-" + _r(_URL, 74) + "T3BlbkFJ" + _r(_URL, 74),
        "sk-svcacct-" + _r(_URL, 74) + "T3BlbkFJ" + _r(_URL, 74),
        "sk-admin-" + _r(_URL, 74) + "T3BlbkFJ" + _r(_URL, 74),
        "sk-" + _r(_ALNUM, 20) + "T3BlbkFJ" + _r(_ALNUM, 20),
    ],
    extra=1,
)
_family(
    "anthropic", ["sk-ant-api03-" + _r(_URL, 93) + "AA", "sk-ant-admin01-" + _r(_URL, 93) + "AA"]
)
_family("google_api_key", ["AIza" + _r(_URL, 35), "AIzaSy" + _r(_URL, 33)])
_family(
    "google_oauth",
    [
        "GOCSPX-" + _r(_URL, 28),
        "1//0" + _r(_URL, 99),
        "1//03" + _r(_URL, 60),
        "ya29.a0" + _r(_URL, 150),
        "ya29.c." + _r(_URL, 120),
    ],
    extra=1,
)
_family(
    "azure_ad_client_secret",
    [_r(_ALNUM, 3) + "8Q~" + _r(_URL + "~.", 34), _r(_ALNUM, 3) + "7Q~" + _r(_ALNUM + "_~.-", 31)],
)
_family(
    "discord_bot_token",
    [
        "MT" + _r(_ALNUM, 24) + "." + _r(_URL, 6) + "." + _r(_URL, 38),
        "OD" + _r(_ALNUM, 22) + "." + _r(_URL, 6) + "." + _r(_URL, 27),
    ],
)
_family(
    "discord_webhook",
    [
        "https://discord.com/api/webhooks/" + _r(string.digits, 19) + "/" + _r(_URL, 68),
        "https://discordapp.com/api/webhooks/" + _r(string.digits, 18) + "/" + _r(_URL, 68),
    ],
)
_family(
    "telegram_bot_token",
    [_r(string.digits, 10) + ":AA" + _r(_URL, 33), _r(string.digits, 9) + ":AAH" + _r(_URL, 32)],
)
_family(
    "sendgrid",
    ["SG." + _r(_URL, 22) + "." + _r(_URL, 43), "SG." + _r(_URL, 22) + "." + _r(_URL, 43)],
)
_family(
    "shopify",
    [
        "shpat_" + _r(_HEX, 32),
        "shpss_" + _r(_HEX, 32),
        "shpca_" + _r(_HEX, 32),
        "shppa_" + _r(_HEX, 32),
    ],
    extra=1,
)
_family("square", ["sq0atp-" + _r(_URL, 22), "sq0csp-" + _r(_URL, 43), "EAAA" + _r(_URL, 60)])
_family("mailgun", ["key-" + _r(_HEX, 32), _r(_HEX, 32) + "-" + _r(_HEX, 8) + "-" + _r(_HEX, 8)])
_family(
    "digitalocean",
    ["dop_v1_" + _r(_HEX, 64), "doo_v1_" + _r(_HEX, 64), "dor_v1_" + _r(_HEX, 64)],
    extra=1,
)
_family("heroku", ["HRKU-AA" + _r(_URL, 58), "HRKU-" + _r(_URL, 60)])
_family(
    "huggingface", ["hf_" + _r(string.ascii_letters, 34), "api_org_" + _r(string.ascii_letters, 34)]
)
_family(
    "pypi", ["pypi-AgEIcHlwaS5vcmc" + _r(_URL, 150), "pypi-AgENdGVzdC5weXBpLm9yZw" + _r(_URL, 120)]
)
_family("npm", ["npm_" + _r(_ALNUM, 36), "npm_" + _r(_ALNUM, 36)])
_family("atlassian", ["ATATT3xFfGF0" + _r(_URL + "=", 180), "ATCTT3xFfGN0" + _r(_URL + "=", 180)])
_family("databricks", ["dapi" + _r(_HEX, 32), "dapi" + _r(_HEX, 32) + "-2"])
_family(
    "doppler",
    [
        "dp.pt." + _r(_ALNUM, 43),
        "dp.st.prd." + _r(_ALNUM, 40),
        "dp.sa." + _r(_ALNUM, 43),
        "dp.ct." + _r(_ALNUM, 43),
    ],
    extra=1,
)
_family(
    "dynatrace",
    [
        "dt0c01." + _r(_UPPER, 24) + "." + _r(_UPPER, 64),
        "dt0s01." + _r(_UPPER, 24) + "." + _r(_UPPER, 64),
    ],
)
_family(
    "grafana",
    [
        "glc_" + _b64url_json({"o": "1", "n": "stack", "k": _r(_ALNUM, 24), "m": {"r": "eu"}}),
        "glsa_" + _r(_ALNUM, 32) + "_" + _r(_HEX, 8),
        "eyJrIjoi" + _r(_B64, 60) + "==",
    ],
)
_family("vault", ["hvs." + _r(_URL, 90), "hvb." + _r(_URL, 130), "hvs.CAESI" + _r(_URL, 24)])
_family("linear", ["lin_api_" + _r(_ALNUM, 40), "lin_oauth_" + _r(_HEX, 64)])
_family("notion", ["ntn_" + _r(string.digits, 11) + _r(_ALNUM, 35), "secret_" + _r(_ALNUM, 43)])
_family(
    "onepassword",
    [
        "ops_eyJ" + _r(_B64, 300),
        "A3-"
        + _r(_UPPER, 6)
        + "-"
        + _r(_UPPER, 11)
        + "-"
        + "-".join(_r(_UPPER, 5) for _ in range(3)),
    ],
)
_family(
    "postman",
    ["PMAK-" + _r(_HEX, 24) + "-" + _r(_HEX, 34), "PMAK-" + _r(_HEX, 24) + "-" + _r(_HEX, 34)],
)
_family("pulumi", ["pul-" + _r(_HEX, 40), "pul-" + _r(_HEX, 40)])
_family(
    "sentry",
    [
        "sntryu_" + _r(_HEX, 64),
        "sntrys_"
        + _b64url_json({"iat": 1, "url": "https://sentry.io", "org": "acme"})
        + "_"
        + _r(_B64, 43),
    ],
)
_family(
    "supabase", ["sbp_" + _r(_HEX, 40), "sb_secret_" + _r(_URL, 31), "sbp_oauth_" + _r(_HEX, 40)]
)
_family(
    "terraform_cloud",
    [_r(_ALNUM, 14) + ".atlasv1." + _r(_URL, 67), _r(_ALNUM, 14) + ".atlasv1." + _r(_URL, 70)],
)
_family(
    "age",
    [
        "AGE-SECRET-KEY-1"
        + "".join(_RNG.choice("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L") for _ in range(58))
    ],
)
_family(
    "new_relic",
    [
        "NRAK-" + _r(_UPPER, 27),
        "NRII-" + _r(_URL, 32),
        "NRJS-" + _r(_HEX, 19),
        _r(_HEX, 36) + "NRAL",
    ],
)
_family(
    "planetscale",
    ["pscale_tkn_" + _r(_URL, 43), "pscale_pw_" + _r(_URL, 43), "pscale_oauth_" + _r(_URL, 43)],
)
_family("replicate", ["r8_" + _r(_ALNUM, 37), "r8_" + _r(_ALNUM, 37)])
_family("groq", ["gsk_" + _r(_ALNUM, 52), "gsk_" + _r(_ALNUM, 52)])
_family("xai", ["xai-" + _r(_ALNUM, 80), "xai-" + _r(_ALNUM, 80)])
_family("perplexity", ["pplx-" + _r(_ALNUM, 48), "pplx-" + _r(_HEX, 48)])
_family(
    "langsmith",
    [
        "lsv2_pt_" + _r(_HEX, 32) + "_" + _r(_HEX, 10),
        "lsv2_sk_" + _r(_HEX, 32) + "_" + _r(_HEX, 10),
    ],
)
_family("rubygems", ["rubygems_" + _r(_HEX, 48), "rubygems_" + _r(_HEX, 48)])
_family(
    "flyio", ["fo1_" + _r(_URL, 43), "FlyV1 fm2_" + _r(_B64, 200) + "==", "fm1r_" + _r(_B64, 120)]
)
_family("facebook", ["EAACEdEose0cBA" + _r(_ALNUM, 160), "EAAB" + _r(_ALNUM, 200)])
_family("alibaba", ["LTAI" + _r(_ALNUM, 20), "LTAI5t" + _r(_ALNUM, 18)])
_family(
    "jwt",
    [
        _jwt({"sub": "svc", "role": "service_role", "iss": "supabase"}, "HS256"),
        _jwt({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ci:deployer"}),
    ],
)
_family("openrouter_deepseek", ["sk-or-v1-" + _r(_HEX, 64), "sk-" + _r(_HEX, 32)])
_family("twilio_api_key", ["SK" + _r(_HEX, 32), "SK" + _r(_HEX, 32)])
_family("dropbox", ["sl." + _r(_URL, 140), "sl.u." + _r(_URL, 160)])
_family(
    "mapbox",
    [
        "sk.eyJ1Ijoi" + _r(_URL, 50) + "." + _r(_URL, 22),
        "sk.eyJ1Ijoi" + _r(_URL, 60) + "." + _r(_URL, 22),
    ],
)
_family("docker_hub", ["dckr_pat_" + _r(_URL, 27), "dckr_oat_" + _r(_URL, 32)])
_family("hashicorp_tf", [_r(_ALNUM, 14) + ".atlasv1." + _r(_URL, 67)], extra=1)
_family(
    "tailscale",
    [
        "tskey-auth-k" + _r(_ALNUM, 11) + "-" + _r(_ALNUM, 33),
        "tskey-api-k" + _r(_ALNUM, 11) + "-" + _r(_ALNUM, 33),
    ],
)
_family("cloudflare_origin_ca", ["v1.0-" + _r(_HEX, 24) + "-" + _r(_HEX, 146)], extra=2)
_family(
    "sendinblue",
    [
        "xkeysib-" + _r(_HEX, 64) + "-" + _r(_ALNUM, 16),
        "xsmtpsib-" + _r(_HEX, 64) + "-" + _r(_ALNUM, 16),
    ],
)
_family("hubspot", ["pat-na1-" + _uuid(), "pat-eu1-" + _uuid()])
_family(
    "pinecone",
    [
        "pcsk_" + _r(_ALNUM, 5) + "_" + _r(_ALNUM, 60),
        "pcsk_" + _r(_ALNUM, 6) + "_" + _r(_ALNUM, 62),
    ],
)

# ----------------------------------------------------------------- keyword-dependent formats
HEX32, HEX32B, HEX40 = _r(_HEX, 32), _r(_HEX, 32), _r(_HEX, 40)
UUID_H = _uuid()
_add(
    "twilio_auth_token",
    "prose",
    {"m": f"Twilio auth token: {HEX32} (account AC{_r(_HEX, 32)})"},
    HEX32,
)
_add(
    "twilio_auth_token",
    "env_file",
    {"f": f"TWILIO_ACCOUNT_SID=AC{_r(_HEX, 32)}\nTWILIO_AUTH_TOKEN={HEX32B}\n"},
    HEX32B,
)
_add(
    "twilio_auth_token",
    "yaml",
    {"f": f"twilio:\n  account_sid: AC{_r(_HEX, 32)}\n  auth_token: {HEX32}\n"},
    HEX32,
)
_add(
    "twilio_auth_token",
    "code",
    {"f": f'client = twilio.rest.Client("AC{_r(_HEX, 32)}", "{HEX32B}")'},
    HEX32B,
)
_add("twilio_auth_token", "k8s_env", {"env": [{"name": "TWILIO_TOKEN", "value": HEX32}]}, HEX32)
_add(
    "heroku_uuid",
    "prose",
    {"m": f"The Heroku API key for prod is {UUID_H}, please keep it safe"},
    UUID_H,
)
_add("heroku_uuid", "env_file", {"f": f"HEROKU_API_KEY={UUID_H}\n"}, UUID_H)
_add(
    "heroku_uuid",
    "netrc",
    {"f": f"machine api.heroku.com\n  login ci@example.com\n  password {UUID_H}\n"},
    UUID_H,
)
_add(
    "heroku_uuid",
    "command",
    {"c": f"heroku config:set X=1 --app web # HEROKU_API_KEY={UUID_H}"},
    UUID_H,
)
_add("heroku_uuid", "stringified", {"b": json.dumps({"heroku": {"api_key": UUID_H}})}, UUID_H)
_add("datadog", "env_file", {"f": f"DD_API_KEY={HEX32}\nDD_APP_KEY={HEX40}\n"}, HEX32, HEX40)
_add("datadog", "header", {"h": f"DD-API-KEY: {HEX32B}"}, HEX32B)
_add(
    "datadog",
    "prose",
    {"m": f"our datadog api key is {HEX32} and the app key {HEX40}"},
    HEX32,
    HEX40,
)
_add("datadog", "yaml", {"f": f"datadog:\n  apiKey: {HEX32B}\n  appKey: {HEX40}\n"}, HEX32B, HEX40)
_add(
    "datadog",
    "header_json",
    {"headers": {"DD-APPLICATION-KEY": HEX40, "DD-API-KEY": HEX32}},
    HEX40,
    HEX32,
)
_add(
    "datadog",
    "helm",
    {"cmd": f"helm install dd datadog/datadog --set datadog.apiKey={HEX32B}"},
    HEX32B,
)
AZ_KEY = _r(_B64, 86) + "=="
AZ_SIG = quote(base64.b64encode(bytes(_RNG.getrandbits(8) for _ in range(32))).decode(), safe="")
_add(
    "azure_storage",
    "connection_string",
    {
        "c": "DefaultEndpointsProtocol=https;AccountName=acmedata;"
        f"AccountKey={AZ_KEY};EndpointSuffix=core.windows.net"
    },
    AZ_KEY,
)
_add("azure_storage", "env_file", {"f": f"AZURE_STORAGE_KEY={AZ_KEY}\n"}, AZ_KEY)
_add(
    "azure_storage",
    "cli",
    {"c": f"az storage blob upload --account-name acme --account-key {AZ_KEY} -f a"},
    AZ_KEY,
)
_add("azure_storage", "prose", {"m": f"storage account key: {AZ_KEY}"}, AZ_KEY)
_add(
    "azure_storage",
    "json_field",
    {"storage": {"accountName": "acme", "accountKey": AZ_KEY}},
    AZ_KEY,
)
SB_KEY = _r(_B64, 43) + "="
_add(
    "azure_storage",
    "service_bus",
    {
        "c": "Endpoint=sb://acme.servicebus.windows.net/;"
        f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={SB_KEY}"
    },
    SB_KEY,
)
_add(
    "azure_sas",
    "url",
    {
        "u": "https://acme.blob.core.windows.net/exports/a.csv?sv=2022-11-02&ss=b&srt=o"
        f"&sp=r&se=2030-01-01T00:00:00Z&st=2026-01-01T00:00:00Z&spr=https&sig={AZ_SIG}"
    },
    AZ_SIG,
)
_add(
    "azure_sas",
    "prose",
    {"m": f"use the SAS token ?sv=2021-06-08&sp=racwdl&sr=c&sig={AZ_SIG}"},
    AZ_SIG,
)
_add(
    "azure_sas",
    "encoded",
    {
        "u": "https://x.example.net/go?to="
        + quote(f"https://a.blob.core.windows.net/c?sv=2022-11-02&sig={AZ_SIG}", safe="")
    },
    AZ_SIG,
)
_add(
    "azure_sas",
    "cli",
    {"c": f"azcopy copy a.txt 'https://a.blob.core.windows.net/c?sp=rw&sig={AZ_SIG}'"},
    AZ_SIG,
)
OKTA = "00" + _r(_URL, 40)
_add("okta", "header", {"h": f"Authorization: SSWS {OKTA}"}, OKTA)
_add("okta", "env_file", {"f": f"OKTA_API_TOKEN={OKTA}\n"}, OKTA)
_add("okta", "prose", {"m": f"okta admin token {OKTA} expires next week"}, OKTA)
ALI = _r(_ALNUM, 30)
_add(
    "alibaba_secret",
    "env_file",
    {
        "f": f"ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI{_r(_ALNUM, 20)}\n"
        f"ALIBABA_CLOUD_ACCESS_KEY_SECRET={ALI}\n"
    },
    ALI,
)
_add("alibaba_secret", "ini", {"f": f"[default]\naliyun_access_key_secret = {ALI}\n"}, ALI)
_add("facebook_app_secret", "env_file", {"f": f"FACEBOOK_APP_SECRET={HEX32}\n"}, HEX32)
_add(
    "facebook_app_secret",
    "json",
    {"facebook": {"app_id": "1234567890", "app_secret": HEX32B}},
    HEX32B,
)
SENTRY = _r(_HEX, 64)
_add("sentry_legacy", "env_file", {"f": f"SENTRY_AUTH_TOKEN={SENTRY}\n"}, SENTRY)
_add("sentry_legacy", "cli", {"c": f"sentry-cli --auth-token {SENTRY} releases new v1"}, SENTRY)
AZ_OPENAI = HEX32
_add("azure_openai", "env_file", {"f": f"AZURE_OPENAI_API_KEY={AZ_OPENAI}\n"}, AZ_OPENAI)
_add("azure_openai", "header", {"h": f"api-key: {HEX32B}"}, HEX32B)

# ----------------------------------------------------------------------------- AWS secrets
AWS_S = [_r(_B64, 40) for _ in range(8)]
_add(
    "aws_secret",
    "aws_configure_prompt",
    {
        "t": f"$ aws configure\nAWS Access Key ID [None]: AKIA{_r(_UPPER, 16)}\n"
        f"AWS Secret Access Key [None]: {AWS_S[0]}\nDefault region name [None]: eu-west-1\n"
    },
    AWS_S[0],
)
_add(
    "aws_secret",
    "credentials_file",
    {
        "t": f"[prod]\naws_access_key_id = AKIA{_r(_UPPER, 16)}\n"
        f"aws_secret_access_key = {AWS_S[1]}\n"
    },
    AWS_S[1],
)
_add(
    "aws_secret",
    "cli_flag",
    {"t": f"terraform apply -var aws_secret={AWS_S[2]} -auto-approve"},
    AWS_S[2],
)
_add("aws_secret", "odd_name", {"t": f"export AWS_SK={AWS_S[3]}"}, AWS_S[3])
_add("aws_secret", "odd_name", {"t": f"BACKUP_BUCKET_SECRET={AWS_S[4]}"}, AWS_S[4])
_add(
    "aws_secret",
    "json",
    {
        "Credentials": {
            "AccessKeyId": "ASIA" + _r(_UPPER, 16),
            "SecretAccessKey": AWS_S[5],
            "SessionToken": "IQoJb3JpZ2luX2Vj" + _r(_B64, 300),
        }
    },
    AWS_S[5],
)
_add("aws_secret", "prose", {"m": f"AWS keys: AKIA{_r(_UPPER, 16)} / {AWS_S[6]}"}, AWS_S[6])
_add(
    "aws_secret",
    "docker",
    {
        "t": f"docker run -e AWS_ACCESS_KEY_ID=AKIA{_r(_UPPER, 16)} "
        f"-e AWS_SECRET_ACCESS_KEY={AWS_S[7]} img"
    },
    AWS_S[7],
)

# ----------------------------------------------------------------------------- private keys
for label in (
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
    "DSA PRIVATE KEY",
    "PRIVATE KEY",
):
    lines = _pem_lines(label)
    _add("private_key", f"pem_array:{label}", {"key_lines": lines}, *lines[1:-1])
    _add(
        "private_key",
        f"pem_json_escaped:{label}",
        {"f": json.dumps({"private_key": "\n".join(lines)})},
        *lines[1:-1],
    )
lines = _pem_lines("RSA PRIVATE KEY")
_add(
    "private_key",
    "kubeconfig",
    {
        "f": "users:\n- name: admin\n  user:\n    client-certificate-data: "
        + base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n").decode()
        + "\n    client-key-data: "
        + base64.b64encode("\n".join(lines).encode()).decode()
        + "\n"
    },
    base64.b64encode("\n".join(lines).encode()).decode()[20:80],
)
lines = _pem_lines("PRIVATE KEY")
_add(
    "private_key",
    "gcp_service_account",
    {
        "sa": json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": _r(_HEX, 40),
                "private_key": "\n".join(lines) + "\n",
                "client_email": "a@p.iam.gserviceaccount.com",
            }
        )
    },
    *lines[1:-1],
)
lines = _pem_lines("OPENSSH PRIVATE KEY")
_add("private_key", "pem_array_crlf", {"lines": [line + "\r" for line in lines]}, *lines[1:-1])

# ------------------------------------------------------------------ passwords on command lines
P = [_pw() for _ in range(40)]
COMMANDS = [
    f"mysql -uroot -p{P[0]} -h db app",
    f"mysql --user=root --password={P[1]} app",
    f"mysqldump -u backup --password {P[2]} --all-databases",
    f"sshpass -p {P[3]} scp a.tgz deploy@10.0.0.9:/tmp",
    f"sshpass -p'{P[4]}' ssh ops@bastion",
    f"curl --user admin:{P[5]} https://ci.example.net/api/json",
    f"curl -sS -u 'svc:{P[6]}' -X POST https://api.example.net/hook",
    f"echo ok && docker login --username ci --password {P[7]} ghcr.io",
    f"docker login -u ci -p {P[8]}",
    f"redis-cli -h cache.internal -p 6379 -a {P[9]} --no-auth-warning ping",
    f"redis-cli --pass {P[10]} info",
    f"openssl pkcs12 -in a.p12 -passin pass:{P[11]} -nodes",
    f"openssl enc -d -aes-256-cbc -pass pass:{P[12]} -in b.enc",
    f"htpasswd -b -c /etc/apache2/.htpasswd admin {P[13]}",
    f"keytool -importkeystore -srckeystore a.p12 -srcstorepass {P[14]} -deststorepass {P[15]}",
    f"keytool -genkeypair -alias app -keystore k.jks -storepass {P[16]} -keypass {P[17]}",
    f"mongosh 'mongodb+srv://admin:{P[18]}@cluster0.ab1cd.mongodb.net/app'",
    f"mongosh --host db -u admin --password {P[19]} --authenticationDatabase admin",
    f"psql postgresql://app:{P[20]}@db.internal:5432/app -c 'select 1'",
    f"PGPASSWORD={P[21]} psql -h db -U app app",
    f"PGPASSWORD='{P[22]}' pg_dump -h db -U app app > dump.sql",
    f"mongodump --uri mongodb://backup:{P[23]}@10.0.0.5:27017/app",
    f"MYSQL_PWD={P[24]} mysql -h db -u app",
    f"ldapsearch -x -D cn=admin,dc=acme -w {P[25]} -b dc=acme",
    f"sqlcmd -S db -U sa -P {P[26]} -Q 'select 1'",
    f"net use Z: \\\\files\\share /user:ACME\\ops {P[27]}",
    f"rabbitmqctl add_user app {P[28]}",
    f"vault login -method=userpass username=ops password={P[29]}",
    f"git clone https://ci-bot:{P[30]}@git.example.net/acme/app.git",
    f"smbclient //files/share -U ops%{P[31]}",
    f"wget --http-user=admin --http-password={P[32]} https://ci.example.net/a.zip",
    f"az login --service-principal -u {_uuid()} -p {P[33]} --tenant acme.onmicrosoft.com",
    f"zip -P {P[34]} backup.zip db.sql",
    f"7z a -p{P[35]} backup.7z db.sql",
    f"ansible-playbook site.yml -e 'ansible_become_password={P[36]}'",
    f"helm repo add acme https://charts.example.net --username ci --password {P[37]}",
    f"echo '{P[38]}' | docker login --password-stdin -u ci && mysql -p{P[38]}",
    f'pg_ctl start; psql "host=db user=app password={P[39]} dbname=app"',
]
for index, command in enumerate(COMMANDS):
    found = [p for p in P if p in command]
    _add("password_cli", f"command:{command.split()[0]}", {"command": command}, *found)
    if index % 3 == 0:
        _add("password_cli", f"log:{command.split()[0]}", {"log": f"+ {command}\n[exit 0]"}, *found)
ARGV_PW = _pw()
_add(
    "password_cli",
    "argv_list",
    {"argv": ["mysql", "-h", "db", "-u", "root", f"-p{ARGV_PW}"]},
    ARGV_PW,
)
ARGV_PW2 = _pw()
_add("password_cli", "argv_list", {"argv": ["sshpass", "-p", ARGV_PW2, "ssh", "a@b"]}, ARGV_PW2)
ARGV_PW3 = _pw()
_add(
    "password_cli",
    "argv_list",
    {"argv": ["docker", "login", "--password", ARGV_PW3, "ghcr.io"]},
    ARGV_PW3,
)

# -------------------------------------------------------------------- secrets by key name
NAMES = [
    "APP_KEY",
    "DB_PASS",
    "RAILS_MASTER_KEY",
    "SMTP_PASS",
    "master_key",
    "pw",
    "pass",
    "WEBHOOK_SECRET",
    "SLACK_SIGNING_SECRET",
    "GH_TOKEN",
    "private_key",
    "client_secret",
    "passphrase",
    "JWT_SECRET",
    "SESSION_SECRET",
    "ENCRYPTION_KEY",
    "SECRET_KEY_BASE",
    "DJANGO_SECRET_KEY",
    "NEXTAUTH_SECRET",
    "MYSQL_ROOT_PASSWORD",
    "REDIS_AUTH",
    "db.password",
    "spring.datasource.password",
    "api-key",
    "x-api-key",
    "apiSecret",
    "consumerSecret",
    "accessToken",
    "refresh_token",
    "id_token",
    "HMAC_KEY",
    "signingKey",
    "ssh_passphrase",
    "KEYSTORE_PASS",
    "admin_pwd",
    "BASIC_AUTH_PASSWORD",
    "sasl.jaas.password",
    "PGPASSWORD",
    "MONGO_INITDB_ROOT_PASSWORD",
    "COOKIE_SECRET",
]
for name in NAMES:
    value = _pw()
    shape = _RNG.choice(
        ["env", "yaml", "ini", "json_field", "k8s_env", "properties", "toml", "json_text"]
    )
    if shape == "env":
        payload: Any = {"file": f"# prod\nLOG_LEVEL=info\n{name}={value}\n"}
    elif shape == "yaml":
        payload = {"file": f"app:\n  {name}: {value}\n  port: 8080\n"}
    elif shape == "ini":
        payload = {"file": f"[main]\nhost = db\n{name} = {value}\n"}
    elif shape == "json_field":
        payload = {"config": {"nested": {name: value}}}
    elif shape == "k8s_env":
        payload = {"env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": name, "value": value}]}
    elif shape == "properties":
        payload = {"file": f"server.port=8080\n{name}: {value}\n"}
    elif shape == "toml":
        payload = {"file": f'[database]\nhost = "db"\n{name} = "{value}"\n'}
    else:
        payload = {"body": json.dumps({name: value, "region": "eu"})}
    _add("password_by_name", f"{shape}:{name}", payload, value)
for name in ("APP_KEY", "DB_PASS", "RAILS_MASTER_KEY", "SMTP_PASS", "master_key", "pw", "pass"):
    value = _pw()
    _add(
        "password_by_name", f"docker_env:{name}", {"c": f"docker run -e {name}={value} app"}, value
    )
HEXKEY = _r(_HEX, 32)
_add("password_by_name", "rails_master_key_hex", {"f": f"RAILS_MASTER_KEY={HEXKEY}"}, HEXKEY)
LARAVEL = base64.b64encode(bytes(_RNG.getrandbits(8) for _ in range(32))).decode()
_add("password_by_name", "laravel_app_key", {"f": f'APP_KEY="base64:{LARAVEL}"'}, LARAVEL)

# ------------------------------------------------------------------------------ XML
X = [_pw() for _ in range(8)]
_add(
    "xml",
    "maven_settings",
    {
        "x": "<servers><server><id>nexus</id><username>ci</username>"
        f"<password>{X[0]}</password></server></servers>"
    },
    X[0],
)
_add("xml", "api_key_element", {"x": f"<config><ApiKey>{X[1]}</ApiKey></config>"}, X[1])
_add(
    "xml",
    "attribute",
    {"x": f'<Resource name="jdbc/app" username="app" password="{X[2]}" url="jdbc:pg://db/app"/>'},
    X[2],
)
_add("xml", "spring_property", {"x": f'<property name="password" value="{X[3]}"/>'}, X[3])
_add("xml", "java_properties_entry", {"x": f'<entry key="db.password">{X[4]}</entry>'}, X[4])
_add(
    "xml",
    "nuget_config",
    {
        "x": "<packageSourceCredentials><acme>"
        f'<add key="ClearTextPassword" value="{X[5]}" /></acme></packageSourceCredentials>'
    },
    X[5],
)
_add(
    "xml",
    "client_secret_element",
    {"x": f"<oauth>\n  <client_secret>{X[6]}</client_secret>\n</oauth>"},
    X[6],
)
_add("xml", "cdata", {"x": f"<password><![CDATA[{X[7]}]]></password>"}, X[7])

# ------------------------------------------------------------------------ HTTP headers
H = [_r(_URL, 40) for _ in range(6)]
BASIC = base64.b64encode(f"admin:{_pw()}".encode()).decode()
_add(
    "http",
    "bearer_text",
    {"req": f"GET /v1/me HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {H[0]}\r\n"},
    H[0],
)
_add("http", "basic_text", {"req": f"authorization: Basic {BASIC}"}, BASIC)
_add("http", "token_scheme", {"req": f"Authorization: Token {H[1]}"}, H[1])
_add("http", "x_api_key", {"headers": {"X-Api-Key": H[2]}}, H[2])
_add(
    "http", "x_api_key_text", {"req": f"curl -H 'X-API-Key: {H[3]}' https://api.example.net"}, H[3]
)
_add(
    "http",
    "cookie",
    {"req": f"Cookie: _ga=GA1.2.3; sessionid={H[4]}; csrftoken={_r(_ALNUM, 32)}"},
    H[4],
)
_add(
    "http",
    "curl_header_bearer",
    {"cmd": f'curl -H "Authorization: Bearer {H[5]}" https://api'},
    H[5],
)

# --------------------------------------------------------------- URL-encoded and stringified
E = [_pw() for _ in range(6)]
_add(
    "encoded",
    "cookie_urlencoded",
    {"h": "Cookie: auth=" + quote(json.dumps({"password": E[0]}), safe="")},
    E[0],
)
_add(
    "encoded",
    "state_param",
    {
        "u": "https://idp.example.net/authorize?state="
        + quote(quote(f"client_secret={E[1]}&r=/", safe=""), safe="")
    },
    E[1],
)
_add(
    "encoded",
    "form_body",
    {"body": "grant_type=password&username=ada&password=" + quote(E[2], safe="")},
    E[2],
)
_add("encoded", "stringified_twice", {"b": json.dumps(json.dumps({"db": {"DB_PASS": E[3]}}))}, E[3])
_add(
    "encoded",
    "stringified_env_list",
    {"b": json.dumps([{"name": "SMTP_PASS", "value": E[4]}])},
    E[4],
)
_add(
    "encoded",
    "url_client_secret",
    {
        "u": f"https://oauth.example.net/token?client_id=abc&client_secret={E[5]}&grant_type=client_credentials"
    },
    E[5],
)

# -------------------------------------------------------------------- prose (password wording)
W = [_pw() for _ in range(6)]
_add("prose_password", "prose", {"m": f"Login with admin / {W[0]} on the staging box"}, W[0])
_add("prose_password", "prose", {"m": f"The new root password: {W[1]}"}, W[1])
_add("prose_password", "prose", {"m": f"I've set the password to {W[2]} for now"}, W[2])
_add("prose_password", "prose", {"m": f"username: ops password: {W[3]}"}, W[3])
_add("prose_password", "prose", {"m": f"DB creds are app/{W[4]} (rotate after the demo)"}, W[4])
_add("prose_password", "prose", {"m": f"pwd for the wifi: {W[5]}"}, W[5])


# ------------------------------------------------------------- configuration files and code
def _text(family: str, context: str, template: str) -> None:
    """A case whose text is ``template`` with each ``{pw}`` a fresh password (all must go)."""
    values = []

    def fresh(_: Any) -> str:
        values.append(_pw())
        return values[-1]

    import re

    text = re.sub(r"\{pw\}", fresh, template).replace("{{", "{").replace("}}", "}")
    _add(family, context, {"text": text}, *values)


for family, context, template in [
    ("config", "wp_config", "define( 'DB_PASSWORD', '{pw}' );\ndefine('AUTH_KEY', '{pw}');"),
    ("config", "ruby_hash", 'conn = PG.connect(:user => "app", :password => "{pw}")'),
    ("config", "ruby_symbol", "Stripe.configure(api_key: '{pw}', secret: '{pw}')"),
    ("config", "npmrc_legacy", "//registry.npmjs.org/:_authToken={pw}"),
    ("config", "npmrc_password", "//npm.example.net/:_password={pw}\nalways-auth=true"),
    ("config", "sql_mysql", "CREATE USER 'app'@'%' IDENTIFIED BY '{pw}';"),
    (
        "config",
        "sql_mysql_alter",
        "ALTER USER 'root'@'localhost' IDENTIFIED WITH caching_sha2_password BY '{pw}';",
    ),
    ("config", "sql_postgres", "CREATE ROLE app WITH LOGIN PASSWORD '{pw}';"),
    ("config", "sql_postgres_alter", "ALTER USER postgres PASSWORD '{pw}'"),
    ("config", "redis_conf", "bind 0.0.0.0\nrequirepass {pw}\nmasterauth {pw}\n"),
    ("config", "dockerfile_env", "FROM node:20\nENV NPM_TOKEN {pw}\nRUN npm ci"),
    (
        "config",
        "compose_env",
        "services:\n  db:\n    environment:\n      - POSTGRES_PASSWORD={pw}\n",
    ),
    ("config", "helm_set", "helm upgrade app ./chart --set db.password={pw} --set image.tag=1.2"),
    ("config", "kubectl_literal", "kubectl create secret generic db --from-literal=password={pw}"),
    ("config", "yaml_quoted", "db:\n  password: '{pw}'\n  user: app\n"),
    ("config", "yaml_double_quoted", 'smtp:\n  pass: "{pw}"\n'),
    ("config", "ini_spaced", "[database]\npassword : {pw}\nport = 5432\n"),
    (
        "config",
        "properties",
        "spring.datasource.password={pw}\nspring.datasource.url=jdbc:pg://db/app",
    ),
    ("config", "jdbc_query", "jdbc:postgresql://db:5432/app?user=app&password={pw}&ssl=true"),
    ("config", "ado_net", "Server=tcp:db,1433;Initial Catalog=app;User ID=sa;Pwd={pw};"),
    ("config", "js_object", "const cfg = {{ host: 'db', password: '{pw}' }};"),
    ("config", "go_struct", 'cfg := Config{{User: "app", Password: "{pw}"}}'),
    ("config", "python_kwargs", 'psycopg.connect(host="db", user="app", password="{pw}")'),
    ("config", "php_array", "'password' => '{pw}',"),
    ("config", "toml_inline", 'db = {{ user = "app", password = "{pw}" }}'),
    ("config", "html_form", '<input type="password" name="pw" value="{pw}">'),
    ("config", "redis_url_no_user", "REDIS_URL=redis://:{pw}@cache.internal:6379/0"),
    ("config", "amqp_url", "amqps://app:{pw}@mq.internal/vhost"),
    ("config", "ftp_url", "curl ftp://ops:{pw}@files.example.net/backup.tgz -O"),
    ("config", "smtp_url", "EMAIL_URL=smtp+tls://mailer:{pw}@smtp.example.net:587"),
    ("config", "git_credentials", "https://ci-bot:{pw}@git.example.net\n"),
    ("config", "pgpass", "db.internal:5432:app:app:{pw}"),
    ("config", "secret_string", '{{"Name": "prod/db", "SecretString": "{pw}"}}'),
    (
        "config",
        "ssm_parameter",
        '{{"Parameter": {{"Name": "/prod/db/password", "Type": "SecureString", "Value": "{pw}"}}}}',
    ),
    ("config", "shell_xtrace", "+ export DB_PASSWORD={pw}\n+ ./migrate.sh"),
    ("config", "env_quoted_spaces", 'SMTP_PASSWORD="{pw} with spaces"'),
    ("cli_secret", "gh_secret", "gh secret set DEPLOY_KEY --body '{pw}' --repo acme/app"),
    (
        "cli_secret",
        "aws_sm",
        "aws secretsmanager create-secret --name prod/db --secret-string '{pw}'",
    ),
    (
        "cli_secret",
        "aws_ssm",
        "aws ssm put-parameter --name /prod/db/password --type SecureString --value {pw}",
    ),
    ("cli_secret", "az_keyvault", "az keyvault secret set --vault-name kv --name db --value {pw}"),
    ("cli_secret", "vault_kv", "vault kv put secret/app db_password={pw}"),
    ("cli_secret", "heroku_config", "heroku config:set SESSION_SECRET={pw} -a web"),
    (
        "cli_secret",
        "gcloud_sql",
        "gcloud sql users set-password root --instance=db --password={pw}",
    ),
    (
        "cli_secret",
        "psql_conninfo",
        "psql 'host=db port=5432 user=app password={pw} sslmode=require'",
    ),
    ("cli_secret", "mysql_quoted", "mysql -u root -p'{pw}' -e 'show databases'"),
    ("cli_secret", "mysql_long_space", "mysqladmin -u root --password {pw} status"),
    ("cli_secret", "sshpass_env", "SSHPASS='{pw}' sshpass -e ssh ops@bastion"),
    (
        "cli_secret",
        "docker_login_pipe",
        "printf '%s' '{pw}' | docker login ghcr.io -u ci --password-stdin",
    ),
    ("cli_secret", "chpasswd", "echo 'ops:{pw}' | sudo chpasswd"),
    ("cli_secret", "sudo_s", "echo {pw} | sudo -S apt-get update"),
    (
        "cli_secret",
        "keytool_equals",
        "keytool -list -keystore k.jks -storepass:env X -keypass {pw}",
    ),
    ("cli_secret", "openssl_passout", "openssl genrsa -aes256 -passout pass:{pw} -out k.pem 4096"),
    ("cli_secret", "openssl_req", "openssl req -new -key k.pem -passin 'pass:{pw}' -out k.csr"),
    (
        "cli_secret",
        "pkcs12_password",
        "openssl pkcs12 -export -in c.pem -inkey k.pem -out c.p12 -password pass:{pw}",
    ),
    (
        "cli_secret",
        "curl_data",
        "curl -X POST https://api.example.net/login -d 'username=ops&password={pw}'",
    ),
    ("cli_secret", "curl_json", 'curl -d \'{{"username":"ops","password":"{pw}"}}\' https://api'),
    ("cli_secret", "wget_password", "wget --password={pw} --user=ops ftp://files/a"),
    ("cli_secret", "rsync_password", "RSYNC_PASSWORD={pw} rsync -a src/ backup::data"),
    (
        "cli_secret",
        "mongo_uri_flag",
        "mongosh --username admin --password '{pw}' mongodb://db:27017",
    ),
    ("cli_secret", "mongoexport_p", "mongoexport -u admin -p {pw} --db app -c users"),
    ("cli_secret", "ldappasswd", "ldappasswd -x -D cn=admin,dc=acme -w {pw} -s {pw} uid=ops"),
    ("cli_secret", "sqlplus", "sqlplus system/{pw}@//db:1521/ORCL"),
    ("cli_secret", "psexec", "psexec \\\\host -u admin -p {pw} cmd"),
    ("cli_secret", "java_d", "java -Dspring.datasource.password={pw} -jar app.jar"),
    ("cli_secret", "ansible_extra", "ansible-playbook site.yml --extra-vars 'db_password={pw}'"),
    ("cli_secret", "twine", "twine upload -u __token__ -p {pw} dist/*"),
    ("cli_secret", "npm_login", "npm config set //registry.npmjs.org/:_authToken {pw}"),
    (
        "cli_secret",
        "git_config",
        "git config --global url.https://ops:{pw}@git.example.net/.insteadOf https://git.example.net/",
    ),
    (
        "cli_secret",
        "rclone_pass",
        "rclone config create s3 s3 access_key_id=AK secret_access_key={pw}",
    ),
    ("headers", "x_vault_token", "X-Vault-Token: {pw}"),
    (
        "headers",
        "private_token",
        "curl --header 'PRIVATE-TOKEN: {pw}' https://gitlab.example.net/api/v4/user",
    ),
    ("headers", "proxy_auth", "Proxy-Authorization: Bearer {pw}"),
    ("headers", "api_key_header", "curl -H 'apikey: {pw}' https://api.example.net"),
    ("headers", "authorization_raw", "Authorization: {pw}"),
    (
        "headers",
        "oauth_fragment",
        "https://app.example.net/cb#access_token={pw}&token_type=bearer&expires_in=3600",
    ),
    ("headers", "har_pair", '{{"name": "X-Api-Key", "value": "{pw}"}}'),
    (
        "headers",
        "postman_env",
        '{{"values": [{{"key": "apiKey", "value": "{pw}", "enabled": true}}]}}',
    ),
    ("prose", "prose_token", "the token for the staging bot is {pw}, it expires Friday"),
    ("prose", "prose_secret", "client secret -> {pw}"),
    ("prose", "prose_passphrase", "my ssh passphrase = {pw}"),
    ("prose", "prose_creds_colon", "Credentials: ops / {pw}"),
    ("prose", "prose_quoted", 'Use "{pw}" as the password when prompted.'),
    ("prose", "prose_pw_for", "the password for root@db1 is {pw}."),
    ("cli_secret", "ssh_keygen_new", "ssh-keygen -t ed25519 -N '{pw}' -f deploy_key"),
    ("cli_secret", "ssh_keygen_change", "ssh-keygen -p -P {pw} -N {pw} -f deploy_key"),
    ("cli_secret", "openssl_k", "openssl enc -aes-256-cbc -k {pw} -in a -out b"),
    ("cli_secret", "unrar", "unrar x -p{pw} backup.rar"),
    ("cli_secret", "gpg_fd", "echo {pw} | gpg --batch --passphrase-fd 0 -d a.gpg"),
    ("cli_secret", "minio", "mc alias set s3 https://s3.example.net minio-admin {pw}"),
    ("code", "powershell_env", '$env:DB_PASSWORD = "{pw}"'),
    ("code", "powershell_secure", "$pw = ConvertTo-SecureString '{pw}' -AsPlainText -Force"),
    ("code", "requests_auth", "r = requests.get(url, auth=('admin', '{pw}'))"),
    ("code", "basic_auth_class", 'session.auth = HTTPBasicAuth("svc", "{pw}")'),
    ("code", "network_credential", 'var c = new NetworkCredential("svc", "{pw}");'),
    ("code", "smtp_login", 'server.login("alerts@example.net", "{pw}")'),
    ("code", "jdbc_connection", 'DriverManager.getConnection(url, "app", "{pw}");'),
    ("config", "yaml_block", "db:\n  password: >-\n    {pw}\n  user: app\n"),
    ("prose", "german", "Passwort: {pw}"),
    ("prose", "spanish", "contraseña: {pw}"),
    ("prose", "french", "mot de passe : {pw}"),
]:
    _text(family, context, template)


# ------------------------------------------------------------ formats inside other formats
TG = _r(string.digits, 10) + ":AA" + _r(_URL, 33)
_add("telegram_bot_token", "bot_url", {"u": f"https://api.telegram.org/bot{TG}/sendMessage"}, TG)
_add(
    "telegram_bot_token",
    "bot_url_curl",
    {"c": f"curl -s https://api.telegram.org/bot{TG}/getMe"},
    TG,
)
STS = "IQoJb3JpZ2luX2Vj" + _r(_B64, 300)
_add(
    "aws_presigned",
    "security_token",
    {
        "u": "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIA"
        + _r(_UPPER, 16)
        + "%2F20261129%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Security-Token="
        + quote(STS, safe="")
    },
    STS[:60],
)
FN = _r(_URL, 54) + "=="
_add(
    "azure_function_key",
    "url",
    {"u": f"https://acme-fn.azurewebsites.net/api/ingest?code={FN}"},
    FN,
)
_add("azure_function_key", "header", {"h": {"x-functions-key": FN}}, FN)
PUTTY_PRIV = [_r(_B64, 64) for _ in range(3)]
_add(
    "putty",
    "ppk2_encrypted",
    {
        "f": "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: aes256-cbc\nComment: ops\n"
        "Public-Lines: 1\n"
        + _r(_B64, 64)
        + "\nPrivate-Lines: 3\n"
        + "\n".join(PUTTY_PRIV)
        + "\nPrivate-MAC: "
        + _r(_HEX, 40)
    },
    *PUTTY_PRIV,
)
OTP = "".join(_RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(32))
_add("totp_seed", "otpauth", {"u": f"otpauth://totp/Acme:ops?secret={OTP}&issuer=Acme"}, OTP)
GH = _github("ghp_")
_add(
    "github",
    "git_remote",
    {"c": f"git remote set-url origin https://{GH}@github.com/acme/app.git"},
    GH,
)
_add("github", "x_access_token", {"c": f"https://x-access-token:{GH}@github.com/acme/app"}, GH)
DISCORD = "MT" + _r(_ALNUM, 24) + "." + _r(_URL, 6) + "." + _r(_URL, 38)
_add("discord_bot_token", "bot_header", {"h": f"Authorization: Bot {DISCORD}"}, DISCORD)
for name in (
    "DB_PASSWORD_2",
    "OPENAI_API_KEY_PROD",
    "STRIPE_SECRET_KEY_LIVE",
    "GITHUB_TOKEN_CI",
    "api_key_v2",
    "SMTP_PASS_OLD",
    "REDIS_PASSWORD_B64",
):
    value = _pw()
    _add("password_by_name", f"qualified:{name}", {"env": f"{name}={value}"}, value)
    value = _pw()
    _add("password_by_name", f"qualified_field:{name}", {"cfg": {name: value}}, value)


# ---------------------------------------------------------------------------------- clean

CLEAN: list[tuple[str, Any]] = [
    (
        "sm_arn",
        {"arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db/password-Xy9Abc"},
    ),
    (
        "sm_arn_text",
        {"m": "SecretId=arn:aws:secretsmanager:us-east-2:210987654321:secret:api/token-Q1w2E3"},
    ),
    (
        "mysql_yes",
        {"log": "ERROR 1045 (28000): Access denied for user 'ops'@'10.1.2.3' (using password: NO)"},
    ),
    (
        "json_schema",
        {
            "schema": {
                "properties": {
                    "api_key": {"type": "string", "format": "password"},
                    "client_secret": {"$ref": "#/defs/s"},
                }
            }
        },
    ),
    (
        "json_schema_text",
        {"s": json.dumps({"properties": {"password": {"type": "string", "writeOnly": True}}})},
    ),
    (
        "pagination",
        {
            "NextToken": base64.b64encode(b'{"page": 4}').decode(),
            "next_cursor": "dXNlcjpVMEc5V0ZYTlo=",
        },
    ),
    ("masked", {"password": "********", "token": "ghp_****************************abcd"}),
    ("placeholder", {"OPENAI_API_KEY": "<your-api-key>"}),
    (
        "placeholder",
        {"env": "API_KEY=YOUR_API_KEY_HERE\nDB_PASSWORD=${DB_PASSWORD}\nGH=$GITHUB_TOKEN"},
    ),
    ("placeholder", {"code": 'db = connect(password=os.environ["DB_PASSWORD"])'}),
    ("placeholder", {"code": "const key = process.env.API_KEY ?? ''"}),
    ("placeholder", {"secret": "xxxxxxxx", "password": "changeme", "k": "sk-..."}),
    ("placeholder", {"aws": "aws_access_key_id=AKIAIOSFODNN7EXAMPLE"}),
    (
        "placeholder",
        {
            "k8s": "env:\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n"
            "      name: db\n      key: password\n"
        },
    ),
    (
        "placeholder",
        {"yaml": "password: {{ .Values.db.password }}\ntoken: ${{ secrets.DEPLOY_TOKEN }}"},
    ),
    ("placeholder", {"cmd": "mysql -u root -p"}),
    ("placeholder", {"cmd": "docker login --password-stdin -u ci ghcr.io < token.txt"}),
    ("placeholder", {"cmd": "curl -u $USER:$PASS https://api.example.net"}),
    ("placeholder", {"cmd": 'sshpass -p "$SSHPASS" ssh ops@bastion'}),
    ("placeholder", {"cmd": "PGPASSWORD=$PGPASSWORD psql -h db"}),
    ("placeholder", {"xml": "<password>${env.DB_PASSWORD}</password>"}),
    ("placeholder", {"ini": "[client]\npassword = <password>\n"}),
    ("uuid", {"request_id": _uuid(), "trace": _uuid()}),
    ("git_sha", {"commit": _r(_HEX, 40), "parent": _r(_HEX, 40)}),
    ("digest", {"image": "ghcr.io/acme/app@sha256:" + _r(_HEX, 64)}),
    (
        "base64_text",
        {"b": base64.b64encode(b"The quick brown fox jumps over the lazy dog. " * 3).decode()},
    ),
    ("arn", {"role": "arn:aws:iam::123456789012:role/service-role/agent-runner"}),
    (
        "prose",
        {"m": "The password reset token expired; request a new token and rotate the secret key."},
    ),
    ("prose", {"m": "Never commit private keys, API keys or passwords. Use the secret manager."}),
    ("prose", {"m": "Authorization: Bearer tokens are described in RFC 6750."}),
    ("prose", {"m": "Set `auth: token` in the config to use a token instead of a password."}),
    ("code", {"code": 'token = request.headers.get("Authorization")'}),
    ("code", {"code": "password = getpass.getpass('Password: ')"}),
    ("code", {"code": "api_key = os.getenv('API_KEY')"}),
    ("code", {"code": 'secret := os.Getenv("WEBHOOK_SECRET")'}),
    ("ids", {"workflow_run": "sk_" + "12", "pk": "pk_live_" + _r(_ALNUM, 24)}),
    ("css", {"css": ".token-input { color: #fff } .password-strength { width: 40px }"}),
    ("numbers", {"password_min_length": 12, "token_ttl_seconds": 3600, "max_tokens": 4096}),
    ("hashes", {"log": f'md5={_r(_HEX, 32)} sha1={_r(_HEX, 40)} etag="{_r(_HEX, 32)}"'}),
    (
        "vendor_ids",
        {"m": f"datadog monitor {_r(string.digits, 8)} and twilio message SM{_r(_HEX, 32)}"},
    ),
    (
        "k8s_configmap",
        {"data": {"LOG_LEVEL": "debug", "KEY_PREFIX": "app", "TOKEN_AUDIENCE": "api"}},
    ),
    ("url", {"u": "https://example.net/reset-password?lang=en&step=2"}),
    ("argv", {"argv": ["mysql", "-u", "app", "-p", "app_db"]}),
    ("cli_lookalike", {"c": "openssl req -new -key k.pem -keyform PEM -out k.csr"}),
    ("cli_lookalike", {"c": "ssh-keygen -t ed25519 -N '' -f id && unrar x -p- a.rar"}),
    ("code_lookalike", {"c": "requests.get(url, auth=(user, password)); server.login(user, pw)"}),
    ("prose_lookalike", {"m": "Passwort: erforderlich. mot de passe : obligatoire"}),
    ("yaml_block_placeholder", {"y": "password: |\n  {{ .Values.db.password }}\n"}),
    ("prose_terms", {"m": "The API key is sha256-hashed; the password is 2fa-enabled for admins."}),
    ("analytics_cookie", {"h": "Cookie: _ga=GA1.2.1111111111.2222222222; theme=dark"}),
    ("code_auth_variable", {"c": "requests.get(url, auth=auth)"}),
    ("cli_prose", {"m": "Use rabbitmqctl add_user to create users."}),
    ("cfn_ref", {"yaml": "MasterUserPassword: !Ref DbPassword\nApiKey: !GetAtt Key.Value"}),
    ("cfn_sub", {"yaml": "Password: !Sub '{{resolve:secretsmanager:${Secret}:SecretString:pw}}'"}),
    ("code_env_call", {"code": 'password=env("DB_PASSWORD")\nSECRET_KEY=config("SECRET_KEY")'}),
    ("terraform_ref", {"hcl": "password = random_password.db.result\ntoken = var.api_token"}),
    ("prose_words", {"m": "The token is valid for 3600 seconds; the password is required."}),
    (
        "prose_words",
        {"m": "The api key is stored in Secrets Manager, the secret is rotated weekly."},
    ),
    (
        "prose_words",
        {"m": "The password for user42 is required and the token for build 77 is ready."},
    ),
    ("names", {"password_policy": "strict", "token_expiry": 3600, "secret_name": "prod/db"}),
    (
        "names",
        {"tokens": 4096, "keys": ["a", "b"], "passwordless": True, "password_hash_algo": "argon2"},
    ),
    (
        "yaml_placeholder",
        {"y": "password: ${{ secrets.DB_PASSWORD }}\napi_key: '{{ vault_api_key }}'"},
    ),
    ("otp_prose", {"m": "Enable TOTP: scan the QR code, then enter the 6-digit code."}),
    ("argv", {"argv": ["redis-cli", "-h", "cache", "-p", "6379", "ping"]}),
    ("argv", {"argv": ["docker", "login", "--password-stdin", "-u", "ci", "ghcr.io"]}),
    ("argv", {"argv": ["ls", "-la", "/var/log"], "tags": ["-x", "secret", "token"]}),
    (
        "stringified_placeholder",
        {"b": json.dumps({"password": "${DB_PASSWORD}", "api_key": "<your-api-key>"})},
    ),
]


def _visible(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _survivors(case: Held) -> list[str]:
    result = _visible(redact(case.payload))
    encoded = {quote(part, safe="") for part in case.secrets}
    return [part for part in (*case.secrets, *encoded) if part and part in result]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.secrets], ids=lambda c: f"{c.family}/{c.context}"
)
def test_given_a_held_out_secret_when_redacted_then_no_part_survives(case: Held):
    assert not _survivors(case), _visible(redact(case.payload))
    # The paths the functions take agree: the consumer's raw-JSON shortcut must not call the
    # payload clean, and the copy-only-when-needed path must make the same copy.
    assert not payload_json_clean(json.dumps({"payload": case.payload}).encode())
    assert redact_if_needed(case.payload) == redact(case.payload)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.context.startswith("argv")], ids=lambda c: c.context
)
def test_given_an_argument_list_with_a_password_when_redacted_twice_then_unchanged(case: Held):
    once = redact(case.payload)
    assert redact(once) == once
    assert len(once["argv"]) == len(case.payload["argv"])
    assert "[REDACTED:password]" in json.dumps(once)


@pytest.mark.parametrize(("context", "payload"), CLEAN, ids=[c for c, _ in CLEAN])
def test_given_a_held_out_clean_payload_when_redacted_then_it_is_unchanged(context, payload):
    assert redact(payload) == payload
    assert redact_if_needed(payload) in (None, payload)
