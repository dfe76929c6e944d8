"""The credential rules redaction applies: one row per format, written from the formats' public
descriptions (vendor documentation, gitleaks, trufflehog, secrets-patterns-db); values ours.

A rule is data, not code. ``pattern`` is RE2 syntax (no lookaround, no backreference: every rule
runs in linear time); when it has a group named ``s`` only that group is replaced, otherwise the
whole match. ``literals`` are what the one-pass prefilter looks for: a rule runs only on text
that holds one of them (case-insensitively when ``caseless``). ``check`` names a validator in
``punk_records.redaction`` (checksum, placeholder, shape). ``example`` renders a synthetic value
for the corpus (``{a:36}`` = 36 alphanumerics; see ``bench/redaction_corpus.py``); ``context``
holds the words a corpus case puts before it when the format alone is too generic.

To add a rule: append a ``Rule`` below, then run ``make bench`` (the corpus gains cases for it)
and ``pytest tests/unit/test_redaction*.py``. docs/redaction.md says more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["RULES", "Rule"]


@dataclass(frozen=True)
class Rule:
    """One credential format. ``family`` is the rule's id; ``kind`` names the marker."""

    family: str
    kind: str
    pattern: str
    literals: tuple[str, ...]
    example: str = ""
    caseless: bool = False
    check: str = "token"
    context: str = ""
    facts: str = ""
    anchor: str = ""
    tails: tuple[tuple[str, str], ...] = ()


# A token's left edge: the start of the text or a character that cannot belong to it.
_L = r"(?:^|[^A-Za-z0-9_+/-])"
_L_DOT = r"(?:^|[^A-Za-z0-9_+/.-])"
_B64 = "A-Za-z0-9+/"
_URL = "A-Za-z0-9_-"
# Prose: a secret word, what it is for ("for the staging bot"), then a verb or a sign.
_PROSE_FOR = r"(?:[ \t]+(?:for|of|on)(?:[ \t]+[A-Za-z0-9_.@-]{1,30}){1,3})?"
_PROSE_VERB = (
    r"(?:[ \t]+(?:is|was|of|to|set to|changed to|reset to|now|are)|[ \t]*(?:=|:|->))[ \t]+"
)
_PROSE_PASSWORD = (
    r"(?:\b(?:password|passwd|passphrase|pwd|pw|passcode)"
    + _PROSE_FOR
    + _PROSE_VERB
    # a user/password pair after a login word: "login with admin / X", "creds are app/X"
    + r"|\b(?:log[ \t]?in|sign[ \t]?in|creds|credentials|user(?:name)?)(?:[ \t]+(?:with|as|are|"
    r"is)[ \t]+|[ \t]*[=:][ \t]*|[ \t]+)[A-Za-z0-9_.@-]{1,64}[ \t]*/[ \t]*)[\"'`]?"
)
_PROSE_TOKEN = (
    r"\b(?:token|secret|api[ _-]?key|access[ _-]?key|secret[ _-]?key|client[ _-]?secret|"
    r"passphrase)" + _PROSE_FOR + _PROSE_VERB + r"[\"'`]?"
)
# Where the prose rules can match, for the prefilter: the secret word, then what it is for or a
# verb or a sign (no open-ended run: on a hostile "password: password: ..." that costs time).
_VERB_ANCHOR = (
    r"(?:[ \t]+(?:is|was|of|to|set|changed|reset|now|are|for|on)[ \t]|[ \t]*(?:=|:|->)[ \t])"
)


def _prose_value(marks: str) -> str:
    """A value in prose: one word holding one of ``marks`` (so that a run of plain words, such
    as a hostile "password: password: ...", matches nowhere), not a marker, not ending in the
    sentence's punctuation."""
    word = r"[^\s\"'`]{0,126}"
    return rf"(?P<s>(?:[^\s\"'`\[]{word})?[{marks}](?:{word}[^\s\"'`.,;:!?)])?)"


_PROSE_VALUE = _prose_value(r"0-9!#$%^&*_+=~@/\\-")
_PROSE_TOKEN_VALUE = _prose_value("0-9")


def _prefixed(
    family: str,
    kind: str,
    prefix: str,
    body: str,
    example: str,
    *,
    minimum: int,
    literal: str | None = None,
    check: str = "token",
    facts: str = "",
    left: str = _L,
) -> Rule:
    """A token made of a fixed prefix and a run of one alphabet; the whole run is replaced."""
    pattern = f"{left}(?P<s>{prefix}[{body}]{{{minimum},}}(?:={{0,2}}))"
    return Rule(family, kind, pattern, (literal or prefix.replace("\\", ""),), example,
                check=check, facts=facts)  # fmt: skip


def _keyed(
    family: str,
    kind: str,
    keywords: str,
    value: str,
    example: str,
    literals: tuple[str, ...],
    context: str,
    facts: str = "",
    check: str = "token",
    strict: bool = True,
) -> Rule:
    """A generic-looking value that counts only a few characters after a vendor keyword and,
    when ``strict``, a secret word (``HEROKU_API_KEY=<uuid>``, "the Twilio auth token is ..."),
    so that "heroku app <uuid>" stays."""
    secret_word = r"(?:key|token|secret|pass|pwd|auth|pat|cred|ssws)" if strict else ""
    pattern = (
        rf"(?i)(?:{keywords})[^\n\x00]{{0,48}}?{secret_word}[^\n\x00]{{0,24}}?"
        rf"(?:[^A-Za-z0-9_+/.-])(?P<s>{value})(?:[^A-Za-z0-9_+/=-]|$)"
    )
    anchor = rf"(?i)(?:{keywords})"
    return Rule(family, kind, pattern, literals, example, caseless=True, check=check,
                context=context, facts=facts, anchor=anchor)  # fmt: skip


RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------ private keys and blocks
    Rule(
        "private_key_pem",
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[^\x00]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|[A-Za-z0-9+/=\s:,.\\-]*)",
        ("PRIVATE KEY",),
        "pem",
        check="any",
        facts="PEM armour: BEGIN ... PRIVATE KEY ... END (RSA, EC, DSA, OPENSSH, PKCS#8, PGP)",
    ),
    Rule(
        "private_key_base64_pem",
        "private_key",
        _L + r"(?P<s>LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})",
        ("LS0tLS1CRUdJTi",),
        "b64pem",
        check="b64_private_key",
        facts="base64 of a PEM private key (kubeconfig client-key-data, Secret data)",
    ),
    Rule(
        "putty_private_key",
        "private_key",
        r"PuTTY-User-Key-File-[23]: [^\x00]*?Private-(?:Lines: \d+|MAC: [0-9a-f]+)"
        r"[A-Za-z0-9+/=\s]*(?:Private-MAC: [0-9a-f]+)?",
        ("PuTTY-User-Key-File",),
        "putty",
        check="any",
        facts="PuTTY .ppk: header, Public-Lines, Private-Lines and Private-MAC",
    ),
    Rule(
        "age_secret_key",
        "age_secret_key",
        r"(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7Lqpzry9x8gf2tvdw0s3jn54khce6mua7l]{58})",
        ("AGE-SECRET-KEY-1",),
        "AGE-SECRET-KEY-1{bechU:58}",
        facts="age X25519 identity: AGE-SECRET-KEY-1 + 58 bech32 characters",
    ),
    # ------------------------------------------------------------------ cloud providers
    Rule(
        "aws_access_key_id",
        "aws_access_key_id",
        r"(?:^|[^A-Za-z0-9])(?P<s>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?:[^A-Za-z0-9]|$)",
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        "AKIA{A:16}",
        check="aws_id",
        facts="AKIA (long-term) / ASIA (STS) + 16 base32 upper-case characters",
    ),
    Rule(
        "aws_secret_access_key",
        "aws_secret_access_key",
        r"(?i)(?:aws|amazon|akia|asia|secret|access.?key)"
        r"[^\n]{0,80}?(?:^|[^A-Za-z0-9/+])(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
        ("aws", "amazon", "akia", "asia", "secret", "access"),
        "{b64s:40}",
        caseless=True,
        check="aws_secret",
        context="aws_secret_access_key = ",
        facts="40 base64 characters, near an AWS word, a key id or a secret-like name",
    ),
    Rule(
        "aws_secret_by_name",
        "aws_secret_access_key",
        r"(?i)[A-Za-z0-9_.-]*(?:s3|sk|cred|key|secret|aws)[A-Za-z0-9_.-]*[\"']?[ \t]*[:=][ \t]*"
        r"[\"']?(?P<s>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)",
        ("s3", "sk", "cred", "key", "secret", "aws"),
        "{b64s:40}",
        caseless=True,
        check="aws_secret",
        context="S3_BACKUP_SK=",
        facts="a 40-character AWS-shaped secret assigned to any key-, secret- or AWS-like name",
    ),
    Rule(
        "netrc_password",
        "password",
        r"(?i)\bmachine\s+\S+\s+login\s+\S+\s+password\s+(?P<s>\S+)",
        ("machine",),
        "machine api.example.com login deploy password {pw}",
        caseless=True,
        check="value",
        facts=".netrc: machine HOST login USER password SECRET",
    ),
    Rule(
        "aws_session_token",
        "aws_session_token",
        _L + r"(?P<s>(?:FwoGZXIvYXdzE|IQoJb3JpZ2luX2Vj|FQoGZXIvYXdzE)[A-Za-z0-9+/]{60,}={0,2})",
        ("FwoGZXIvYXdzE", "IQoJb3JpZ2luX2Vj", "FQoGZXIvYXdzE"),
        "IQoJb3JpZ2luX2Vj{b64:200}",
        facts="STS session token: base64 starting with the fixed IQoJb3JpZ2luX2Vj header",
    ),
    _prefixed(
        "google_api_key",
        "google_api_key",
        "AIza",
        _URL,
        "AIza{u:35}",
        minimum=35,
        facts="AIza + 35 URL-safe characters",
    ),
    _prefixed(
        "google_oauth_client_secret",
        "google_oauth_secret",
        "GOCSPX-",
        _URL,
        "GOCSPX-{u:28}",
        minimum=24,
        facts="GOCSPX- + 28 URL-safe characters",
    ),
    Rule(
        "google_oauth_refresh_token",
        "google_oauth_token",
        _L + r"(?P<s>1//0[A-Za-z0-9_-]{30,})",
        ("1//0",),
        "1//0{u:60}",
        facts="1//0 + URL-safe characters (refresh token)",
    ),
    _prefixed(
        "google_oauth_access_token",
        "google_oauth_token",
        r"ya29\.",
        "A-Za-z0-9_.-",
        "ya29.{u:80}",
        minimum=20,
        facts="ya29. + URL-safe characters",
    ),
    Rule(
        "gcp_service_account",
        "private_key",
        r"\"private_key_id\"\s*:\s*\"(?P<s>[a-f0-9]{40})\"",
        ("private_key_id",),
        "",
        check="any",
        facts="service-account JSON private_key_id (the key itself is PEM)",
    ),
    Rule(
        "azure_storage_key",
        "azure_storage_key",
        r"(?i)(?:AccountKey|SharedAccessKey|azure[_.-]?storage[_.-]?key|storage[_.-]?account"
        r"[_.-]?key)[\"']?\s*[=:]\s*[\"']?(?P<s>[A-Za-z0-9+/]{40,88}={0,2})",
        ("AccountKey", "SharedAccessKey", "storage"),
        "{b64:86}==",
        caseless=True,
        context="AccountKey=",
        facts="88 base64 characters after AccountKey= (also SharedAccessKey=)",
    ),
    Rule(
        "azure_sas_token",
        "azure_sas_token",
        r"(?i)(?:^|[?&;\s\"'])sig=(?P<s>[A-Za-z0-9%+/]{30,}(?:%3D|=){0,2})",
        ("sig=",),
        "sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01T00:00:00Z&sig={b64:43}%3D",
        caseless=True,
        check="sas",
        facts="SAS query: sv=, sp=, se= and an HMAC in sig=",
    ),
    Rule(
        "azure_function_key",
        "azure_function_key",
        r"(?i)\.azurewebsites\.net/(?:api|runtime/webhooks)/[^\s?#\"']*\?(?:[^\s#\"']*&)?code="
        r"(?P<s>[A-Za-z0-9_%=-]{20,})",
        ("azurewebsites.net",),
        "https://acme-fn.azurewebsites.net/api/ingest?code={u:54}==",
        caseless=True,
        facts="Azure Functions key in the function URL: ...azurewebsites.net/api/<fn>?code=<key>",
    ),
    Rule(
        "azure_ad_client_secret",
        "azure_client_secret",
        r"(?:^|[^A-Za-z0-9_~.-])(?P<s>[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34})"
        r"(?:[^A-Za-z0-9_~.-]|$)",
        ("Q~",),
        "{a:3}8Q~{u:34}",
        facts="Entra ID client secret: 3 chars, a digit, Q~, 31-34",
    ),
    _keyed(
        "azure_devops_pat",
        "azure_devops_pat",
        r"azure|devops|azdo|vsts",
        r"[a-z2-7]{52}|[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}",
        "{b32l:52}",
        ("azure", "devops", "azdo", "vsts"),
        "AZURE_DEVOPS_PAT=",
        facts="52 base32 characters (or 84 with AZDO) next to an Azure DevOps word",
    ),
    Rule(
        "alibaba_access_key_id",
        "alibaba_access_key",
        _L + r"(?P<s>LTAI[A-Za-z0-9]{12,20})",
        ("LTAI",),
        "LTAI{a:20}",
        facts="LTAI + 12-20 alphanumerics",
    ),
    _keyed(
        "alibaba_secret",
        "alibaba_secret",
        r"alibaba|aliyun|alicloud",
        r"[A-Za-z0-9]{30}",
        "{a:30}",
        ("alibaba", "aliyun", "alicloud"),
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET=",
        facts="30 alphanumerics next to an Alibaba word",
    ),
    Rule(
        "digitalocean_token",
        "digitalocean_token",
        _L + r"(?P<s>do[opr]_v1_[a-f0-9]{64})",
        ("_v1_",),
        "dop_v1_{h:64}",
        facts="dop_v1_ / doo_v1_ / dor_v1_ + 64 hex",
    ),
    _prefixed(
        "heroku_api_key",
        "heroku_api_key",
        "HRKU-",
        _URL,
        "HRKU-AA{u:58}",
        minimum=30,
        facts="HRKU- + URL-safe characters",
    ),
    _keyed(
        "heroku_api_key_legacy",
        "heroku_api_key",
        r"heroku",
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "{uuid}",
        ("heroku",),
        "HEROKU_API_KEY=",
        facts="a UUID next to the word heroku",
        check="any",
    ),
    Rule(
        "flyio_token",
        "flyio_token",
        _L + r"(?P<s>(?:FlyV1 )?(?:fo1_[A-Za-z0-9_-]{30,}|fm[12][ar]?_[A-Za-z0-9+/=_-]{30,}))",
        ("fo1_", "fm1", "fm2_"),
        "fm2_{b64:120}",
        facts="fo1_ / fm1a_ / fm2_ + base64",
    ),
    Rule(
        "cloudflare_origin_ca_key",
        "cloudflare_token",
        _L + r"(?P<s>v1\.0-[a-f0-9]{24}-[a-f0-9]{146})",
        ("v1.0-",),
        "v1.0-{h:24}-{h:146}",
        facts="v1.0- + 24 hex + - + 146 hex",
    ),
    _keyed(
        "cloudflare_api_token",
        "cloudflare_token",
        r"cloudflare|cf_api|cf_token|cf[_-]?key",
        r"[A-Za-z0-9_-]{37,40}",
        "{u:40}",
        ("cloudflare", "cf_"),
        "CLOUDFLARE_API_TOKEN=",
        facts="40 URL-safe characters next to a Cloudflare word",
    ),
    Rule(
        "ibm_cloud_api_key",
        "ibm_api_key",
        r"(?i)(?:ibm|bluemix|ibmcloud)[A-Za-z0-9_.\-]{0,30}[\"']?\s*[:=]\s*[\"']?"
        r"(?P<s>[A-Za-z0-9_-]{44})(?:[^A-Za-z0-9_-]|$)",
        ("ibm", "bluemix"),
        "{u:44}",
        caseless=True,
        context="IBM_CLOUD_API_KEY=",
        facts="44 URL-safe characters next to an IBM word",
    ),
    # ------------------------------------------------------------------ code hosting and CI
    Rule(
        "github_token",
        "github_token",
        r"(?:^|[^A-Za-z0-9_])(?P<s>gh[pousr]_[A-Za-z0-9]{30,})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        "ghp_{gh}",
        check="github",
        facts="ghp_/gho_/ghu_/ghs_/ghr_ + 30 random base62 + 6 base62 of the CRC32 of the 30",
    ),
    _prefixed(
        "github_fine_grained_pat",
        "github_token",
        "github_pat_",
        "A-Za-z0-9_",
        "github_pat_11{A:20}_{a:59}",
        minimum=40,
        facts="github_pat_ + 22 + _ + 59",
    ),
    Rule(
        "gitlab_token",
        "gitlab_token",
        _L + r"(?P<s>(?:glpat|gldt|glrt|glft|glsoat|glptt|glimt|gloas|glcbt|glffct|glagent|"
        r"glwt|glrtr|glsct)-[A-Za-z0-9_.-]{20,})",
        (
            "glpat-",
            "gldt-",
            "glrt-",
            "glft-",
            "glsoat-",
            "glptt-",
            "glimt-",
            "gloas-",
            "glcbt-",
            "glffct-",
            "glagent-",
            "glwt-",
            "glrtr-",
            "glsct-",
        ),
        "glpat-{u:20}",
        facts="glpat-/gldt-/glrt-/glft-/glsoat-/glptt-/glimt-/gloas-/glcbt-...",
    ),
    _prefixed(
        "gitlab_runner_registration",
        "gitlab_token",
        "GR1348941",
        _URL,
        "GR1348941{u:20}",
        minimum=20,
        facts="GR1348941 + 20 URL-safe characters",
    ),
    _prefixed(
        "bitbucket_app_password",
        "bitbucket_token",
        "ATBB",
        "A-Za-z0-9_=.-",
        "ATBB{a:32}",
        minimum=28,
        facts="ATBB + 32 characters",
    ),
    _prefixed(
        "atlassian_api_token",
        "atlassian_token",
        "AT[AC]TT3",
        "A-Za-z0-9_=.-",
        "ATATT3xFfGF0{u:180}",
        minimum=50,
        literal="TT3",
        facts="ATATT3 / ATCTT3 + ~180 characters",
    ),
    _keyed(
        "atlassian_legacy_token",
        "atlassian_token",
        r"atlassian|jira|confluence",
        r"[A-Za-z0-9]{24}",
        "{a:24}",
        ("atlassian", "jira", "confluence"),
        "JIRA_API_TOKEN=",
        facts="24 alphanumerics next to an Atlassian word",
    ),
    _prefixed(
        "circleci_token",
        "circleci_token",
        "CCIPAT_",
        "A-Za-z0-9_",
        "CCIPAT_{a:22}_{h:40}",
        minimum=40,
        facts="CCIPAT_ + 22 + _ + 40 hex",
    ),
    _prefixed(
        "buildkite_token",
        "buildkite_token",
        "bkua_",
        "a-f0-9",
        "bkua_{h:40}",
        minimum=40,
        facts="bkua_ + 40 hex",
    ),
    Rule(
        "sonarqube_token",
        "sonarqube_token",
        _L + r"(?P<s>sq[pau]_[a-f0-9]{40})",
        ("sqp_", "squ_", "sqa_"),
        "squ_{h:40}",
        facts="sqp_/squ_/sqa_ + 40 hex",
    ),
    _prefixed(
        "docker_hub_token",
        "docker_token",
        "dckr_(?:pat|oat)_",
        _URL,
        "dckr_pat_{u:27}",
        minimum=20,
        literal="dckr_",
        facts="dckr_pat_ / dckr_oat_ + 27 URL-safe",
    ),
    Rule(
        "jfrog_token",
        "jfrog_token",
        _L + r"(?P<s>(?:AKCp|cmVmdGtu)[A-Za-z0-9]{50,})",
        ("AKCp", "cmVmdGtu"),
        "AKCp{a:69}",
        facts="AKCp + 69 (API key) or cmVmdGtu + 56 (ref)",
    ),
    _prefixed(
        "npm_token",
        "npm_token",
        "npm_",
        "A-Za-z0-9",
        "npm_{a:36}",
        minimum=36,
        facts="npm_ + 36 alphanumerics",
    ),
    _prefixed(
        "pypi_token",
        "pypi_token",
        "pypi-AgE",
        _URL,
        "pypi-AgEIcHlwaS5vcmc{u:70}",
        minimum=50,
        facts="pypi- + macaroon, base64 starting AgEIcHlwaS5vcmc",
    ),
    _prefixed(
        "rubygems_token",
        "rubygems_token",
        "rubygems_",
        "a-f0-9",
        "rubygems_{h:48}",
        minimum=48,
        facts="rubygems_ + 48 hex",
    ),
    _prefixed(
        "clojars_token",
        "clojars_token",
        "CLOJARS_",
        "a-z0-9",
        "CLOJARS_{l:60}",
        minimum=60,
        facts="CLOJARS_ + 60 lower-case alphanumerics",
    ),
    _prefixed(
        "nuget_api_key",
        "nuget_api_key",
        "oy2",
        "a-z0-9",
        "oy2{l:43}",
        minimum=43,
        facts="oy2 + 43 lower-case alphanumerics",
    ),
    _prefixed(
        "terraform_cloud_token",
        "terraform_token",
        r"[A-Za-z0-9]{14}\.atlasv1\.",
        "A-Za-z0-9_=-",
        "{a:14}.atlasv1.{u:67}",
        minimum=60,
        literal=".atlasv1.",
        facts="14 + .atlasv1. + 60-70 characters",
    ),
    Rule(
        "vault_token",
        "vault_token",
        _L_DOT + r"(?P<s>hv[sbr]\.[A-Za-z0-9_-]{24,})",
        ("hvs.", "hvb.", "hvr."),
        "hvs.{u:90}",
        facts="hvs. / hvb. / hvr. + 24 or more URL-safe characters",
    ),
    _keyed(
        "vault_token_legacy",
        "vault_token",
        r"vault",
        r"s\.[A-Za-z0-9]{24}",
        "s.{a:24}",
        ("vault",),
        "VAULT_TOKEN=",
        facts="s. + 24 alphanumerics next to the word vault",
    ),
    Rule(
        "databricks_token",
        "databricks_token",
        _L + r"(?P<s>dapi[a-f0-9]{32}(?:-\d)?)",
        ("dapi",),
        "dapi{h:32}",
        facts="dapi + 32 hex (personal access token), optional -N suffix",
    ),
    Rule(
        "gitea_token",
        "gitea_token",
        r"(?i)(?:gitea|forgejo|codeberg)[^\n\x00]{0,40}?[^A-Za-z0-9](?P<s>[a-f0-9]{40})"
        r"(?:[^A-Za-z0-9]|$)",
        ("gitea", "forgejo", "codeberg"),
        "{h:40}",
        caseless=True,
        context="GITEA_TOKEN=",
        facts="40 hex next to a Gitea or Forgejo word",
        anchor=r"(?i)(?:gitea|forgejo|codeberg)",
    ),
    _prefixed(
        "pulumi_token",
        "pulumi_token",
        "pul-",
        "a-f0-9",
        "pul-{h:40}",
        minimum=40,
        facts="pul- + 40 hex",
    ),
    Rule(
        "doppler_token",
        "doppler_token",
        _L + r"(?P<s>dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9_.-]{40,})",
        ("dp.",),
        "dp.pt.{a:43}",
        facts="dp.pt. / dp.st. / dp.ct. / dp.sa. + 43 alphanumerics",
    ),
    _prefixed(
        "infracost_token",
        "infracost_token",
        "ico-",
        "A-Za-z0-9",
        "ico-{a:32}",
        minimum=32,
        facts="ico- + 32 alphanumerics",
    ),
    Rule(
        "tailscale_key",
        "tailscale_key",
        _L + r"(?P<s>tskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,})",
        ("tskey-",),
        "tskey-auth-{a:12}-{a:32}",
        facts="tskey-<kind>-<id>-<secret>",
    ),
    Rule(
        "octopus_api_key",
        "octopus_api_key",
        _L + r"(?P<s>API-[A-Z0-9]{26})(?:[^A-Z0-9]|$)",
        ("API-",),
        "API-{A:26}",
        facts="API- + 26 upper-case alphanumerics",
    ),
    _prefixed(
        "harness_token",
        "harness_token",
        r"pat\.[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.",
        "A-Za-z0-9",
        "pat.{u:22}.{h:24}.{a:20}",
        minimum=20,
        literal="pat.",
        facts="pat.<account 22>.<id 24 hex>.<secret 20>",
    ),
    # ------------------------------------------------------------------ AI providers
    Rule(
        "anthropic_api_key",
        "anthropic_api_key",
        _L + r"(?P<s>sk-ant-(?:api|admin|sid|oat)\d{2}-[A-Za-z0-9_-]{20,})",
        ("sk-ant-",),
        "sk-ant-api03-{u:93}AA",
        facts="sk-ant-api03- / sk-ant-admin01- + URL-safe characters",
    ),
    Rule(
        "openai_api_key",
        "openai_api_key",
        _L + r"(?P<s>sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,})",
        ("sk-",),
        "sk-proj-{u:56}T3BlbkFJ{u:56}",
        check="digit",
        facts="sk- / sk-proj- / sk-svcacct- + base64url, often with T3BlbkFJ in the middle",
    ),
    _prefixed(
        "huggingface_token",
        "huggingface_token",
        "hf_",
        "A-Za-z",
        "hf_{letters:34}",
        minimum=30,
        facts="hf_ + 34 letters",
    ),
    _prefixed(
        "huggingface_org_token",
        "huggingface_token",
        "api_org_",
        "A-Za-z",
        "api_org_{letters:34}",
        minimum=30,
        facts="api_org_ + 34 letters",
    ),
    _prefixed(
        "replicate_token",
        "replicate_token",
        "r8_",
        "A-Za-z0-9",
        "r8_{a:37}",
        minimum=30,
        facts="r8_ + 37 alphanumerics",
    ),
    _prefixed(
        "groq_api_key",
        "groq_api_key",
        "gsk_",
        "A-Za-z0-9",
        "gsk_{a:52}",
        minimum=40,
        facts="gsk_ + 52 alphanumerics",
    ),
    _prefixed(
        "xai_api_key",
        "xai_api_key",
        "xai-",
        "A-Za-z0-9",
        "xai-{a:80}",
        minimum=60,
        facts="xai- + 80 alphanumerics",
    ),
    _prefixed(
        "perplexity_api_key",
        "perplexity_api_key",
        "pplx-",
        "A-Za-z0-9",
        "pplx-{a:48}",
        minimum=40,
        facts="pplx- + 48 alphanumerics",
    ),
    Rule(
        "langsmith_api_key",
        "langsmith_api_key",
        _L + r"(?P<s>lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})",
        ("lsv2_",),
        "lsv2_pt_{h:32}_{h:10}",
        facts="lsv2_pt_ / lsv2_sk_ + 32 hex + _ + 10 hex",
    ),
    _keyed(
        "cohere_api_key",
        "cohere_api_key",
        r"cohere|co_api",
        r"[A-Za-z0-9]{40}",
        "{a:40}",
        ("cohere", "co_api"),
        "COHERE_API_KEY=",
        facts="40 alphanumerics next to cohere",
    ),
    _keyed(
        "mistral_api_key",
        "mistral_api_key",
        r"mistral",
        r"[A-Za-z0-9]{32}",
        "{a:32}",
        ("mistral",),
        "MISTRAL_API_KEY=",
        facts="32 alphanumerics next to mistral",
    ),
    # ------------------------------------------------------------------ messaging and mail
    Rule(
        "slack_token",
        "slack_token",
        _L + r"(?P<s>(?:xox[abceoprs]|xoxe\.xox[bp])-[A-Za-z0-9-]{10,})",
        ("xox",),
        "xoxb-{d:12}-{d:13}-{a:24}",
        check="digit",
        facts="xoxb-/xoxp-/xoxa-/xoxr-/xoxs-/xoxc-/xoxe- + ids + secret",
    ),
    Rule(
        "slack_cookie_token",
        "slack_token",
        _L + r"(?P<s>xoxd-[A-Za-z0-9%/+=_-]{30,})",
        ("xoxd-",),
        "xoxd-{u:40}%2F{u:30}%3D",
        facts="xoxd- + URL-encoded base64 (the d session cookie, used with an xoxc- token)",
    ),
    _prefixed(
        "slack_app_token",
        "slack_token",
        "xapp-",
        "A-Za-z0-9-",
        "xapp-1-A{A:10}-{d:13}-{h:64}",
        minimum=30,
        facts="xapp-1- + ids + 64 hex",
    ),
    Rule(
        "slack_webhook",
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9/_-]{20,})",
        ("hooks.slack.com",),
        "https://hooks.slack.com/services/T{A:8}/B{A:8}/{a:24}",
        facts="hooks.slack.com/services/T.../B.../<24>",
    ),
    Rule(
        "discord_bot_token",
        "discord_token",
        r"(?:^|[^A-Za-z0-9_.-])(?P<s>[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\."
        r"[A-Za-z0-9_-]{27,40})",
        ("M", "N", "O"),
        "M{a:25}.{u:6}.{u:38}",
        check="discord",
        facts="base64 user id (starts M/N/O) . 6 . 27-38 URL-safe",
    ),
    Rule(
        "discord_webhook",
        "discord_webhook",
        r"discord(?:app)?\.com/api/webhooks/\d{15,20}/(?P<s>[A-Za-z0-9_-]{60,70})",
        ("discord",),
        "https://discord.com/api/webhooks/{d:18}/{u:68}",
        caseless=True,
        facts="discord.com/api/webhooks/<id>/<68 URL-safe>",
    ),
    Rule(
        "telegram_bot_token",
        "telegram_bot_token",
        # (after "bot" in the API's URLs: api.telegram.org/bot<token>/sendMessage)
        r"(?:^|[^A-Za-z0-9_]|bot)(?P<s>\d{8,10}:AA[A-Za-z0-9_-]{32,33})",
        (":AA",),
        "{d:10}:AA{u:33}",
        facts="bot id (8-10 digits) : AA + 33 URL-safe",
    ),
    Rule(
        "teams_webhook",
        "teams_webhook",
        r"(?P<s>[a-z0-9-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/_-]{40,}"
        r"|[a-z0-9-]+\.logic\.azure\.com[:0-9]*/workflows/[A-Za-z0-9/?=&%._-]{30,})",
        ("webhook.office.com", "logic.azure.com"),
        "https://acme.webhook.office.com/webhookb2/{uuid}@{uuid}/IncomingWebhook/{h:32}/{uuid}",
        check="any",
        facts="<tenant>.webhook.office.com/webhookb2/... (the path is the key)",
    ),
    Rule(
        "sendgrid_api_key",
        "sendgrid_api_key",
        _L_DOT + r"(?P<s>SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,50})",
        ("SG.",),
        "SG.{u:22}.{u:43}",
        facts="SG. + 22 + . + 43 URL-safe",
    ),
    Rule(
        "mailgun_api_key",
        "mailgun_api_key",
        _L + r"(?P<s>key-[a-f0-9]{32}|[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8})(?:[^A-Za-z0-9]|$)",
        ("key-", "-"),
        "key-{h:32}",
        check="mailgun",
        facts="key- + 32 hex (private API key), or 32 hex - 8 hex - 8 hex",
    ),
    _keyed(
        "mailgun_signing_key",
        "mailgun_api_key",
        r"mailgun",
        r"[a-f0-9]{32}",
        "{h:32}",
        ("mailgun",),
        "MAILGUN_SIGNING_KEY=",
        facts="32 hex next to mailgun",
    ),
    Rule(
        "mailchimp_api_key",
        "mailchimp_api_key",
        r"(?:^|[^A-Za-z0-9])(?P<s>[a-f0-9]{32}-us\d{1,2})(?:[^A-Za-z0-9]|$)",
        ("-us",),
        "{h:32}-us21",
        facts="32 hex + -us + data-centre number",
    ),
    _prefixed(
        "brevo_api_key",
        "brevo_api_key",
        "x(?:keysib|smtpsib)-",
        "A-Za-z0-9-",
        "xkeysib-{h:64}-{a:16}",
        minimum=60,
        literal="sib-",
        facts="xkeysib- (API) / xsmtpsib- (SMTP) + 64 hex + - + 16",
    ),
    Rule(
        "twilio_api_key",
        "twilio_api_key",
        r"(?:^|[^A-Za-z0-9])(?P<s>SK[0-9a-fA-F]{32})(?:[^A-Za-z0-9]|$)",
        ("SK",),
        "SK{h:32}",
        facts="API key SID: SK + 32 hex",
    ),
    Rule(
        "twilio_sid_and_token",
        "twilio_auth_token",
        r"(?:^|[^A-Za-z0-9])(?P<s>AC[0-9a-f]{32}[\"']?[ \t]*[,:/|][ \t]*[\"']?[a-f0-9]{32})"
        r"(?:[^A-Za-z0-9]|$)",
        ("AC",),
        "AC{h:32}:{h:32}",
        facts="account SID (AC + 32 hex) then its 32-hex auth token: Client(sid, token), sid:token",
        anchor=r"AC[0-9a-f]{32}",
    ),
    _keyed(
        "twilio_auth_token",
        "twilio_auth_token",
        r"twilio|auth_?token|TWILIO",
        r"[a-f0-9]{32}",
        "{h:32}",
        ("twilio", "auth_token", "authtoken"),
        "TWILIO_AUTH_TOKEN=",
        facts="32 hex next to twilio or auth token",
    ),
    _keyed(
        "postmark_token",
        "postmark_token",
        r"postmark",
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "{uuid}",
        ("postmark",),
        "POSTMARK_SERVER_TOKEN=",
        facts="a UUID next to postmark",
        check="any",
    ),
    _keyed(
        "mailjet_key",
        "mailjet_key",
        r"mailjet|mj_apikey",
        r"[a-f0-9]{32}",
        "{h:32}",
        ("mailjet", "mj_apikey"),
        "MAILJET_SECRET_KEY=",
        facts="32 hex next to mailjet",
    ),
    # ------------------------------------------------------------------ payments and commerce
    Rule(
        "stripe_key",
        "stripe_key",
        _L + r"(?P<s>(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,})",
        ("k_live_", "k_test_"),
        "sk_live_{a:99}",
        facts="sk_live_ / sk_test_ / rk_live_ / rk_test_ + alphanumerics",
    ),
    _prefixed(
        "stripe_webhook_secret",
        "stripe_webhook_secret",
        "whsec_",
        _B64,
        "whsec_{a:32}",
        minimum=20,
        facts="whsec_ + 32 base64",
    ),
    Rule(
        "shopify_token",
        "shopify_token",
        _L + r"(?P<s>shp(?:at|ca|pa|ss|ua)_[a-fA-F0-9]{32})",
        ("shpat_", "shpca_", "shppa_", "shpss_", "shpua_"),
        "shpat_{h:32}",
        facts="shpat_/shpca_/shppa_/shpss_ + 32 hex",
    ),
    Rule(
        "square_token",
        "square_token",
        _L + r"(?P<s>sq0(?:atp|csp|idp)-[A-Za-z0-9_-]{22,43}|EAAA[A-Za-z0-9_+-]{56,})",
        ("sq0atp-", "sq0csp-", "sq0idp-", "EAAA"),
        "EAAA{u:60}",
        facts="sq0atp- + 22, sq0csp- + 43, or EAAA + 60 (access token)",
    ),
    Rule(
        "paypal_braintree_token",
        "braintree_token",
        r"(?P<s>access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32})",
        ("access_token$",),
        "access_token$production${l:16}${h:32}",
        facts="access_token$production$<16>$<32 hex>",
    ),
    Rule(
        "plaid_token",
        "plaid_token",
        _L + r"(?P<s>(?:access|public)-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}"
        r"-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        ("-sandbox-", "-development-", "-production-"),
        "access-production-{uuid}",
        facts="access-<env>-<uuid>",
    ),
    _prefixed(
        "flutterwave_key",
        "flutterwave_key",
        "FLWSECK(?:_TEST)?-",
        "a-fA-F0-9X-",
        "FLWSECK_TEST-{h:32}-X",
        minimum=32,
        literal="FLWSECK",
        facts="FLWSECK- / FLWSECK_TEST- + 32 hex + -X",
    ),
    Rule(
        "shippo_token",
        "shippo_token",
        _L + r"(?P<s>shippo_(?:live|test)_[a-f0-9]{40})",
        ("shippo_",),
        "shippo_live_{h:40}",
        facts="shippo_live_ / shippo_test_ + 40 hex",
    ),
    Rule(
        "easypost_key",
        "easypost_key",
        _L + r"(?P<s>EZ[AT]K[A-Za-z0-9]{54})",
        ("EZAK", "EZTK"),
        "EZAK{a:54}",
        facts="EZAK / EZTK + 54 alphanumerics",
    ),
    _prefixed(
        "duffel_token",
        "duffel_token",
        "duffel_(?:test|live)_",
        "A-Za-z0-9_=-",
        "duffel_live_{u:43}",
        minimum=40,
        literal="duffel_",
        facts="duffel_test_ / duffel_live_ + 43",
    ),
    Rule(
        "coinbase_key",
        "coinbase_key",
        r"(?P<s>organizations/[0-9a-f-]{36}/apiKeys/[0-9a-f-]{36})",
        ("/apiKeys/",),
        "organizations/{uuid}/apiKeys/{uuid}",
        check="any",
        facts="CDP key name organizations/<uuid>/apiKeys/<uuid> (its secret is a PEM)",
    ),
    # ------------------------------------------------------------------ SaaS and developer tools
    Rule(
        "datadog_key",
        "datadog_key",
        r"(?i)(?:datadog|\bdd)[A-Za-z0-9_.\-]{0,20}(?:api|app|application|client)[_.\-]?key"
        r"[\"']?\s*[:=]\s*[\"']?(?P<s>[a-f0-9]{32,40})(?:[^A-Za-z0-9]|$)",
        ("datadog", "dd"),
        "{h:32}",
        caseless=True,
        context="DD_API_KEY=",
        facts="32 hex (API key) or 40 hex (application key) after a Datadog key name",
    ),
    _keyed(
        "datadog_key_nearby",
        "datadog_key",
        r"datadog|ddog|dd_api|dd_app",
        r"[a-f0-9]{40}|[a-f0-9]{32}",
        "{h:32}",
        ("datadog", "ddog", "dd_api", "dd_app"),
        "DATADOG_API_KEY=",
        facts="32 or 40 hex a few words after a Datadog word and a key word",
    ),
    _keyed(
        "azure_storage_key_nearby",
        "azure_storage_key",
        r"azure|storage[ _.-]?account|account[ _.-]?key",
        r"[A-Za-z0-9+/]{86}==",
        "{b64:86}==",
        ("azure", "storageaccount", "storage account", "account key", "accountkey"),
        "AZURE_STORAGE_ACCOUNT_KEY=",
        facts="88 base64 characters a few words after Azure/storage and key",
    ),
    Rule(
        "hex_key_in_prose",
        "secret",
        r"(?i)\b(?:api|app|application|admin|master)[ _.-]?key[ \t]+(?:is[ \t]+|was[ \t]+|=[ \t]*|:"
        r"[ \t]*)?[\"'`]?(?P<s>[a-f0-9]{40}|[a-f0-9]{32})(?:[^A-Za-z0-9]|$)",
        ("key",),
        "the app key {h:40} is for the monitor",
        caseless=True,
        check="token",
        facts="32 or 40 hex right after an api/app key word in prose (Datadog, Algolia, Mailgun)",
        anchor=r"(?i)(?:api|app|application|admin|master)[ _.-]?key[ \t]+[^\n]{0,8}[a-f0-9]{8}",
    ),
    _prefixed(
        "datadog_pat",
        "datadog_key",
        "ddapp_",
        "A-Za-z0-9",
        "ddapp_{a:40}",
        minimum=30,
        facts="ddapp_ + alphanumerics (scoped application key)",
    ),
    Rule(
        "dynatrace_token",
        "dynatrace_token",
        _L + r"(?P<s>dt0[a-z]\d{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64})",
        ("dt0",),
        "dt0c01.{A:24}.{A:64}",
        facts="dt0c01. + 24 + . + 64 upper-case alphanumerics",
    ),
    Rule(
        "grafana_token",
        "grafana_token",
        _L + r"(?P<s>glc_[A-Za-z0-9+/]{32,}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"
        r"|eyJrIjoi[A-Za-z0-9+/]{50,}={0,2})",
        ("glc_", "glsa_", "eyJrIjoi"),
        "glsa_{a:32}_{h:8}",
        facts="glc_ + base64 (cloud), glsa_ + 32 + _ + 8 hex (service account), eyJrIjoi (legacy)",
    ),
    _prefixed(
        "linear_api_key",
        "linear_api_key",
        "lin_(?:api|oauth)_",
        "A-Za-z0-9",
        "lin_api_{a:40}",
        minimum=40,
        literal="lin_",
        facts="lin_api_ + 40 alphanumerics",
    ),
    Rule(
        "notion_token",
        "notion_token",
        _L + r"(?P<s>secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35})",
        ("secret_", "ntn_"),
        "ntn_{d:11}{a:35}",
        facts="ntn_ + 11 digits + 35 alphanumerics, legacy secret_ + 43",
    ),
    _keyed(
        "okta_token",
        "okta_token",
        r"okta|SSWS",
        r"00[A-Za-z0-9_-]{40}",
        "00{u:40}",
        ("okta", "ssws"),
        "OKTA_API_TOKEN=",
        facts="00 + 40 URL-safe next to okta or SSWS",
        strict=False,
    ),
    _prefixed(
        "onepassword_service_token",
        "onepassword_token",
        "ops_eyJ",
        "A-Za-z0-9+/=_-",
        "ops_eyJ{b64:250}",
        minimum=100,
        facts="ops_ + base64 JSON (service account)",
    ),
    Rule(
        "onepassword_secret_key",
        "onepassword_token",
        r"(?P<s>A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}"
        r"-[A-Z0-9]{5})",
        ("A3-",),
        "A3-{A:6}-{A:6}-{A:5}-{A:5}-{A:5}-{A:5}",
        facts="A3- + 6 groups of 5-6",
    ),
    Rule(
        "postman_api_key",
        "postman_api_key",
        _L + r"(?P<s>PMAK-[a-f0-9]{24}-[a-f0-9]{34})",
        ("PMAK-",),
        "PMAK-{h:24}-{h:34}",
        facts="PMAK- + 24 hex + - + 34 hex",
    ),
    Rule(
        "hubspot_token",
        "hubspot_token",
        _L + r"(?P<s>pat-(?:na|eu|ap)\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}"
        r"-[0-9a-f]{12})",
        ("pat-na", "pat-eu", "pat-ap"),
        "pat-na1-{uuid}",
        facts="private app token: pat- + region (na1, eu1) + - + UUID",
    ),
    Rule(
        "pinecone_api_key",
        "pinecone_api_key",
        _L + r"(?P<s>pcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{40,})",
        ("pcsk_",),
        "pcsk_{a:5}_{a:63}",
        facts="pcsk_ + key id + _ + 60-odd alphanumerics",
    ),
    Rule(
        "sentry_token",
        "sentry_token",
        _L + r"(?P<s>sntryu_[a-f0-9]{64}|sntrys_eyJ[A-Za-z0-9+/=_-]{60,})",
        ("sntryu_", "sntrys_"),
        "sntryu_{h:64}",
        facts="sntryu_ + 64 hex (user), sntrys_ + base64 JSON (organisation)",
    ),
    Rule(
        "supabase_token",
        "supabase_token",
        _L + r"(?P<s>sbp_(?:oauth_)?[a-f0-9]{40}|sb_secret_[A-Za-z0-9_-]{30,})",
        ("sbp_", "sb_secret_"),
        "sbp_{h:40}",
        facts="sbp_ + 40 hex, sb_secret_ + 31",
    ),
    Rule(
        "new_relic_key",
        "new_relic_key",
        _L + r"(?P<s>NR(?:AK|AA|II|JS|RA)-[A-Za-z0-9_-]{19,40}|[a-f0-9]{36}NRAL)",
        ("NRAK-", "NRAA-", "NRII-", "NRJS-", "NRRA-", "NRAL"),
        "NRAK-{A:27}",
        facts="NRAK- + 27, NRII- + 32 (insert), NRJS- + 19 hex (browser), licences end in NRAL",
    ),
    Rule(
        "planetscale_token",
        "planetscale_token",
        _L + r"(?P<s>pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,})",
        ("pscale_",),
        "pscale_tkn_{u:43}",
        facts="pscale_tkn_ / pscale_pw_ / pscale_oauth_ + 32-64",
    ),
    _prefixed(
        "airtable_token",
        "airtable_token",
        r"pat[A-Za-z0-9]{14}\.",
        "a-f0-9",
        "pat{a:14}.{h:64}",
        minimum=64,
        literal="pat",
        facts="pat + 14 + . + 64 hex",
    ),
    Rule(
        "asana_token",
        "asana_token",
        r"(?:^|[^A-Za-z0-9/])(?P<s>[0-9]/[0-9]{10,20}(?:/[0-9]{10,20})?:[A-Za-z0-9]{32})",
        ("/",),
        "2/{d:16}/{d:16}:{h:32}",
        facts="1/ or 2/ + numeric ids + : + 32",
    ),
    _prefixed(
        "contentful_token",
        "contentful_token",
        "CFPAT-",
        _URL,
        "CFPAT-{u:43}",
        minimum=43,
        facts="CFPAT- + 43 URL-safe",
    ),
    _prefixed(
        "figma_token",
        "figma_token",
        "figd_",
        _URL,
        "figd_{u:40}",
        minimum=30,
        facts="figd_ + 40 URL-safe",
    ),
    _prefixed(
        "typeform_token",
        "typeform_token",
        "tfp_",
        "A-Za-z0-9_.=-",
        "tfp_{u:59}",
        minimum=40,
        facts="tfp_ + 59",
    ),
    _prefixed(
        "prefect_token",
        "prefect_token",
        "pnu_",
        "A-Za-z0-9",
        "pnu_{a:36}",
        minimum=36,
        facts="pnu_ + 36 alphanumerics",
    ),
    _prefixed(
        "readme_token",
        "readme_token",
        "rdme_",
        "a-z0-9",
        "rdme_{l:70}",
        minimum=60,
        facts="rdme_ + 70 lower-case alphanumerics",
    ),
    _prefixed(
        "scalingo_token",
        "scalingo_token",
        "tk-us-",
        _URL,
        "tk-us-{u:48}",
        minimum=40,
        facts="tk-us- + 48 URL-safe",
    ),
    _prefixed(
        "frameio_token",
        "frameio_token",
        "fio-u-",
        "A-Za-z0-9_=-",
        "fio-u-{u:64}",
        minimum=60,
        facts="fio-u- + 64",
    ),
    _prefixed(
        "netlify_token",
        "netlify_token",
        "nfp_",
        "A-Za-z0-9",
        "nfp_{a:36}",
        minimum=36,
        facts="nfp_ + 36 alphanumerics",
    ),
    _prefixed(
        "render_api_key",
        "render_api_key",
        "rnd_",
        "A-Za-z0-9",
        "rnd_{a:32}",
        minimum=28,
        facts="rnd_ + 32 alphanumerics",
    ),
    Rule(
        "vercel_token",
        "vercel_token",
        _L + r"(?P<s>vc[pikar]_[A-Za-z0-9]{40,})",
        ("vcp_", "vci_", "vck_", "vca_", "vcr_"),
        "vcp_{a:56}",
        facts="vcp_/vci_/vck_/vca_/vcr_ + alphanumerics",
    ),
    _keyed(
        "vercel_token_legacy",
        "vercel_token",
        r"vercel|zeit",
        r"[A-Za-z0-9]{24}",
        "{a:24}",
        ("vercel", "zeit"),
        "VERCEL_TOKEN=",
        facts="24 alphanumerics next to vercel",
    ),
    Rule(
        "mapbox_secret_token",
        "mapbox_token",
        _L_DOT + r"(?P<s>sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,})",
        ("sk.eyJ",),
        "sk.eyJ1{u:60}.{u:22}",
        facts="sk.eyJ + base64url JSON + . + 22",
    ),
    Rule(
        "dropbox_token",
        "dropbox_token",
        _L_DOT + r"(?P<s>sl\.(?:u\.)?[A-Za-z0-9_-]{100,})",
        ("sl.",),
        "sl.{u:140}",
        facts="short-lived: sl. or sl.u. + 130-200 URL-safe",
    ),
    Rule(
        "twitter_bearer_token",
        "twitter_token",
        _L + r"(?P<s>A{18,24}[A-Za-z0-9%]{30,})",
        ("AAAAAAAAAAAAAAAAAA",),
        "AAAAAAAAAAAAAAAAAAAAA{a:20}%2B{a:24}%3D{a:30}",
        facts="app-only bearer: 22 A + URL-encoded base64 (with %2B, %2F or %3D)",
    ),
    Rule(
        "facebook_access_token",
        "facebook_token",
        _L + r"(?P<s>EAA[A-Za-z0-9]{80,})",
        ("EAA",),
        "EAAB{a:180}",
        facts="EAA + 100-250 alphanumerics (Meta Graph API user/page token)",
    ),
    _keyed(
        "facebook_app_secret",
        "facebook_token",
        r"facebook|fb_app|meta_app",
        r"[a-f0-9]{32}",
        "{h:32}",
        ("facebook", "fb_app", "meta_app"),
        "FACEBOOK_APP_SECRET=",
        facts="32 hex next to a Facebook word",
    ),
    Rule(
        "launchdarkly_key",
        "launchdarkly_key",
        _L + r"(?P<s>(?:api|sdk|mob)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        ("api-", "sdk-", "mob-"),
        "sdk-{uuid}",
        facts="api- / sdk- / mob- + UUID",
    ),
    _keyed(
        "algolia_admin_key",
        "algolia_key",
        r"algolia",
        r"[a-f0-9]{32}",
        "{h:32}",
        ("algolia",),
        "ALGOLIA_ADMIN_KEY=",
        facts="32 hex next to algolia",
    ),
    _keyed(
        "snyk_token",
        "snyk_token",
        r"snyk",
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "{uuid}",
        ("snyk",),
        "SNYK_TOKEN=",
        facts="a UUID next to snyk",
        check="any",
    ),
    _keyed(
        "zendesk_token",
        "zendesk_token",
        r"zendesk",
        r"[A-Za-z0-9]{40}",
        "{a:40}",
        ("zendesk",),
        "ZENDESK_API_TOKEN=",
        facts="40 alphanumerics next to zendesk",
    ),
    _keyed(
        "confluent_secret",
        "confluent_secret",
        r"confluent|sasl",
        r"[A-Za-z0-9+/]{64}",
        "{b64s:64}",
        ("confluent", "sasl"),
        "CONFLUENT_API_SECRET=",
        facts="64 base64 next to confluent",
    ),
    # ------------------------------------------------------------------ generic structures
    Rule(
        "jwt",
        "jwt",
        r"(?:^|[^A-Za-z0-9_.-])(?P<s>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
        r"(?:\.[A-Za-z0-9_-]+){0,2})",
        ("eyJ",),
        "{jwt}",
        check="any",
        facts="base64url JSON header . payload . signature",
    ),
    Rule(
        "bearer_token",
        "bearer_token",
        r"(?i)\bbearer[ \t]+(?P<s>[A-Za-z0-9_~+/-][A-Za-z0-9._~+/=-]*)",
        ("bearer",),
        "{u:40}",
        caseless=True,
        check="bearer",
        context="Authorization: Bearer ",
        facts="Authorization: Bearer <token> (RFC 6750)",
    ),
    Rule(
        "basic_auth",
        "basic_auth",
        r"(?i)\bbasic[ \t]+(?P<s>[A-Za-z0-9+/]{6,}={0,2})(?:[^A-Za-z0-9+/=]|$)",
        ("basic",),
        "{basic}",
        caseless=True,
        check="basic",
        context="Authorization: Basic ",
        facts="Authorization: Basic base64(user:password) (RFC 7617)",
    ),
    Rule(
        "url_password",
        "password",
        r"[A-Za-z][A-Za-z0-9+.-]{1,20}://(?:[^\s:/?#@\[\]\"'<>]*):(?P<s>[^\s/\"'<>\[\]@]+"
        r"(?:@[^\s/\"'<>\[\]@]+)*)@[A-Za-z0-9.\[\]_-]",
        ("://",),
        "postgres://app:{pw}@db.internal:5432/app",
        check="url_password",
        facts="scheme://user:password@host (RFC 3986 userinfo)",
    ),
    Rule(
        "cookie_header",
        "secret",
        r"(?i)(?:^|[^A-Za-z0-9-])cookie[ \t]*:[ \t]*(?P<s>[^\r\n\x00\"']{1,1000})",
        ("cookie",),
        "",
        caseless=True,
        check="cookie",
        facts="a request Cookie: header with a session-like value (not Set-Cookie, not theme=dark)",
    ),
    Rule(
        "curl_user",
        "password",
        r"(?:^|\s)(?:-u|--user|--proxy-user|-U)[ \t=]+[\"']?[^\s:\"'%]+[:%](?P<s>[^\s\"']+)",
        ("-u", "--user", "-U"),
        "curl -u deploy:{pw} https://api.example.com",
        check="value",
        facts="curl -u user:password, smbclient -U user%password",
    ),
    Rule(
        "cli_password",
        "password",
        # The flag's last word names the secret: --password, --db-password, --account-key,
        # --access-token, -storepass; --password-file and --ssh-key name a path, not a secret.
        r"(?i)(?:^|\s)--?(?:[a-z0-9]+-)*(?:password|passwd|pass|pw|pwd|passphrase|storepass|"
        r"keypass|srcstorepass|deststorepass|srckeypass|destkeypass|secret|token|api-?key|"
        r"account-key|access-key|secret-key|auth-key|master-key|app-key|access-key-secret|"
        r"secret-string)"
        r"[ \t]+(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"'-][^\s]*)",
        ("pass", "pw", "secret", "token", "key"),
        "mongosh --password {pw}",
        caseless=True,
        check="value",
        facts="--password X, -storepass X, --token X (flag, space, value)",
    ),
    Rule(
        "cli_short_password",
        "password",
        # Each tool with its own letter: redis-cli -p is a port, its password is -a.
        r"(?:^|[\s;|&(`\"'])(?:(?:mongo|mongosh|mongodump|mongorestore|mongoexport|mongoimport|"
        r"docker(?: [a-z]+)? login|podman login|buildah login|skopeo login|helm registry login|"
        r"az login|sshpass|twine(?: upload)?|psexec|paexec|rdesktop)\b[^\n|;&]{0,200}?\s-p"
        r"|(?:redis-cli|valkey-cli|keydb-cli)\b[^\n|;&]{0,200}?\s-a"
        r"|(?:ldapsearch|ldapmodify|ldapadd|ldapdelete|ldapwhoami|ldappasswd)\b[^\n|;&]{0,200}?\s-w"
        r"|(?:sqlcmd|bcp|zip|unzip|mosquitto_pub|mosquitto_sub|ssh-keygen)\b[^\n|;&]{0,200}?\s-P)"
        r"[ \t]?"
        r"(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"'`-][^\s\"'`]*)",
        (
            "mongo",
            "login",
            "sshpass",
            "-cli",
            "ldap",
            "sqlcmd",
            "bcp",
            "zip",
            "twine",
            "psexec",
            "paexec",
            "rdesktop",
            "mosquitto",
            "ssh-keygen",
        ),
        "sshpass -p {pw} ssh deploy@10.0.0.7",
        check="value",
        facts="sshpass -p X, redis-cli -a X, docker login -p X, ldapsearch -w X, sqlcmd -P X",
    ),
    Rule(
        "cli_mysql_password",
        "password",
        r"(?:^|[\s;|&(`\"'])(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlsh|mariadb|"
        r"mariadb-dump|7z|unrar|rar)\b[^\n|;&]{0,200}?\s-p(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|"
        r"[^\s\"'`-][^\s\"'`]*)",
        ("mysql", "mariadb", "7z", "rar"),
        "mysql -u root -p{pw} app",
        check="value",
        facts="mysql -pX (attached: a separate word after -p is the database, not a password)",
    ),
    Rule(
        "openssl_pass",
        "password",
        r"(?:^|[\s=\"'])pass:(?P<s>[^\s\"']+)",
        ("pass:",),
        "openssl pkcs12 -export -out a.p12 -passout pass:{pw}",
        check="value",
        facts="openssl -pass pass:X / -passin pass:X / -passout pass:X",
    ),
    Rule(
        "htpasswd",
        "password",
        r"\bhtpasswd\s+(?:-[a-zA-Z]+\s+)*-[a-zA-Z]*b[a-zA-Z]*\s+(?:-[a-zA-Z]+\s+)*\S+\s+\S+\s+"
        r"(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"']+)",
        ("htpasswd",),
        "htpasswd -bc /etc/nginx/.htpasswd admin {pw}",
        check="value",
        facts="htpasswd -b file user password",
    ),
    Rule(
        "cli_new_password",
        "password",
        r"(?:\bldappasswd\b[^\n|;&]{0,200}?\s-s|\bssh-keygen\b[^\n|;&]{0,200}?\s-N"
        r"|\bopenssl\b[^\n|;&]{0,200}?\s-k)[ \t]+"
        r"(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"'`-][^\s\"'`]*)",
        ("ldappasswd", "ssh-keygen", "openssl"),
        "ssh-keygen -t ed25519 -N '{pw}' -f deploy_key",
        check="value",
        facts="ldappasswd -s NEW, ssh-keygen -N NEW, openssl enc -k X",
    ),
    Rule(
        "cli_secret_value",
        "secret",
        r"(?i)(?:\bsecrets?[ \t]+(?:set|create|add|put)|put-parameter|create-secret|"
        r"put-secret-value|update-secret)\b[^\n|;&]{0,200}?[ \t]"
        r"(?:--body|-b|--value|--secret-string|--data)[ \t=]+"
        r"(?P<s>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"'-][^\s]*)",
        ("secret", "put-parameter"),
        "gh secret set DEPLOY_KEY --body '{pw}' --repo acme/app",
        caseless=True,
        check="value",
        facts="gh secret set N --body X, aws ssm put-parameter --value X, az keyvault secret set",
        anchor=r"(?i)(?:secrets?[ \t]+(?:set|create|add|put)|put-parameter|create-secret|"
        r"put-secret-value|update-secret)",
    ),
    Rule(
        "oracle_connect",
        "password",
        r"\b(?:sqlplus|sqlldr|expdp|impdp|exp|imp|rman[ \t]+target)(?:[ \t]+-[A-Za-z]+)*[ \t]+"
        r"[\"']?[A-Za-z0-9_$#]+/(?P<s>[^\s@/\"']+)(?:[@\s\"']|$)",
        ("sqlplus", "sqlldr", "expdp", "impdp", "exp ", "imp ", "rman"),
        "sqlplus system/{pw}@//db:1521/ORCL",
        check="value",
        facts="sqlplus user/password@db (Oracle connect string)",
    ),
    Rule(
        "cli_windows_password",
        "password",
        r"(?i)\b(?:xfreerdp|wfreerdp|cmdkey|sdelete|psexec|schtasks|runas)\b[^\n|;&]{0,200}?"
        r"[ \t]/(?:p|pass|password|rp):(?P<s>\"[^\"\n]{1,200}\"|[^\s\"']+)",
        ("freerdp", "cmdkey", "sdelete", "psexec", "schtasks", "runas"),
        "xfreerdp /v:10.0.0.5 /u:ops /p:{pw}",
        caseless=True,
        check="value",
        facts="xfreerdp /p:X, cmdkey /pass:X, schtasks /rp X",
    ),
    Rule(
        "tool_config_set",
        "secret",
        r"(?i)\b(?:npm|yarn|pnpm|pip|poetry|composer|bundle)[ \t]+config[ \t]+(?:set[ \t]+)?"
        r"(?:--[a-z-]+[ \t]+)*(?P<n>[^\s=]{2,120})[ \t]+(?P<s>[^\s-][^\s]*)",
        ("config",),
        "",
        caseless=True,
        check="named",
        facts="npm config set //registry/:_authToken X, poetry config http-basic.repo user X",
        anchor=r"(?i)(?:npm|yarn|pnpm|pip|poetry|composer|bundle)[ \t]+config",
    ),
    Rule(
        "sql_password",
        "password",
        r"(?i)\b(?:identified(?:[ \t]+with[ \t]+[A-Za-z0-9_]+)?[ \t]+by|password)[ \t]+"
        r"'(?P<s>[^'\n]{1,200})'",
        ("identified", "password '"),
        "CREATE USER 'app'@'%' IDENTIFIED BY '{pw}';",
        caseless=True,
        check="value",
        facts="MySQL IDENTIFIED BY 'X', PostgreSQL PASSWORD 'X'",
    ),
    Rule(
        "redis_config_password",
        "password",
        r"(?i)(?:^|[\s;\"'`])(?:requirepass|masterauth)[ \t]+[\"']?(?P<s>[^\s\"'`]+)",
        ("requirepass", "masterauth"),
        "requirepass {pw}",
        caseless=True,
        check="value",
        facts="redis.conf requirepass X / masterauth X (also CONFIG SET requirepass X)",
    ),
    Rule(
        "php_define",
        "secret",
        r"(?i)\bdefine\([ \t]*[\"'](?P<n>[A-Za-z0-9_]{1,80})[\"'][ \t]*,[ \t]*[\"']"
        r"(?P<s>[^\"'\n]{1,500})[\"']",
        ("define(",),
        "",
        caseless=True,
        check="named",
        facts="wp-config.php define('DB_PASSWORD', 'X'), define('AUTH_KEY', 'X')",
    ),
    Rule(
        "dockerfile_env",
        "secret",
        r"(?m)^[ \t]*(?:ENV|ARG)[ \t]+(?P<n>[A-Za-z_][A-Za-z0-9_]{0,80})[ \t]+(?P<s>[^\s=][^\n]*)",
        ("ENV ", "ARG "),
        "",
        check="named",
        facts="Dockerfile ENV NAME value (the legacy form without =)",
    ),
    Rule(
        "pgpass_line",
        "password",
        r"(?:^|[\s=\"'`])[A-Za-z0-9_.*-]+:(?:\d{2,5}|\*):[A-Za-z_*][A-Za-z0-9_.*-]*:"
        r"[A-Za-z_*][A-Za-z0-9_.*-]*:(?P<s>[^\s:\"'`][^\s\"'`]*)",
        (":5432:", ":*:"),
        "db.internal:5432:app:app:{pw}",
        check="value",
        facts=".pgpass host:port:database:user:password",
    ),
    Rule(
        "ssm_secure_string",
        "secret",
        r"(?i)securestring[\"']?[ \t]*,[ \t]*[\"']?value[\"']?[ \t]*[:=][ \t]*[\"']"
        r"(?P<s>[^\"'\n]{1,1000})",
        ("securestring",),
        "",
        caseless=True,
        check="value",
        facts='SSM parameter "Type": "SecureString", "Value": "X"',
    ),
    Rule(
        "powershell_secure_string",
        "password",
        r"(?i)ConvertTo-SecureString[ \t]+(?:-String[ \t]+)?[\"'](?P<s>[^\"'\n]{1,200})[\"']"
        r"[^\n]{0,40}?-AsPlainText",
        ("ConvertTo-SecureString",),
        "$pw = ConvertTo-SecureString '{pw}' -AsPlainText -Force",
        caseless=True,
        check="value",
        facts="PowerShell ConvertTo-SecureString 'X' -AsPlainText",
    ),
    Rule(
        "code_credential_pair",
        "password",
        r"(?:\bauth[ \t]*=[ \t]*\(|HTTPBasicAuth\(|HTTPDigestAuth\(|NetworkCredential\(|"
        r"PSCredential\(|BasicAuth\(|\.login\(|getConnection\([^,\n]{1,200},)[ \t]*"
        r"(?:[\"'][^\"'\n]{0,100}[\"']|[A-Za-z_][A-Za-z0-9_.]{0,60})[ \t]*,[ \t]*[\"']"
        r"(?P<s>[^\"'\n]{1,200})[\"']",
        ("auth", "Credential", "login(", "getConnection("),
        "requests.get(url, auth=('admin', '{pw}'))",
        check="value",
        facts="auth=('user', 'X'), HTTPBasicAuth('user', 'X'), smtp.login('user', 'X'), "
        "NetworkCredential, getConnection(url, 'user', 'X')",
        anchor=r"(?:auth[ \t]*=[ \t]*\(|HTTPBasicAuth\(|HTTPDigestAuth\(|NetworkCredential\(|"
        r"PSCredential\(|BasicAuth\(|\.login\(|getConnection\()",
    ),
    Rule(
        "minio_alias",
        "secret",
        r"\bmc[ \t]+(?:alias[ \t]+set|config[ \t]+host[ \t]+add)[ \t]+\S+[ \t]+\S+[ \t]+\S+[ \t]+"
        r"(?P<s>[^\s-]\S*)",
        ("alias set", "host add"),
        "mc alias set s3 https://s3.example.net minio-admin {pw}",
        check="value",
        facts="mc alias set NAME URL ACCESS_KEY SECRET_KEY",
    ),
    Rule(
        "yaml_block_secret",
        "secret",
        r"(?im)^[ \t]*(?P<n>[A-Za-z0-9_.-]*(?:pass|pw|secret|token|key|auth|credential)"
        r"[A-Za-z0-9_.-]*)[ \t]*:[ \t]*[|>][+-]?[ \t]*\r?\n[ \t]+(?P<s>[^\s{$][^\n]*)",
        ("|", ">"),
        "",
        caseless=True,
        check="named",
        facts="YAML block scalar: password: >-, then the value on the next line",
        anchor=r":[ \t]*[|>][+-]?[ \t]*\r?\n",
    ),
    Rule(
        "foreign_password",
        "password",
        r"(?i)(?:\b(?:passwort|kennwort|contrase(?:ñ|n)a|mot de passe|senha|wachtwoord|"
        r"has(?:ł|l)o|şifre|sifre|parool|lozinka|heslo|salasana|adgangskode|l(?:ö|o)senord)|"
        r"пароль|パスワード|密码|密碼|비밀번호)[ \t]*[:=：][ \t]*[\"'`]?(?P<s>[^\s\"'`]{4,128})",
        (
            "wort",
            "contrase",
            "de passe",
            "senha",
            "wachtwoord",
            "has",
            "ifre",
            "parool",
            "lozinka",
            "heslo",
            "salasana",
            "adgangskode",
            "senord",
            "пароль",
            "パスワード",
            "密码",
            "密碼",
            "비밀번호",
        ),
        "Passwort: {pw}",
        caseless=True,
        check="prose_password",
        facts="password: X in German, Spanish, French, Portuguese, Dutch, Polish, Turkish, Nordic, "
        "Russian, Japanese, Chinese, Korean",
    ),
    Rule(
        "stdin_password",
        "password",
        r"(?:^|[\s;&(`\"'])(?:echo[ \t]+(?:-[ne]+[ \t]+)?|printf[ \t]+(?:[\"']?%s[^\s|]*[ \t]+)?)"
        r"[\"']?(?P<s>[^\s\"'|;&]{4,200})"
        r"[\"']?[ \t]*\|[^\n|;&]{0,120}?(?:--password-stdin|--pass-stdin|sudo[ \t]+-S|chpasswd|"
        r"passwd[ \t]+--stdin|-password-stdin|--password-from-stdin|--passphrase-fd[ \t]+0)",
        ("stdin", "sudo", "chpasswd"),
        "echo '{pw}' | docker login --password-stdin -u ci ghcr.io",
        check="value",
        facts="echo X | docker login --password-stdin, echo X | sudo -S, echo u:X | chpasswd",
        anchor=r"--password-stdin|--pass-stdin|sudo[ \t]+-S|chpasswd|passwd[ \t]+--stdin"
        r"|-password-stdin|--password-from-stdin|--passphrase-fd[ \t]+0",
    ),
    Rule(
        "cli_user_password",
        "password",
        r"(?i)(?:\bnet[ \t]+use\b[^\n|;&]{0,200}?/user:\S+[ \t]+(?P<s>[^\s/\"']\S*)"
        r"|\brabbitmqctl[ \t]+(?:add_user|change_password)[ \t]+\S+[ \t]+"
        r"(?P<s2>[\"']?[^\s\"']+[\"']?)"
        r"|\bnet[ \t]+user[ \t]+\S+[ \t]+(?P<s3>[^\s/*][^\s]*)[ \t]+/add)",
        ("/user:", "rabbitmqctl", "/add"),
        "rabbitmqctl add_user app {pw}",
        caseless=True,
        check="prose_password",
        facts="net use ... /user:NAME X, net user NAME X /add, rabbitmqctl add_user NAME X",
    ),
    Rule(
        "aws_cli_secret",
        "aws_secret_access_key",
        r"(?i)aws\s+configure\s+set\s+\S*(?:secret_access_key|session_token)\s+(?P<s>\S+)",
        ("configure",),
        "aws configure set aws_secret_access_key {b64s:40}",
        check="value",
        caseless=True,
        facts="aws configure set aws_secret_access_key X",
    ),
    Rule(
        "password_in_prose",
        "password",
        "(?i)" + _PROSE_PASSWORD + _PROSE_VALUE,
        ("pass", "pw", "log", "sign", "cred", "user"),
        "the admin password is {pw}",
        caseless=True,
        check="prose_password",
        anchor=r"(?i)(?:password|passwd|passphrase|pwd|pw|passcode)"
        + _VERB_ANCHOR
        + r"|(?:log[ \t]?in|sign[ \t]?in|creds|credentials|user)[^\n]*/",
        facts="password is X, login with user / X (X must look random: letters and digits or "
        "symbols)",
    ),
    Rule(
        "token_in_prose",
        "secret",
        "(?i)" + _PROSE_TOKEN + _PROSE_TOKEN_VALUE,
        ("token", "secret", "key"),
        "the token for the staging bot is {a:24}",
        caseless=True,
        check="prose_token",
        anchor=r"(?i)(?:token|secret|api[ _-]?key|access[ _-]?key|passphrase)" + _VERB_ANCHOR,
        facts="the token for X is Y, client secret -> Y (Y: 12 or more, letters and digits)",
    ),
    Rule(
        "password_before_word",
        "password",
        r"(?i)[\"'`](?P<s>[^\s\"'`]{6,128})[\"'`][ \t]+(?:as|for)[ \t]+(?:the[ \t]+|your[ \t]+|"
        r"my[ \t]+|a[ \t]+)?(?:[A-Za-z]+[ \t]+)?(?:password|passphrase|passwd|pwd|token|secret)",
        ("pass", "pwd", "token", "secret"),
        'use "{pw}" as the password when prompted',
        caseless=True,
        check="prose_password",
        anchor=r"(?i)[\"'`][ \t]+(?:as|for)[ \t]",
        facts='use "X" as the password (a quoted value named after it)',
    ),
    Rule(
        "named_value_pair",
        "secret",
        r"(?i)[\"']?(?:name|key|parameterkey|variable|optionname)[\"']?[ \t]*[:=][ \t]*[\"']?"
        r"(?P<n>[A-Za-z0-9_./-]{2,80})[\"']?[ \t]*(?:,|\r?\n)[ \t]*(?:-[ \t]*)?"
        # An SSM parameter has its Type between Name and Value.
        r"(?:[\"']?type[\"']?[ \t]*[:=][ \t]*[\"']?[A-Za-z]{1,20}[\"']?[ \t]*(?:,|\r?\n)[ \t]*)?"
        r"[\"']?"
        r"(?:value|parametervalue)[\"']?[ \t]*[:=][ \t]*(?P<q>[\"']?)(?P<s>[^\"'\r\n,}]+)",
        ("value",),
        "",
        caseless=True,
        check="named_pair",
        facts="Kubernetes env lists, ECS/CloudFormation Name/Value pairs, in YAML or JSON",
    ),
    Rule(
        "xml_secret_element",
        "secret",
        r"<(?P<n>[A-Za-z_][A-Za-z0-9_:.-]*)"
        r"(?:\s[^>]*)?>(?:<!\[CDATA\[(?P<s2>[^\]\x00]{1,1000})\]\]>|(?P<s>[^<\x00]{1,1000}))</",
        ("</",),
        "",
        check="named",
        facts="<password>X</password>, <apiKey>X</apiKey>, <secret>X</secret>, CDATA too",
    ),
    Rule(
        "xml_keyed_element",
        "secret",
        r"(?i)<[A-Za-z_][A-Za-z0-9_:.-]*\s[^>]*?\b(?:key|name)\s*=\s*\"(?P<n>[^\"]{1,80})\""
        r"[^>]*>(?P<s>[^<\x00]{1,1000})</",
        ("</",),
        "",
        caseless=True,
        check="named",
        facts='<entry key="db.password">X</entry> (Java XML properties), <param name="token">X',
        anchor=r"(?i)(?:key|name)\s*=\s*\"[A-Za-z0-9_.:/ -]{0,80}"
        r"(?:pass|pw|secret|token|key|auth|credential)",
    ),
    Rule(
        "xml_add_key_value",
        "secret",
        r"(?i)\b(?:key|name)\s*=\s*\"(?P<n>[^\"]{1,80})\"\s+value\s*=\s*\"(?P<s>[^\"]{1,1000})\"",
        ("value",),
        "",
        caseless=True,
        check="named",
        facts='<add key="DbPassword" value="X"/>, Spring <property name="password" value="X"/>',
    ),
    Rule(
        "labelled_secret",
        "secret",
        r"(?i)(?P<n>[A-Za-z0-9_.-]*(?:pass|pw|secret|token|key|auth|credential|cookie|pat)"
        r"[A-Za-z0-9_.-]*)(?P<q0>\\?[\"'])?[ \t]*(?:"
        # A quoted value runs to its quote; a bare value after "=" to a delimiter; a bare value
        # after ":" must fill the field ("password: hunter2" but not "Forgot password: click").
        r"(?P<op>=>|:=|=|:)[ \t]*(?P<q>\\?[\"'])(?P<scheme>(?:bearer|basic|token)[ \t]+)?"
        r"(?P<s>[^\"'\\\r\n]{1,200})"
        r"|(?P<op2>=>|:=|=)[ \t]*(?P<scheme2>(?:bearer|basic|token)[ \t]+)?"
        r"(?P<s2>[^\s\"'\\,;&<>]{1,200})"
        r"|(?P<op3>:)[ \t]*(?P<scheme3>(?:bearer|basic|token)[ \t]+)?"
        # (not "//": "otpauth://...?secret=X" is a URL, whose secret= the search must reach)
        r"(?P<s3>[^\s\"'\\,;&<>/][^\s\"'\\,;&<>]{0,199})[ \t]*(?:$|[\r\n\t\"',;|)}\]\\&<]))",
        ("pass", "pw", "secret", "token", "key", "auth", "credential", "cookie"),
        "",
        caseless=True,
        check="labelled",
        facts='NAME=value, name: value, "name": "value" where NAME ends in a secret word',
        tails=(("s", r"[^\"'\\\r\n]*"), ("s2", r"[^\s\"'\\,;&<>]*")),
    ),
)


# A value class repeated without bound is matched to its minimum by RE2, then extended by a
# plain class scan: RE2 works out capture groups over the whole match, which for a hostile
# 256 KiB run costs tens of milliseconds, while extending a run costs microseconds.
_OPEN_RUN = re.compile(
    r"^(?P<head>.*\[(?P<cls>[^\[\]]+)\])\{(?P<n>\d+),\}"
    r"(?P<rest>(?:\(\?:=\{0,2\}\)|=\{0,2\}|\(\?:%3D\|=\)\{0,2\})?\)+)$",
    re.DOTALL,
)


def _bounded(rule: Rule) -> Rule:
    match = _OPEN_RUN.match(rule.pattern)
    if match is None or rule.tails:
        return rule
    padding = "(?:%3D|=){0,2}" if "=" in match.group("rest") else ""
    pattern = f"{match.group('head')}{{{match.group('n')}}}{match.group('rest')}"
    return replace(rule, pattern=pattern, tails=(("s", f"[{match.group('cls')}]*{padding}"),))


RULES = tuple(_bounded(rule) for rule in RULES)
