"""Secret redaction for event payloads: pure, deterministic, idempotent and linear in time.

Every string of a payload (dict keys included) is joined into one text and scanned once by a
Hyperscan literal prefilter: it says which rules (``redaction_rules.RULES``) can match at all,
usually none. Only those rules then run, each as one RE2 pass over the joined text; both engines
guarantee time linear in the input. Strings that hold percent-escapes or backslash-escapes are
also scanned decoded (at most two rounds), and a match there replaces the span of the original
it came from. Around the text rules sit the structural ones: a secret-named key has its whole
value replaced, a ``{"name": "DB_PASSWORD", "value": ...}`` pair its value, and a PEM block split
over the items of a list every item of the block.

Matches become ``[REDACTED:<kind>]`` markers. No rule matches a marker, and where a marker gives
a glued neighbour a new boundary the pass repeats, so redacting twice changes nothing. Engines
are built on first use (~60-110 ms), so importing this module compiles nothing. A value whose
JSON one scan shows to be clean is not walked at all (``payload_json_clean`` on the raw JSON at
hand, ``redact_if_needed`` on the value serialised), and in a large value only the runs of list
items with work in them are.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import accumulate, repeat
from operator import add
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic_core import to_json

if TYPE_CHECKING:
    from punk_records.redaction_rules import Rule

__all__ = [
    "REDACTED_PREFIX",
    "FirstMatch",
    "credential_family",
    "payload_json_clean",
    "redact",
    "redact_bytes",
    "redact_if_needed",
    "redact_payload",
    "redact_text",
]

REDACTED_PREFIX = "[REDACTED:"
_MARKER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
# Strings are joined with a separator no rule crosses: every value class stops at a line break
# and no class admits NUL. A match that still spans two strings is dropped.
_SEPARATOR = "\n\x00\n"

# ------------------------------------------------------------------------------ key names

# Secret field names, matched against the END of a name split into words (separators and
# camelCase), case-insensitively: `db_password`, `X-Api-Key`, `clientSecret` and `DB_PASS` match,
# `password_policy`, `secret_name`, `bypass` and `primary_key` do not. The first matching row
# names the marker kind; names of several words also match written as one (`apikey`).
_SECRET_NAMES: tuple[tuple[str, str], ...] = (
    ("secret access key", "aws_secret_access_key"),
    ("password", "password"),
    ("passwd", "password"),
    ("passphrase", "password"),
    ("passcode", "password"),
    ("pwd", "password"),
    ("pass", "password"),
    ("pw", "password"),
    ("pat", "secret"),
    ("secret", "secret"),
    ("secret key base", "secret"),
    ("token", "secret"),
    ("api key", "secret"),
    ("app key", "secret"),
    ("admin key", "secret"),
    ("service key", "secret"),
    ("auth key", "secret"),
    ("write key", "secret"),
    ("deploy key", "secret"),
    ("root key", "secret"),
    ("ssh key", "private_key"),
    ("session key", "secret"),
    ("master key", "secret"),
    ("private key", "private_key"),
    ("key data", "private_key"),
    ("secret key", "secret"),
    ("access key", "secret"),
    ("account key", "secret"),
    ("client key", "secret"),
    ("license key", "secret"),
    ("signing key", "secret"),
    ("functions key", "secret"),
    ("function key", "secret"),
    ("secret string", "secret"),
    ("secret binary", "secret"),
    ("sshpass", "password"),
    ("hmac key", "secret"),
    ("application key", "secret"),
    ("encryption key", "secret"),
    ("credential", "secret"),
    ("cookie", "secret"),
    ("authorization", "secret"),
    ("auth", "secret"),
)
# Names that end like a secret but hold something else: pagination cursors, counters.
_NOT_SECRET_ENDINGS = (
    "nexttoken",
    "pagetoken",
    "continuationtoken",
    "paginationtoken",
    "synctoken",
    "resumetoken",
    "cursortoken",
    "maxtoken",
    "tokentype",
)
# Endings that are words of their own: they count only as the last word of a name.
_SHORT_NAMES = {"pass", "pw", "pwd", "auth", "pat"}
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _endings() -> dict[str, str]:
    endings: dict[str, str] = {}
    for words, kind in _SECRET_NAMES:
        ending = words.replace(" ", "")
        if ending in _SHORT_NAMES:
            continue
        endings.setdefault(ending, kind)
        if ending != "token":
            endings.setdefault(ending + "s", kind)
    return endings


_NAME_ENDINGS = _endings()
_NAME_ENDING_TUPLE = tuple(_NAME_ENDINGS)
_SHORT_KINDS = {words: kind for words, kind in _SECRET_NAMES if words in _SHORT_NAMES}


def _marker(kind: str) -> str:
    return f"{REDACTED_PREFIX}{kind}]"


# Words after a secret word, past a separator, that only say which one: DB_PASSWORD_2,
# OPENAI_API_KEY_PROD, api_key_v2 ("token0" is no secret name).
_QUALIFIER_WORDS = (
    r"[0-9]{1,3}|v[0-9]{0,2}|b64|base64|prod|production|dev|development|staging|stage|test|live|"
    r"old|new|prev|previous|next|backup|primary|secondary|ro|rw|ci|local|default"
)
_QUALIFIED = re.compile(rf"(?i)(?:[_.\- ](?:{_QUALIFIER_WORDS})){{1,2}}$")


@lru_cache(maxsize=4096)
def _name_kind(name: str) -> str | None:
    """Marker kind if ``name`` (a key, an XML tag, a variable) names a secret, else None."""
    # Callers pass names as they appear after redaction, so this cache never holds a secret.
    name = _MARKER.sub("", name)
    qualified = _QUALIFIED.search(name)
    if qualified is not None and qualified.start() > 0:
        kind = _name_kind(name[: qualified.start()])
        if kind is not None:
            return kind
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    if not normalised or normalised.endswith(_NOT_SECRET_ENDINGS):
        return None
    if normalised.endswith(_NAME_ENDING_TUPLE):
        return next(kind for end, kind in _NAME_ENDINGS.items() if normalised.endswith(end))
    words = _WORDS.findall(name)
    if words:
        return _SHORT_KINDS.get(words[-1].lower())
    return None


# ------------------------------------------------------------------------------ placeholders

_PLACEHOLDER_WORDS = frozenset(
    {
        "changeme", "change_me", "change-me", "password", "passwd", "secret", "token", "null",
        "none", "nil", "true", "false", "undefined", "yes", "no", "redacted", "example",
        "placeholder", "dummy", "todo", "tbd", "required", "optional", "string", "hidden",
        "masked", "notset", "not_set", "empty", "value", "your_password", "mypassword",
        "password123", "secret123", "xxx", "pass", "test", "sample", "foo", "bar", "foobar",
        "unknown", "default", "prompt", "stdin", "-", "omitted", "sensitive", "n/a", "tbc",
        # Code, not a value: "token = await ...", "password = input(...)".
        "await", "new", "this", "self", "function", "lambda", "yield", "return", "input",
        "args", "kwargs", "options", "opts", "params", "config", "settings", "request", "req",
        "ctx", "context", "data", "result", "response", "res",
    }
)  # fmt: skip
_PLACEHOLDER = re.compile(
    r"\$\{|\{\{|\$\(|%\(|<[^>]*>|\.\.\.|…|^\$[A-Za-z_]|^%[A-Za-z_]+%$|process\.env|os\.environ"
    r"|getenv|ENV\[|\bsecrets\.|\bvars\.|^env:|^\(?(?:using|with)\b|EXAMPLE|(?i:your[_ -]?"
    r"(?:api|secret|access|auth|pass|token|key|own|db|app|client|personal|bot|user))"
    r"|(?i:\byour[_ -])|(?i:_here$|-here$)"
    r"|(?i:^(?:insert|replace|enter|put|paste|add)[_ -])|^\[REDACTED:|^[xX*#.•_-]+$"
    # Masked (****1234) and references to a secret store rather than a secret.
    r"|\*{3}|•{3}|^(?:arn|op|vault|ssm|secretsmanager|awssm|azkv|gcpsm|sm):|^projects/[^/]+/secrets/"
    # CloudFormation intrinsics: MasterUserPassword: !Ref DbPassword, !Sub '{{resolve:...}}'.
    r"|^!(?:Ref|Sub|GetAtt|ImportValue|Join|Select|FindInMap|If|Base64|Split|Transform)\b"
)
# How to authenticate, not with what: "auth: oauth2", "authorization: basic".
_AUTH_METHOD = re.compile(
    r"(?i)(?:none|basic|bearer|digest|oauth2?|oidc|saml2?|sso|ldap|kerberos|ntlm|negotiate|mtls|"
    r"tls|iam|sigv4|jwt|apikey|api[_-]?key|token|password|cert|certificate|anonymous|required|"
    r"optional|enabled|disabled|true|false)"
)


def _auth_method(name: str, value: str) -> bool:
    """True for ``auth: oauth2`` and the like: a scheme under an auth-named key."""
    words = _WORDS.findall(name)
    return (
        bool(words)
        and words[-1].lower() in ("auth", "authorization")
        and (_AUTH_METHOD.fullmatch(value.strip()) is not None)
    )


def _placeholder(value: str) -> bool:
    """True for values that stand for a secret without being one: references, masks, dummies."""
    # Placeholders are short; a long value is judged by its head.
    stripped = value[:256].strip("\"'`()[]{};,")
    lower = stripped.lower()
    if len(stripped) < 3 or lower in _PLACEHOLDER_WORDS:
        return True
    if len(set(stripped)) <= 2 or "xxxxxx" in lower:
        return True
    if (
        stripped.isascii()
        and stripped[0] not in _PLACEHOLDER_FIRST
        and not any(hint in lower for hint in _PLACEHOLDER_HINTS)
    ):
        return False  # the search below costs ~10 us, and a random token has none of these
    return _PLACEHOLDER.search(stripped) is not None


# In ASCII text _PLACEHOLDER matches only where one of these occurs (lower-cased), or where the
# text starts with one of _PLACEHOLDER_FIRST. A test holds the two together.
_PLACEHOLDER_HINTS = (
    "$", "{", "%", "<", "...", ":", "***", "[redacted:", "env", "process", "secrets.", "vars.",
    "using", "with", "example", "your", "here", "insert", "replace", "enter", "put", "paste",
    "add", "projects/",
)  # fmt: skip
_PLACEHOLDER_FIRST = frozenset("xX*#._-!")


def _random_body(body: str) -> bool:
    """A token body that is not a placeholder (repeated characters, x-runs, words)."""
    return _varied(body) and "xxxxxx" not in body.lower() and not _placeholder(body)


def _varied(text: str) -> bool:
    """True when ``text`` has more than four distinct characters. A token run can be 256 KiB:
    its head usually decides, and deleting one character at a time is C-speed."""
    if len(set(text[:64])) > 4:
        return True
    for _ in range(4):
        if not text:
            return False
        text = text.replace(text[0], "")
    return bool(text)


_DIGIT = re.compile(r"[0-9]")


# ------------------------------------------------------------------------------ checks

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _github_checksum_ok(token: str) -> bool:
    """GitHub's classic tokens end in the base62 CRC32 of their 30 random characters."""
    body = token[4:]
    if len(body) != 36:
        return False
    crc = zlib.crc32(body[:30].encode())
    digits = ""
    while crc:
        crc, rest = divmod(crc, 62)
        digits = _BASE62[rest] + digits
    return body[30:] == digits.rjust(6, "0")


_PREFIX_SPLIT = re.compile(r"^[A-Za-z0-9]{1,12}[_.-]|^[A-Z]{2,5}-?")


def _token_ok(value: str) -> bool:
    match = _PREFIX_SPLIT.match(value)
    body = value[match.end() :] if match else value
    return _random_body(body)


def _value_ok(value: str) -> bool:
    return not _placeholder(value)


def _aws_secret_ok(value: str) -> bool:
    has = {c.isupper() for c in value if c.isalpha()}
    return (
        len(has) == 2
        and any(c.isdigit() or c in "/+" for c in value)
        and not _placeholder(value)
        and len(set(value)) > 10
    )


def _basic_ok(value: str) -> bool:
    try:
        plain = binascii.a2b_base64(value + "=" * (-len(value) % 4), strict_mode=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return ":" in plain and plain.isprintable()


def _bearer_ok(value: str) -> bool:
    if value.isalpha() and len(value) < 20:
        return False  # "Bearer authentication" is prose
    return not _placeholder(value)


def _b64_private_key_ok(value: str) -> bool:
    head = value[:64]
    try:
        plain = base64.b64decode(head[: len(head) // 4 * 4], validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return "PRIVATE KEY" in plain


def _prose_password_ok(value: str) -> bool:
    value = value.rstrip(".,;:!?)")
    return (
        len(value) >= 6
        and any(c.isalpha() for c in value)
        and any(c.isdigit() or not c.isalnum() for c in value)
        and not _placeholder(value)
        and not _CODE.match(value)
        and not (_HYPHENATED_WORDS.fullmatch(value) and sum(c.isdigit() for c in value) <= 2)
    )


# "2fa-enabled", "read-only": lower-case words joined by hyphens (with a digit or two at most).
_HYPHENATED_WORDS = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")


def _prose_token_ok(value: str) -> bool:
    """A value named a token or a secret in prose: 12 characters or more, letters and digits,
    random ("the token for the bot is 9fQ2...", not "the secret is out")."""
    value = value.rstrip(".,;:!?)")
    # Random characters are upper-case or digits a third of the time or more; a term such as
    # "sha256-hashed" or "AES-256" is mostly lower-case or short.
    marked = sum(1 for c in value if c.isdigit() or c.isupper())
    return (
        len(value) >= 12
        and any(c.isalpha() for c in value)
        and any(c.isdigit() for c in value)
        and marked * 10 >= len(value) * 3
        and _random_body(value)
        and not _CODE.match(value)
    )


def _token_with_digit_ok(value: str) -> bool:
    # A kebab-case chain such as "sk-learn-style-naming" or "xoxb-your-bot-token" has no digit;
    # real keys do.
    return _DIGIT.search(value) is not None and _token_ok(value)


def _discord_ok(value: str) -> bool:
    return _DIGIT.search(value) is not None and _random_body(value)


def _mailgun_ok(value: str) -> bool:
    return value.startswith("key-") or value.count("-") == 2


_COOKIE_VALUE = re.compile(r"([A-Za-z0-9_.$-]+)=([^;\s]{12,})")
# Analytics cookies (_ga=GA1.2.…, _fbp, __utma) identify a browser, not a session.
_ANALYTICS_COOKIE = re.compile(r"_ga|_gid|_gat|_gcl|__utm|_fbp|_fbc|_hj|ajs_|_uet|_clck|_clsk")
_CHARACTER_CLASSES = (re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]"))


def _cookie_ok(value: str) -> bool:
    """A Cookie header holding a session-like value: long, random, of two character classes or
    more (``theme=dark; lang=en`` holds none)."""
    return any(
        _random_body(found)
        and sum(1 for c in _CHARACTER_CLASSES if c.search(found)) >= 2
        and not _ANALYTICS_COOKIE.match(name)
        for name, found in _COOKIE_VALUE.findall(value)
    )


def _url_password_ok(value: str) -> bool:
    return not _placeholder(value) and not value.isdigit()


_CHECKS: dict[str, Callable[[str], bool]] = {
    "any": lambda value: True,
    "github": lambda value: _github_checksum_ok(value) or _token_ok(value),
    "token": _token_ok,
    "value": _value_ok,
    "aws_id": lambda value: "EXAMPLE" not in value,
    "aws_secret": _aws_secret_ok,
    "basic": _basic_ok,
    "bearer": _bearer_ok,
    "b64_private_key": _b64_private_key_ok,
    "prose_password": _prose_password_ok,
    "digit": _token_with_digit_ok,
    "discord": _discord_ok,
    "mailgun": _mailgun_ok,
    "url_password": _url_password_ok,
    "sas": _value_ok,
    "cookie": _cookie_ok,
    "prose_token": _prose_token_ok,
}

# ------------------------------------------------------------------------------ the engine

# Hyperscan anchors: for rules whose literals are too common a cheap regex says more. Each is
# found at least wherever the rule matches.
_ANCHORS: dict[str, str] = {
    "azure_storage_key": r"(?i)(?:AccountKey|SharedAccessKey|storage[_.-]?(?:account[_.-]?)?key)"
    r"[\"']?\s*[=:]",
    "datadog_key": r"(?i)(?:datadog|dd)[A-Za-z0-9_.\-]{0,20}(?:api|app|application|client)"
    r"[_.\-]?key",
    "ibm_cloud_api_key": r"(?i)(?:ibm|bluemix)[A-Za-z0-9_.\-]{0,30}[\"']?\s*[:=]",
    "aws_secret_access_key": r"[A-Za-z0-9/+]{40}",
    "aws_secret_by_name": r"[A-Za-z0-9/+]{40}",
    "discord_bot_token": r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.",
    "mailgun_api_key": r"key-[a-f0-9]{32}|[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}",
    "asana_token": r"[0-9]/[0-9]{10}",
    "twilio_api_key": r"SK[0-9a-fA-F]{32}",
    "airtable_token": r"pat[A-Za-z0-9]{14}\.",
    "mailchimp_api_key": r"[a-f0-9]{32}-us\d",
    "named_value_pair": r"(?i)value[\"']?[ \t]*[:=]",
    "xml_secret_element": r"(?i)</[A-Za-z0-9_:.-]*(?:pass|pw|secret|token|key|auth|credential)",
    "xml_add_key_value": r"(?i)(?:key|name)\s*=\s*\"",
    "curl_user": r"(?:^|\s)(?:-u|--user|--proxy-user|-U)[ \t=]+\S",
    "cli_password": r"(?i)(?:^|\s)--?[a-z-]*(?:pass|pw|secret|token|key)",
    "openssl_pass": r"pass:",
    "labelled_secret": r"(?i)(?:pass|pw|secret|token|key|auth|credential|cookie|pat)"
    r"[A-Za-z0-9_.-]{0,40}"
    r"\\?[\"']?[ \t]*(?:=|:)",
    "bearer_token": r"(?i)bearer[ \t]+[A-Za-z0-9_~+/-]",
    "basic_auth": r"(?i)basic[ \t]+[A-Za-z0-9+/]{6}",
    "url_password": r"://[^\s/?#@]*:[^\s/]*@",
    "cli_short_password": r"\s-[pawP]",
    "cli_mysql_password": r"\s-p[^\s]",
    "facebook_access_token": r"EAA[A-Za-z0-9]{80}",
    # Not the run of A: a long self-overlapping literal costs the prefilter on runs of "A".
    "twitter_bearer_token": r"%(?:2B|2F|3D)",
    "octopus_api_key": r"API-[A-Z0-9]{26}",
    "launchdarkly_key": r"(?:api|sdk|mob)-[0-9a-f]{8}-",
    "telegram_bot_token": r"\d{8}:AA",
    "aws_access_key_id": r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
    "google_oauth_refresh_token": r"1//0[A-Za-z0-9_-]{30}",
    "notion_token": r"secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}",
    "huggingface_org_token": r"api_org_[A-Za-z]{30}",
    "npm_token": r"npm_[A-Za-z0-9]{36}",
    "nuget_api_key": r"oy2[a-z0-9]{43}",
}


# A string of the joined text that ends like a secret name (a dict key such as "db_password", a
# Kubernetes env name); a bare "key" is no such name. The endings are those of _SECRET_NAMES.
_NAME_ENDS = (
    r"(?i)(?:[^\n\x00\"]keys?|key[^A-Za-z0-9]?datas?|key[^A-Za-z0-9]?bases?|"
    r"pass(?:word|wd|phrase|code)?s?|pwds?|pw|pat|secrets?|token|credentials?|cookies?|"
    r"authorizations?|auth)"
)
_NAME_QUALIFIERS = rf"(?:[_.\- ](?:{_QUALIFIER_WORDS})){{0,2}}"
_NAME_ANCHOR = _NAME_ENDS + _NAME_QUALIFIERS + r"[^A-Za-z0-9\n\x00]{0,8}\n\x00"
NAMES = -1
ARGV = -2
# In raw JSON a string ends with a quote.
_RAW_NAME_ANCHOR = _NAME_ENDS + _NAME_QUALIFIERS + r"[^A-Za-z0-9\"\\]{0,8}\""


def _raw_anchor(expression: str) -> str:
    """An anchor for joined strings widened to hold for raw JSON text too: where it expects
    the start or end of the text or a white space (a string's edge in the joined text), a
    quote (a string's edge in JSON) does as well. A quote inside a string is escaped in JSON,
    and raw text with a backslash always takes the full path, so a quote in a character class
    can only match JSON's structure (`"key": ...`): it is dropped."""
    out: list[str] = []
    in_class = escaped = False
    for char in expression:
        if escaped:
            escaped = False
            if char == "s" and not in_class:
                out[-1] = r"(?:\s|\")"
            elif char == '"' and in_class:
                out.pop()
            else:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
        elif char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class and out and out[-1] != "[":
            in_class = False
        elif char in "^$" and not in_class:
            out.append(f'(?:{char}|")')
            continue
        elif char == '"' and in_class:
            continue
        out.append(char)
    return "".join(out)


_OTHER_ESCAPE = re.compile(rb"\\[^nrt]")


def _stop(expression: int, start: int, end: int, flags: int, context: object) -> bool:
    return True  # a match handler that ends the scan at the first match


class FirstMatch:
    """A Hyperscan database asked one question: does some text hold a match of any of its
    expressions? The scan ends at the first match found."""

    def __init__(self, expressions: Sequence[bytes], flags: Sequence[int] | None = None) -> None:
        import hyperscan

        if flags is None:
            flags = [hyperscan.HS_FLAG_SINGLEMATCH] * len(expressions)
        self._database = hyperscan.Database()
        self._database.compile(
            expressions=list(expressions), ids=list(range(len(expressions))), flags=list(flags)
        )
        self._scratch = hyperscan.Scratch(self._database)
        self._terminated = hyperscan.ScanTerminated

    def found_in(self, data: bytes) -> bool:
        try:
            self._database.scan(data, match_event_handler=_stop, scratch=self._scratch)
        except self._terminated:
            return True
        return False


class _Compiled:
    """The rules compiled: one Hyperscan database of anchors, one RE2 regex per rule."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        import hyperscan
        import re2  # type: ignore[import-untyped]

        self.rules = tuple(rules)
        options = re2.Options()
        options.max_mem = 64 << 20
        self.regexes = [re2.compile(rule.pattern, options) for rule in self.rules]
        self.groups = [
            tuple(
                (regex.groupindex[name], tails.get(name))
                for name in ("s", "s2", "s3")
                if name in regex.groupindex
            )
            for regex, tails in zip(
                self.regexes,
                ({name: re.compile(tail) for name, tail in rule.tails} for rule in self.rules),
                strict=True,
            )
        ]
        self.name_groups = [regex.groupindex.get("n") for regex in self.regexes]
        # RE2's wrapper builds groupindex anew on every access.
        self.group_indexes = [regex.groupindex for regex in self.regexes]
        self.checks = [_CHECKS.get(rule.check) for rule in self.rules]
        expressions: list[bytes] = []
        flags: list[int] = []
        owners: list[int] = []
        for index, rule in enumerate(self.rules):
            anchor = _ANCHORS.get(rule.family) or rule.anchor or None
            if anchor is not None:
                expressions.append(anchor.encode())
                flags.append(hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY)
                owners.append(index)
                continue
            for literal in rule.literals:
                expressions.append(re.escape(literal).encode())
                caseless = hyperscan.HS_FLAG_CASELESS if rule.caseless else 0
                flags.append(hyperscan.HS_FLAG_SINGLEMATCH | caseless)
                owners.append(index)
        # A string that starts with a dash: the value may hold a command's argument list (whose
        # flags are never its first string).
        expressions.append(rb"\x00\n-")
        flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
        owners.append(ARGV)
        # One more anchor: a string that ends in a secret word may be a secret-named key.
        expressions.append(_NAME_ANCHOR.encode())
        flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
        owners.append(NAMES)
        # An AWS-shaped secret may sit in a name/value pair whose name is no secret word.
        expressions.append(rb"[A-Za-z0-9/+]{40}")
        flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
        owners.append(NAMES)
        self.owners = owners
        self.database = hyperscan.Database()
        self.database.compile(
            expressions=expressions, ids=list(range(len(expressions))), flags=flags
        )
        self.scratch = hyperscan.Scratch(self.database)
        # The same anchors for raw JSON text, where a string starts after a quote, not after
        # the separator; plus what only the full path handles (escapes, secret-named keys).
        raw = [_raw_anchor(expression.decode()).encode() for expression in expressions[:-2]]
        raw += [_RAW_NAME_ANCHOR.encode(), expressions[-1], rb"\\", rb"%[0-9A-Fa-f]{2}"]
        self.raw = FirstMatch(
            raw,
            [*flags[:-2], hyperscan.HS_FLAG_SINGLEMATCH, hyperscan.HS_FLAG_SINGLEMATCH, 0, 0],
        )

    def raw_json_clean(self, data: bytes) -> bool:
        """True when nothing in raw JSON ``data`` can be redacted: no rule's anchor, no secret
        word, no escape but a line break or a tab. The first sign of work stops the scan
        (ScanTerminated)."""
        if b"\\" in data:
            # Any escape but a line break or a tab (an escaped backslash included) is work;
            # those are scanned as themselves, as the full path sees them.
            if _OTHER_ESCAPE.search(data) is not None:
                return False
            data = data.replace(b"\\n", b"\n").replace(b"\\r", b"\r").replace(b"\\t", b"\t")
        return not self.raw.found_in(data)

    def candidates(self, text: str) -> list[int]:
        """Indices of the rules whose anchors occur in ``text``, in rule order; before them
        ``ARGV`` when a string of the joined ``text`` starts with a dash and ``NAMES`` when one
        may be a secret-named key."""
        found: set[int] = set()
        owners = self.owners

        def on_match(expression: int, start: int, end: int, flags: int, context: object) -> None:
            found.add(owners[expression])

        self.database.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_match,
                           scratch=self.scratch)  # fmt: skip
        return sorted(found)

    def spans(
        self, text: str, candidates: list[int] | None = None
    ) -> list[tuple[int, int, str, int]]:
        """Every (start, end, kind, rule index) to replace in ``text``, unmerged."""
        found: list[tuple[int, int, str, int]] = []
        # ASCII text is matched as bytes, whose offsets are the text's: RE2's wrapper would
        # otherwise encode the text again for every search.
        data = text.encode("ascii") if text.isascii() else None
        for index in self.candidates(text) if candidates is None else candidates:
            if index < 0:  # NAMES, ARGV: no rule of their own
                continue
            rule = self.rules[index]
            groups = self.groups[index]
            name_group = self.name_groups[index]
            resume = [0]
            for match in _matches(self.regexes[index], text, data, resume):
                start = end = -1
                tail = None
                for group, group_tail in groups:
                    start, end = match.span(group)
                    if start >= 0:
                        tail = group_tail
                        break
                if not groups:
                    start, end = match.span()
                if start < resume[0] or end <= start:
                    continue  # inside the (extended) span of the previous match
                if tail is not None and (run := tail.match(text, end)) is not None:
                    end = run.end()
                resume[0] = end
                value = text[start:end]
                kind: str | None = rule.kind
                if rule.check == "labelled":
                    kind = _labelled_kind(text, match, self.group_indexes[index], (start, end))
                elif name_group is not None:
                    name_kind = _name_kind(_group(text, match, name_group) or "")
                    kind = name_kind if name_kind and _value_ok(value.strip()) else None
                else:
                    check = self.checks[index]
                    if check is None or not check(value):
                        kind = None
                if kind is not None:
                    found.append((start, end, kind, index))
        return found


def _matches(regex: Any, text: str, data: bytes | None, resume: list[int]) -> Iterator[Any]:
    """The matches of ``regex`` in ``text`` (given as ASCII ``data`` when it is ASCII); the
    caller moves ``resume[0]`` past a span it extended, and searching goes on from there."""
    if data is None:
        yield from regex.finditer(text)
        return
    position = 0
    while (match := regex.search(data, position)) is not None:
        yield match
        position = max(match.end(), match.start() + 1, resume[0])


def _group(text: str, match: Any, group: int) -> str | None:
    """A group of ``match`` as text (the match may be over the text's ASCII bytes)."""
    start, end = match.span(group)
    return None if start < 0 else text[start:end]


_ENGINE: _Compiled | None = None


def _engine() -> _Compiled:
    global _ENGINE  # built once, on first use
    if _ENGINE is None:
        # The rules are imported here, not at module level: building 146 of them is cold-start
        # time that a request which redacts nothing (health, a refused token) should not pay.
        from punk_records.redaction_rules import RULES

        _ENGINE = _Compiled(RULES)
    return _ENGINE


_SCHEME_KINDS = {"bearer": "bearer_token", "basic": "basic_auth"}
# A colon that starts a name rather than ends an ARN's field: a Ruby symbol (`:password =>`),
# an .npmrc registry key (`//registry.example.org/:_authToken=`), PowerShell's `$env:NAME`.
_SYMBOL_NAME = re.compile(r"(?:^|[\s(,{\[]|/|(?i:\$env)):$")
_WORD = re.compile(r"[A-Za-z][a-z]{1,11}")
_PREFERENCE_COOKIE = re.compile(r"[A-Za-z0-9_.-]+=[A-Za-z]{1,12}")
# An unquoted value that is an expression: a call, or a dotted name (settings.API_KEY).
_CODE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_.]*\(|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$"
)


def _labelled_kind(
    text: str, match: Any, groups: dict[str, int], start_end: tuple[int, int]
) -> str | None:
    """The kind for a ``name = value`` match, or None when it is not a secret assignment."""
    name = _group(text, match, groups["n"]) or ""
    branch = next(b for b in ("", "2", "3") if match.span(groups["s" + b])[0] >= 0)
    quoted = not branch
    value = text[start_end[0] : start_end[1]]
    start = match.span(groups["n"])[0]
    if (
        start > 0
        and text[start - 1] in ":/$%{."
        and not _SYMBOL_NAME.search(text, max(0, start - 5), start)
    ):
        return None  # an ARN, a path, a reference (secret:prod/db, $SECRET, %(token)s, a.token)
    kind = _name_kind(name)
    if kind is None or _placeholder(value) or value[0] in "{[(" or _auth_method(name, value):
        return None
    scheme = (_group(text, match, groups["scheme" + branch]) or "").strip().lower()
    if branch == "3" and not scheme and _WORD.fullmatch(value):
        return None  # "password: required", "token: expired": a word in YAML or prose
    if kind == "secret" and (_PREFERENCE_COOKIE.fullmatch(value) or _ANALYTICS_COOKIE.match(value)):
        return None  # "Set-Cookie: theme=dark", "Cookie: _ga=GA1.2...": no session in it
    if scheme == "basic" and not _basic_ok(value):
        return None
    op_start, op_end = match.span(groups["op" + branch])
    spaced = text[op_start - 1] in " \t"
    if not quoted and (value.endswith("(") or (value.endswith(")") and "(" not in value)):
        return None  # password=env("DB_PASSWORD"), get(url, auth=auth): code
    if not quoted and _CODE.match(value) and (text[op_start:op_end] in (":=", "=>") or spaced):
        return None  # token := os.Getenv(...), api_key = settings.API_KEY: code, not a value
    return _SCHEME_KINDS.get(scheme, kind)


# ------------------------------------------------------------------------------ decoded views

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_ESCAPED = re.compile(r"\\[\"\\/bfnrtu]")


def _percent_decoded(text: str) -> str:
    """``text`` with %XX decoded as UTF-8 (a view to scan: invalid bytes become U+FFFD)."""
    if not text.isascii():
        return unquote(text, errors="replace")
    # C-speed for hostile runs of escapes: %XX becomes \xXX, decoded by the codec; a stray % is
    # a replacement character in the view.
    escaped = text.replace("\\", "\\\\").replace("%", "\\x")
    raw = codecs.decode(escaped, "unicode_escape", "replace").encode("latin-1", "replace")
    return raw.decode("utf-8", "replace")


def _json_unescaped(text: str) -> str:
    """``text`` with backslash escapes resolved (a view to scan)."""
    data = text.encode("ascii", "backslashreplace")
    return codecs.decode(data, "unicode_escape", "replace")


def _decoded_views(text: str) -> list[str]:
    """Decoded forms of ``text``: URL-decoded, JSON-unescaped, two rounds at most."""
    views: list[str] = []
    frontier = [text]
    for _ in range(2):
        following = []
        for current in frontier:
            for has, decode in ((_PERCENT, _percent_decoded), (_ESCAPED, _json_unescaped)):
                if has.search(current) is None:
                    continue
                decoded = decode(current)
                if decoded != current and decoded not in views:
                    views.append(decoded)
                    following.append(decoded)
        frontier = following
    return views


def _encoded_forms(secret: str) -> re.Pattern[str]:
    """A pattern for ``secret`` as it may be written encoded: each character itself, percent-
    encoded (once or twice), or backslash-escaped (once or twice, or as \\uXXXX)."""
    parts = []
    for char in secret:
        options = [re.escape(char)]
        data = char.encode()
        hexes = "".join(f"%(?:25)?{byte:02x}" for byte in data)
        options.append(re.sub(r"[a-f]", lambda m: f"[{m.group()}{m.group().upper()}]", hexes))
        code = f"{ord(char):04x}" if ord(char) < 0x10000 else None
        if code is not None:
            upper = re.sub(r"[a-f]", lambda m: f"[{m.group()}{m.group().upper()}]", code)
            options.append(f"\\\\{{1,3}}u{upper}")
        if char in '"\\/\b\f\n\r\t':
            letter = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}.get(char, char)
            options.append(f"\\\\{{1,3}}{re.escape(letter)}")
        parts.append("(?:" + "|".join(options) + ")")
    return re.compile("".join(parts))


def _may_be_encoded(text: str) -> bool:
    return ("%" in text and _PERCENT.search(text) is not None) or (
        "\\" in text and _ESCAPED.search(text) is not None
    )


# ------------------------------------------------------------------------------ text redaction


def _merge(spans: list[tuple[int, int, str, int]]) -> list[tuple[int, int, str]]:
    """Overlapping spans as one, named by the earliest rule among them (the most specific)."""
    merged: list[list[Any]] = []
    for start, end, kind, rank in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            if rank < last[3]:
                last[2], last[3] = kind, rank
        else:
            merged.append([start, end, kind, rank])
    return [(start, end, kind) for start, end, kind, _ in merged]


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    kept = 0
    for start, end, kind in spans:
        parts += (text[kept:start], _marker(kind))
        kept = end
    return "".join(parts) + text[kept:]


def _decoded_spans(text: str) -> list[tuple[int, int, str, int]]:
    """Matches found in the decoded views of ``text``, as spans of ``text``: each secret found
    in a view is looked up in ``text`` in its encoded forms; one not found there (an encoding
    we do not spell back) redacts the whole string."""
    engine = _engine()
    found: list[tuple[int, int, str, int]] = []
    for view in _decoded_views(text):
        for start, end, kind, rank in engine.spans(view):
            spans = [match.span() for match in _encoded_forms(view[start:end]).finditer(text)]
            if not spans:
                spans = [(0, len(text))]
            found.extend((first, last, kind, rank) for first, last in spans if last > first)
    return found


def _redact_once(originals: list[str]) -> tuple[dict[str, str], bool, set[str], bool]:
    """One pass of the rules over strings: the changed ones, redacted; whether one of them
    may be a secret-named key; and the changed ones where a marker touches a word character
    (only there can another pass find more)."""
    joined = _SEPARATOR.join(originals) + _SEPARATOR
    engine = _engine()
    candidates = engine.candidates(joined)
    names = NAMES in candidates
    argv = bool(candidates) and candidates[0] == ARGV
    spans = engine.spans(joined, candidates) if candidates else []
    encoded = (
        [i for i, string in enumerate(originals) if _may_be_encoded(string)]
        if "%" in joined or "\\" in joined
        else []
    )
    if not spans and not encoded:
        return {}, names, set(), argv
    # Where each string starts in the joined text (C-speed: payloads have many strings).
    starts = list(accumulate(map(add, map(len, originals), repeat(len(_SEPARATOR))), initial=0))
    per_string: dict[int, list[tuple[int, int, str, int]]] = {}
    for start, end, kind, rank in spans:
        index = bisect_right(starts, start) - 1
        base = starts[index]
        # A match running on into the separator (a truncated block's trailing line break)
        # ends with its string.
        end = min(end, base + len(originals[index]))
        per_string.setdefault(index, []).append((start - base, end - base, kind, rank))
    for index in encoded:
        decoded = _decoded_spans(originals[index])
        if decoded:
            per_string.setdefault(index, []).extend(decoded)
    result = {}
    glued = set()
    for index, found in per_string.items():
        original = originals[index]
        merged = _merge(found)
        redacted = _apply(original, merged)
        if redacted != original:
            result[original] = redacted
            if any(
                (start > 0 and original[start - 1] not in _LOOSE)
                or (end < len(original) and original[end] not in _LOOSE)
                for start, end, _ in merged
            ):
                glued.add(original)
    return result, names, glued, argv


# Characters next to which a marker changes no rule's view of its neighbour.
_LOOSE = frozenset(" \t\r\n\"'`,;:=()[]{}<>|&!?")


# A marker can give its neighbour the boundary a replaced character denied it (a token glued to
# a key block); passes repeat over what changed until nothing does, so redacting is idempotent.
_MAX_PASSES = 4


def _redact_strings(strings: list[str]) -> tuple[dict[str, str], bool, bool]:
    """The redacted form of every string in ``strings`` that holds a secret, and whether a
    string may be a secret-named key."""
    result, names, glued, argv = _redact_once(strings)
    for _ in range(_MAX_PASSES - 1):
        if not glued:
            break
        current = {result[original]: original for original in glued}
        again, _, glued_again, _ = _redact_once(list(current))
        glued = {current[text] for text in glued_again}
        for text, redacted in again.items():
            result[current[text]] = redacted
    return result, names, argv


def redact_text(text: str) -> str:
    """``text`` with every secret the rules find replaced by its marker."""
    return _redact_strings([text])[0].get(text, text)


# ------------------------------------------------------------------------------ structures

_NAME_KEYS = ("name", "Name", "key", "Key", "ParameterKey", "OptionName", "variable")
_VALUE_KEYS = ("value", "Value", "ParameterValue")
_PEM_OPEN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_CLOSE = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=\s:,.-]*")


def _pair_value_key(node: dict[Any, Any]) -> str | None:
    """For a ``{"name": "DB_PASSWORD", "value": ...}`` pair, the key of the secret value."""
    for value_key in _VALUE_KEYS:
        if value_key in node:
            for name_key in _NAME_KEYS:
                name = node.get(name_key)
                if isinstance(name, str) and (_name_kind(name) or _aws_pair(name, node[value_key])):
                    return value_key
    return None


def _aws_pair(name: str, value: Any) -> bool:
    """An AWS-shaped secret under an AWS-ish name (``AWS_SK``, ``S3_BACKUP_KEY``)."""
    return (
        isinstance(value, str)
        and len(value) == 40
        and _AWS_NAME.search(name) is not None
        and _aws_secret_ok(value)
    )


_AWS_NAME = re.compile(r"(?i)aws|s3|sk|secret|key|cred")


def _collect(value: Any, strings: list[str]) -> None:
    """Every string in ``value``, dict keys included, into ``strings``.

    Recursive: payloads are at most 64 levels deep (envelope validation), and this form was
    measured faster than an explicit stack for the payloads redaction sees most.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                strings.append(key)
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, (dict, list)):  # a tuple: faster than a union here
                _collect(item, strings)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, (dict, list)):  # a tuple: faster than a union here
                _collect(item, strings)
    elif isinstance(value, str):
        strings.append(value)


def _redact_value(value: Any) -> tuple[dict[str, str], bool]:
    """The redacted form of every string in ``value`` that holds a secret, and whether a key
    may name one. When a string starts with a dash (the scan says so), the command line of
    each argument list in ``value`` is redacted too (``_argv_items`` reads it back)."""
    strings: list[str] = []
    _collect(value, strings)
    if not strings:
        return {}, False
    redacted, names, argv = _redact_strings(strings)
    if argv:
        lines: list[str] = []
        _collect_argv(value, lines)
        if lines:
            redacted.update(_redact_strings(lines)[0])
    return redacted, names


def _collect_argv(value: Any, strings: list[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, (dict, list)):
                _collect_argv(item, strings)
    elif isinstance(value, list):
        if _argv(value):
            strings.append(" ".join(value))
        for item in value:
            if isinstance(item, (dict, list)):
                _collect_argv(item, strings)


def _argv(items: list[Any]) -> bool:
    """True for a list that may be a command's arguments (``["sshpass", "-p", X, ...]``): one-
    line strings, the first a command name, one a flag. Its items are also scanned joined, as
    the command line."""
    return (
        1 < len(items) <= 256
        and type(items[0]) is str
        and _COMMAND.fullmatch(items[0]) is not None
        and all(type(item) is str and "\n" not in item for item in items)
        and any(_FLAG.match(item) for item in items)
    )


_COMMAND = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./-]{0,63}")
_FLAG = re.compile(r"--?[A-Za-z]")


def _argv_items(items: list[str], redacted: dict[str, str]) -> list[str] | None:
    """The items of an argument list whose command line held a secret, each with the part of
    it that the command line's matches cover replaced; None when it held none."""
    text = " ".join(items)
    if text not in redacted:
        return None
    found = _engine().spans(text)
    if _may_be_encoded(text):
        found += _decoded_spans(text)
    spans = _merge(found)
    result = []
    start = 0
    for item in items:
        end = start + len(item)
        inside = [
            (max(first, start) - start, min(last, end) - start, kind)
            for first, last, kind in spans
            if first < end and last > start
        ]
        result.append(_apply(item, inside) if inside else redacted.get(item, item))
        start = end + 1
    return result


def _secret_marker(value: Any, kind: str, redacted: dict[str, str]) -> str:
    """The marker for a value known to be secret: its detected kind if it is one secret (or
    already a marker, so that redacting twice changes nothing)."""
    if isinstance(value, str):
        if _MARKER.fullmatch(value):
            return value
        if _MARKER.fullmatch(redacted.get(value, "")):
            return redacted[value]
    return _marker(kind)


def _hides_secret(value: Any) -> bool:
    """False for values with nothing to hide: None, booleans, empties, placeholders."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, str):
        return bool(value) and not _placeholder(value)
    return not isinstance(value, list | dict) or bool(value)


def _copy_list(items: list[Any], redacted: dict[str, str]) -> list[Any]:
    if len(items) > 1 and _argv(items) and (arguments := _argv_items(items, redacted)) is not None:
        return list(arguments)
    result: list[Any] = []
    in_block = False
    for item in items:
        if type(item) is _Kept:
            # A clean run opens no block; only one open before it can go on into it.
            kept = item.items
            done = 0
            while in_block and done < len(kept):
                line = kept[done]
                if isinstance(line, str) and (_PEM_CLOSE.search(line) or _PEM_LINE.fullmatch(line)):
                    in_block = _PEM_CLOSE.search(line) is None
                    line = _marker("private_key")
                else:
                    in_block = False
                result.append(line)
                done += 1
            result += kept[done:]
            continue
        if isinstance(item, str):
            if in_block:
                if _PEM_CLOSE.search(item) or _PEM_LINE.fullmatch(item):
                    in_block = _PEM_CLOSE.search(item) is None
                    result.append(_marker("private_key"))
                    continue
                in_block = False
            if "-----BEGIN" in item and _PEM_OPEN.search(item) and not _PEM_CLOSE.search(item):
                in_block = True
            result.append(redacted.get(item, item))
            continue
        in_block = False
        result.append(_copy(item, redacted))
    return result


def _copy(value: Any, redacted: dict[str, str]) -> Any:
    if isinstance(value, str):
        return redacted.get(value, value)
    if isinstance(value, dict):
        pair_key = _pair_value_key(value)
        result: dict[Any, Any] = {}
        for key, item in value.items():
            kind = None
            if isinstance(key, str):
                key = redacted.get(key, key)
                kind = _name_kind(key)
            if key == pair_key and _hides_secret(item) and not isinstance(item, dict):
                kind = kind or "secret"
                name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), "")
                kind = _name_kind(name) or (
                    "aws_secret_access_key" if _aws_pair(name, item) else kind
                )
            if kind and isinstance(item, str) and isinstance(key, str) and _auth_method(key, item):
                kind = None
            if kind and _hides_secret(item) and not isinstance(item, dict):
                item = _secret_marker(item, kind, redacted)
            else:
                item = _copy(item, redacted)
            if key in result:
                # Two keys redacted to the same text: keep both, numbered in input order.
                number = 2
                while f"{key}#{number}" in result:
                    number += 1
                key = f"{key}#{number}"
            result[key] = item
        return result
    if isinstance(value, list):
        return _copy_list(value, redacted)
    return value


def redact(value: Any) -> Any:
    """Return a redacted deep copy of a JSON-like value; the input is never mutated.

    Detected secrets in strings, dict keys included, become ``[REDACTED:<kind>]`` markers. A
    secret-named key (``_SECRET_NAMES``) has its whole value replaced unless that value is None,
    a boolean, empty, a placeholder (``${DB_PASSWORD}``, ``********``) or an object (an object
    is searched like any other: a JSON Schema ``"password": {"type": "string"}`` stays).
    Deterministic and idempotent; tuples and other non-JSON types are returned as they are.
    """
    return _copy(value, _redact_value(value)[0])


def redact_if_needed(value: Any, flagged: bytes | None = None) -> Any | None:
    """``redact(value)``, or None when that is sure to be an equal copy (no string holds a
    secret, no key names one, no name/value pair holds one): the common, clean payload is not
    copied at all.

    Serialising is C-speed and a walk over many small objects is not, so a value whose compact
    JSON one scan finds clean (``payload_json_clean``) is not walked, and in a large value the
    runs of list items that scan clean are not walked either: the copy shares them with
    ``value`` (neither is ever mutated). ``flagged`` is ``value``'s compact JSON when the caller
    already scanned it and found it not clean: it is neither serialised nor scanned again.
    """
    data = _json(value) if flagged is None else flagged
    if data is not None:
        if flagged is None and (_ENGINE or _engine()).raw_json_clean(data):
            return None
        if len(data) >= _LARGE_JSON:
            value = _without_clean_runs(value)
    redacted, names = _redact_value(value)
    if not redacted and not (names and _names_a_secret(value)):
        return None
    return _copy(value, redacted)


class _Kept:
    """A run of list items whose JSON scans clean: in a copy, they stay as they are."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


# A value whose JSON is this large is searched for clean runs of list items: runs of at least
# _RUN items, and no more than about _RUNS runs per list (each serialisation has a fixed cost,
# measured 4.2 ms for 10,000 small objects in runs of 32, 2.6 ms in runs of 128 or more).
# Lists shorter than two runs are walked as they are.
_LARGE_JSON = 32 * 1024
_RUN = 32
_RUNS = 64


def _without_clean_runs(value: Any) -> Any:
    """``value`` with each clean run of a long list's items (checked by one scan of their
    JSON) replaced by one ``_Kept``: the walks skip it, ``_copy_list`` puts it back.
    Containers that hold such a run are new; everything else is ``value``'s own."""
    if isinstance(value, dict):
        view: dict[Any, Any] | None = None
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                inner = _without_clean_runs(item)
                if inner is not item:
                    view = dict(value) if view is None else view
                    view[key] = inner
        return value if view is None else view
    if isinstance(value, list):
        if len(value) < 2 * _RUN:
            items = [_without_clean_runs(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        result: list[Any] = []
        clean = dirty = 0
        size = max(_RUN, len(value) // _RUNS)
        for start in range(0, len(value), size):
            run = value[start : start + size]
            # Where most runs hold work, scanning them is waste: the rest is walked.
            if dirty <= clean + 4 and _json_clean(run):
                clean += 1
                result.append(_Kept(run))
            else:
                dirty += 1
                result += (_without_clean_runs(item) for item in run)
        return result
    return value


def _names_a_secret(value: Any) -> bool:
    """True when a dict key anywhere in ``value`` names a secret, or a name/value pair does."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if any(isinstance(key, str) and _name_kind(key) for key in node):
                return True
            if _pair_value_key(node) is not None:
                return True
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        for item in children:
            kind = type(item)
            if kind is dict or kind is list or (kind is not str and isinstance(item, dict | list)):
                stack.append(item)
    return False


def _json(value: Any) -> bytes | None:
    """``value`` as compact JSON, or None for what JSON cannot hold (lone surrogates, cycles,
    other types): for those the full path decides."""
    try:
        return to_json(value)
    except ValueError:  # PydanticSerializationError
        return None


def _json_clean(value: Any) -> bool:
    """True when ``value``'s JSON is clean by ``payload_json_clean``."""
    data = _json(value)
    return data is not None and _engine().raw_json_clean(data)


def payload_json_clean(data: bytes) -> bool:
    """True when the JSON text ``data`` (a payload, or an envelope as received) surely holds
    nothing to redact: then ``redact_if_needed`` of that payload is None, without walking it.
    False means "look": the full path decides."""
    return _engine().raw_json_clean(data)


def redact_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a redacted deep copy of an event payload (see ``redact``)."""
    result: dict[str, Any] = redact(payload)
    return result


def redact_bytes(data: bytes | None) -> bytes | None:
    """UTF-8 ``data`` (a raw Kafka value or key) with its secrets replaced; bytes that are not
    UTF-8 are returned as they are."""
    if not data:
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    redacted = redact_text(text)
    return data if redacted == text else redacted.encode("utf-8")


@lru_cache(maxsize=4096)
def credential_family(text: str) -> str | None:
    """The family of the first credential rule matching ``text`` (an identifier), or None."""
    spans = _engine().spans(text)
    if _may_be_encoded(text):
        spans += _decoded_spans(text)
    if not spans:
        return None
    return _engine().rules[min(spans, key=lambda span: span[3])[3]].family
