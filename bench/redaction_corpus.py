"""The redaction corpus: synthetic secrets of every rule family in the contexts agents leak them
in, and clean payloads that must come back unchanged. ``python -m bench.redaction_corpus``.

Every value is generated here from a seed (never a real credential): a family's format comes
from its rule's ``example`` template (``punk_records.redaction_rules``), rendered with random
characters of the right alphabet; GitHub tokens get a valid CRC32 tail. Each secret case says
which string must disappear from the redacted payload; a clean case must survive unchanged.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import string
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from punk_records.redaction_rules import RULES, Rule

_ALPHABETS = {
    "a": string.ascii_letters + string.digits,
    "A": string.ascii_uppercase + string.digits,
    "h": "0123456789abcdef",
    "H": "0123456789ABCDEF",
    "u": string.ascii_letters + string.digits + "_-",
    "b64": string.ascii_letters + string.digits + "+/",
    "b64s": string.ascii_letters + string.digits + "+/",
    "l": string.ascii_lowercase + string.digits,
    "d": string.digits,
    "letters": string.ascii_letters,
    "b32l": "abcdefghijklmnopqrstuvwxyz234567",
    "bech": "qpzry9x8gf2tvdw0s3jn54khce6mua7l",
    "bechU": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
_FIELD = re.compile(r"\{([a-zA-Z0-9]+)(?::(\d+))?\}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_WORDS = (
    *("deploy", "rollback", "replica", "latency", "cache", "shard", "index", "worker", "queue"),
    *("retry", "backoff", "timeout", "export", "import", "report", "dashboard", "pipeline"),
    *("build", "release", "canary", "region", "bucket", "cluster", "node", "pod", "service"),
    *("ingress", "config", "rotation", "audit", "review"),
)


@dataclass(frozen=True)
class Case:
    """One corpus payload: every one of ``secrets`` must be gone after redaction (none for a
    clean case: the payload must come back unchanged)."""

    family: str
    context: str
    payload: dict[str, Any]
    secrets: tuple[str, ...] = ()


def _random(rng: random.Random, alphabet: str, length: int) -> str:
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(length))
        # Random enough to look like a key: several character classes where the alphabet has them.
        classes = sum(
            any(c in group for c in value)
            for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        )
        available = sum(
            any(c in group for c in alphabet)
            for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        )
        if classes >= min(available, 2) or length < 6:
            return value


def _github(rng: random.Random) -> str:
    body = _random(rng, _ALPHABETS["a"], 30)
    crc = zlib.crc32(body.encode())
    digits = ""
    while crc:
        crc, rest = divmod(crc, 62)
        digits = _BASE62[rest] + digits
    return body + digits.rjust(6, "0")


def _b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _jwt(rng: random.Random) -> str:
    header = _b64url_json({"alg": "HS256", "typ": "JWT"})
    claims = _b64url_json({"sub": f"agent-{rng.randint(1, 999)}", "iat": rng.randint(1, 2**31)})
    return f"{header}.{claims}.{_random(rng, _ALPHABETS['u'], 43)}"


def _pem_body(rng: random.Random, lines: int = 6) -> list[str]:
    return ["MII" + _random(rng, _ALPHABETS["b64"], 61)] + [
        _random(rng, _ALPHABETS["b64"], 64) for _ in range(lines - 1)
    ]


def _pem(rng: random.Random) -> str:
    label = rng.choice(("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    body = "\n".join(_pem_body(rng))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def _password(rng: random.Random) -> str:
    return (
        _random(rng, _ALPHABETS["a"], rng.randint(10, 16))
        + rng.choice("!#%^*-_")
        + str(rng.randint(10, 99))
    )


def _special(name: str, rng: random.Random) -> str | None:
    if name == "pem":
        return _pem(rng)
    if name == "b64pem":
        return base64.b64encode(_pem(rng).encode()).decode()
    if name == "putty":
        public = "\n".join(_random(rng, _ALPHABETS["b64"], 64) for _ in range(2))
        private = "\n".join(_random(rng, _ALPHABETS["b64"], 64) for _ in range(3))
        return (
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
            f"Public-Lines: 2\n{public}\nPrivate-Lines: 3\n{private}\n"
            f"Private-MAC: {_random(rng, _ALPHABETS['h'], 64)}"
        )
    return None


def render(template: str, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """A synthetic value for a rule's ``example`` template, and its random parts (the ones
    that must not survive redaction: numeric ids such as a webhook's are left out)."""
    special = _special(template, rng)
    if special is not None:
        lines = [line for line in special.splitlines() if len(line) >= 40 and "-" not in line]
        return special, tuple(lines) or (special,)
    parts: list[str] = []

    def field(match: re.Match[str]) -> str:
        name, length = match.group(1), int(match.group(2) or 0)
        if name == "uuid":
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif name == "gh":
            value = _github(rng)
        elif name == "jwt":
            value = _jwt(rng)
        elif name == "pw":
            value = _password(rng)
        elif name == "basic":
            user = rng.choice(("deploy", "svc-agent", "admin"))
            value = base64.b64encode(f"{user}:{_password(rng)}".encode()).decode()
        else:
            value = _random(rng, _ALPHABETS[name], length)
        if name != "d" and len(value) >= 8:
            parts.append(value)
        return value

    return _FIELD.sub(field, template), tuple(parts)


def _sentence(rng: random.Random, words: int = 8) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _env_name(rule: Rule) -> str:
    if rule.context:
        return re.sub(r"[^A-Za-z0-9_]", "", rule.context.split("=")[0]) or "SECRET"
    return rule.family.upper()


def _is_command(rule: Rule) -> bool:
    return " " in rule.example and "{" in rule.example


def _contexts(rule: Rule, value: str, rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """The payloads a family's value is leaked in. A family that needs a keyword gets it."""
    lead = rule.context
    vendor = rule.family.split("_")[0]
    name = _env_name(rule)
    quoted = f"{lead}{value}" if lead else value
    if _is_command(rule):
        yield "command", {"command": value, "exit_code": 0}
        yield "log", {"log": f"2026-11-29T10:0{rng.randint(0, 9)}:00Z INFO runner: $ {value}"}
        yield "prose", {"summary": f"The agent ran `{value}` and it worked."}
        yield "stringified", {"body": json.dumps({"steps": [{"run": value}]})}
        yield "nested", {"trace": [{"tool": "shell", "input": {"cmd": value}}]}
        return
    if ": " in lead:  # a header: Authorization: Bearer ...
        name, value = "AUTH_HEADER", lead.split(": ", 1)[1] + value
    yield "field", {"result": {"output": quoted, "ok": True}}
    yield "prose", {"summary": f"For {vendor}, use {quoted} until rotation on Friday."}
    yield "env_file", {"file": f"# .env\nREGION=eu-west-1\n{name}={value}\nDEBUG=false\n"}
    yield "kubernetes_env", {"containers": [{"env": [{"name": name, "value": value}]}]}
    yield "command", {"command": f"export {name}='{value}' && ./deploy.sh --region eu-west-1"}
    yield "stringified", {"body": json.dumps({"settings": {"upstream": quoted}})}
    state = quote(f"next=/home&cred={quoted}", safe="")
    yield "url_encoded", {"redirect": f"https://app.example.com/callback?state={state}"}
    if "\n" not in value:
        yield (
            "log",
            {
                "log": f"2026-11-29T10:00:0{rng.randint(0, 9)}Z WARN worker-{rng.randint(1, 9)} "
                f"loaded {quoted} from the cache"
            },
        )
        yield "double_encoded", {"cookie": "session=" + quote(quote(quoted, safe=""), safe="")}


def secret_cases(seed: int = 10) -> list[Case]:
    """Every family with an example, in every context."""
    rng = random.Random(seed)
    cases = []
    for rule in RULES:
        if not rule.example:
            continue
        value, parts = render(rule.example, rng)
        for context, payload in _contexts(rule, value, rng):
            cases.append(Case(rule.family, context, payload, parts))
    cases += _generic_cases(rng)
    cases += _structure_cases(rng)
    return cases


def _generic_cases(rng: random.Random) -> list[Case]:
    """Secrets with no format of their own: passwords by name, in structures and files."""
    cases = []
    for _ in range(2):
        pw = _password(rng)
        cases += [
            Case("password_by_name", "field", {"db": {"password": pw}}, (pw,)),
            Case("password_by_name", "env_file", {"file": f"DB_HOST=db\nDB_PASS={pw}\n"}, (pw,)),
            Case(
                "password_by_name", "yaml", {"text": f"smtp:\n  host: mail\n  pass: {pw}\n"}, (pw,)
            ),
            Case(
                "password_by_name",
                "xml",
                {"xml": f"<server><password>{pw}</password></server>"},
                (pw,),
            ),
            Case(
                "password_by_name",
                "kubernetes_env",
                {"spec": {"env": [{"name": "SMTP_PASSWORD", "value": pw}]}},
                (pw,),
            ),
            Case(
                "password_by_name",
                "stringData",
                {"manifest": {"kind": "Secret", "stringData": {"DB_PASSWORD": pw}}},
                (pw,),
            ),
            Case(
                "password_by_name", "prose", {"note": f"the admin password is {pw} for now"}, (pw,)
            ),
            Case(
                "password_by_name",
                "stringified",
                {"body": json.dumps(json.dumps({"credentials": {"pw": pw}}))},
                (pw,),
            ),
            Case(
                "password_by_name",
                "url_encoded",
                {
                    "url": "https://x.example.com/login?"
                    + quote(f"user=ada&password={pw}", safe="=&")
                },
                (pw,),
            ),
            Case(
                "url_password", "field", {"dsn": f"postgres://app:{pw}@db.internal:5432/app"}, (pw,)
            ),
        ]
    return cases


def _structure_cases(rng: random.Random) -> list[Case]:
    """Secrets whose shape is a structure rather than a format: a command's argument list, a
    key named with a qualifier, configuration lines that name the secret their own way."""
    cases = []
    pw = [_password(rng) for _ in range(13)]
    argv = [
        ["sshpass", "-p", pw[0], "ssh", "ops@10.0.0.7"],
        ["mysql", "-h", "db", "-u", "root", f"-p{pw[1]}"],
        ["docker", "login", "--username", "ci", "--password", pw[2], "ghcr.io"],
        ["redis-cli", "-h", "cache", "-p", "6379", "-a", pw[3], "ping"],
        ["keytool", "-list", "-keystore", "k.jks", "-storepass", pw[4]],
    ]
    for index, args in enumerate(argv):
        payload: dict[str, Any] = (
            {"tool": "shell", "argv": args} if index % 2 else {"steps": [{"run": args}]}
        )
        cases.append(Case("argv_list", "argument_list", payload, (pw[index],)))
    config: list[tuple[str, dict[str, Any]]] = [
        ("qualified_name", {"env": {"DB_PASSWORD_2": pw[5]}}),
        ("qualified_name", {"file": f"OPENAI_API_KEY_PROD={pw[6]}\n"}),
        ("php_define", {"file": f"define( 'DB_PASSWORD', '{pw[7]}' );"}),
        ("dockerfile_env", {"file": f"FROM node:20\nENV NPM_TOKEN {pw[8]}\nRUN npm ci"}),
        ("ssm_parameter", {"out": json.dumps({"Type": "SecureString", "Value": pw[9]})}),
        ("xml_entry", {"xml": f'<entry key="db.password">{pw[10]}</entry>'}),
        ("cookie_header", {"request": f"Cookie: theme=dark; sessionid={pw[11]}x{pw[12]}"}),
        ("tool_config", {"cmd": f"npm config set //registry.npmjs.org/:_authToken {pw[12]}"}),
    ]
    for context, shaped in config:
        text = json.dumps(shaped)
        cases.append(Case("config_by_name", context, shaped, tuple(p for p in pw if p in text)))
    return cases


def clean_cases(seed: int = 11) -> list[Case]:
    """Payloads with nothing to redact: ids, digests, prose, placeholders, references."""
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(context: str, make: Callable[[], dict[str, Any]], count: int) -> None:
        cases.extend(Case("clean", context, make()) for _ in range(count))

    hexes = _ALPHABETS["h"]
    add("uuid", lambda: {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4))}, 20)
    add("git_sha", lambda: {"commit": _random(rng, hexes, 40), "msg": _sentence(rng)}, 20)
    add("digest", lambda: {"image": f"app@sha256:{_random(rng, hexes, 64)}"}, 15)
    add("md5", lambda: {"etag": f'"{_random(rng, hexes, 32)}"'}, 10)
    add(
        "base64_text",
        lambda: {"blob": base64.b64encode(_sentence(rng, 12).encode()).decode()},
        20,
    )
    add(
        "secrets_manager_arn",
        lambda: {
            "arn": f"arn:aws:secretsmanager:eu-west-1:{rng.randint(10**11, 10**12 - 1)}:secret:"
            f"prod/{rng.choice(('db', 'api', 'smtp'))}/password-{_random(rng, _ALPHABETS['a'], 6)}"
        },
        15,
    )
    add(
        "arn",
        lambda: {
            "role": f"arn:aws:iam::{rng.randint(10**11, 10**12 - 1)}:role/agent-"
            f"{rng.choice(_WORDS)}",
            "key": f"arn:aws:kms:eu-west-1:123456789012:key/{uuid.uuid4()}",
        },
        15,
    )
    security_prose = (
        "Rotate the API key and the database password before the audit.",
        "The token expired, so the agent requested a new token from the identity provider.",
        "Secrets are read from Secrets Manager; never paste a password into chat.",
        "Bearer authentication is described in RFC 6750, Basic authentication in RFC 7617.",
        "Forgot password: click the link below to reset it.",
        "ERROR 1045 (28000): Access denied for user 'app'@'10.0.0.7' (using password: YES)",
        "password_policy: strict, min_length: 12, rotation_days: 90",
        "max_tokens: 4096, input_tokens=900, token_count=12",
        "The secret key rotation job finished; 14 keys rotated, 0 failures.",
        "Use --password-stdin so the password never appears in the shell history.",
        "mysql -u app -p app_db  # prompts for the password",
        "aws secretsmanager get-secret-value --secret-id prod/db/password",
        "We store the credential in Vault and inject it at runtime.",
    )
    add("security_prose", lambda: {"summary": rng.choice(security_prose)}, 30)
    placeholders = (
        "<your-api-key>", "YOUR_API_KEY_HERE", "${DB_PASSWORD}", "$GITHUB_TOKEN",
        'os.environ["DB_PASSWORD"]', "process.env.API_KEY", "xxxxxxxx", "changeme", "sk-...",
        "AKIAIOSFODNN7EXAMPLE", "********", "{{ secrets.DEPLOY_TOKEN }}", "<password>",
        "REDACTED", "${{ secrets.NPM_TOKEN }}", "%(password)s",
        "ghp_" + "x" * 36,
        "your-token-here", "null", "",
    )  # fmt: skip
    keys = ("password", "api_key", "token", "DB_PASSWORD", "client_secret", "auth_token")
    add("placeholder_field", lambda: {rng.choice(keys): rng.choice(placeholders)}, 30)
    add(
        "placeholder_text",
        lambda: {"config": f"{rng.choice(keys).upper()}={rng.choice(placeholders)}"},
        30,
    )
    code = (
        'password = os.environ["DB_PASSWORD"]',
        "const apiKey = process.env.API_KEY;",
        'token := os.Getenv("GITHUB_TOKEN")',
        "export GITHUB_TOKEN=$(gh auth token)",
        'db_password = get_secret("prod/db/password")',
        "secret = boto3.client('secretsmanager').get_secret_value(SecretId=name)",
        "env:\n  - name: DB_PASSWORD\n    valueFrom:\n"
        "      secretKeyRef: {name: db, key: password}",
        "if token == expected: return True",
        "password: ${DB_PASSWORD:?required}",
        "api_key = settings.API_KEY",
    )
    add("code_reads_secret", lambda: {"diff": rng.choice(code)}, 30)
    references = (
        "MasterUserPassword: !Ref DbPassword",
        "Password: !Sub '{{resolve:secretsmanager:${DbSecret}:SecretString:password}}'",
        'password=env("DB_PASSWORD")',
        "password = random_password.db.result",
        "The token is valid for 3600 seconds; the password is required.",
    )
    add("references", lambda: {"text": rng.choice(references)}, 10)
    argv = (
        ["mysql", "-u", "app", "-p", "app_db"],
        ["redis-cli", "-h", "cache", "-p", "6379", "ping"],
        ["docker", "login", "--password-stdin", "-u", "ci", "ghcr.io"],
        ["ls", "-la", "/var/log"],
    )
    add("argument_list", lambda: {"argv": list(rng.choice(argv))}, 10)
    add(
        "json_schema",
        lambda: {
            "schema": {
                "type": "object",
                "properties": {
                    rng.choice(("password", "api_key", "token")): {
                        "type": "string",
                        "minLength": rng.randint(8, 16),
                    }
                },
            }
        },
        15,
    )
    add(
        "pagination",
        lambda: {
            rng.choice(("nextToken", "next_page_token", "NextContinuationToken", "pageToken")): (
                base64.b64encode(json.dumps({"offset": rng.randint(1, 10**6)}).encode()).decode()
            )
        },
        20,
    )
    add("masked", lambda: {"card": "**** **** **** " + str(rng.randint(1000, 9999))}, 10)
    vendors = ("heroku", "algolia", "snyk", "datadog", "twilio", "okta", "vault", "mailgun")
    add(
        "vendor_ids",
        lambda: {
            "note": f"{rng.choice(vendors)} app {uuid.UUID(int=rng.getrandbits(128), version=4)}"
            f" released, build {_random(rng, hexes, 32)}"
        },
        15,
    )
    add(
        "urls",
        lambda: {
            "url": f"https://github.com/acme/{rng.choice(_WORDS)}/pull/{rng.randint(1, 999)}"
            f"?tab=files#diff-{_random(rng, hexes, 12)}",
            "ssh": "ssh://git@github.com:22/acme/repo.git",
        },
        15,
    )
    add(
        "metrics",
        lambda: {"metrics": {f"m{i}": round(rng.random() * 100, 2) for i in range(10)}},
        10,
    )
    add(
        "kubernetes",
        lambda: {
            "manifest": {
                "kind": "Deployment",
                "spec": {"env": [{"name": "LOG_LEVEL", "value": "debug"},
                                 {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                                     "name": "db", "key": "password"}}}]},
            }
        },
        10,
    )  # fmt: skip
    add(
        "hashes_in_logs",
        lambda: {
            "log": f"build {_random(rng, hexes, 40)} pushed sha256:{_random(rng, hexes, 64)} "
            f"trace_id={uuid.uuid4()} span={_random(rng, hexes, 16)}"
        },
        15,
    )
    return cases


def corpus(seed: int = 10) -> tuple[list[Case], list[Case]]:
    """(secret cases, clean cases)."""
    return secret_cases(seed), clean_cases(seed + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the corpus as JSON lines here")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args(argv)
    secrets, clean = corpus(args.seed)
    families = {case.family for case in secrets}
    print(f"{len(secrets)} secret cases in {len(families)} families, {len(clean)} clean cases",
          file=sys.stderr)  # fmt: skip
    if args.out:
        with args.out.open("w", encoding="utf-8") as out:
            for case in [*secrets, *clean]:
                out.write(json.dumps(case.__dict__) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
