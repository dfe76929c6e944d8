"""Secret redaction for event payloads: pure, deterministic and idempotent."""

from __future__ import annotations

import binascii
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any

__all__ = ["REDACTED_PREFIX", "redact", "redact_if_needed", "redact_payload"]

REDACTED_PREFIX = "[REDACTED:"
_MARKER = re.compile(r"\[REDACTED:[a-z_]+\]")
_NOT_MARKER = r"(?!\[REDACTED:)"

# Secret field names, matched against the END of a name with "-", "_", "." and spaces removed,
# case-insensitively: `db_password`, `X-Api-Key` and `clientSecret` match, `password_policy`,
# `secret_name` and `primary_key` do not. A bare "key" never matches: it must follow one of the
# qualifiers below. Every name also matches in the plural except "token", so the counters
# `max_tokens` and `input_tokens` stay. The first matching row names the marker kind.
_SECRET_NAMES: tuple[tuple[str, str], ...] = (
    ("secret access key", "aws_secret_access_key"),
    ("password", "password"),
    ("passwd", "password"),
    ("passphrase", "password"),
    ("pwd", "password"),
    ("secret", "secret"),
    ("token", "secret"),
    ("api key", "secret"),
    ("private key", "secret"),
    ("secret key", "secret"),
    ("access key", "secret"),
    ("signing key", "secret"),
    ("encryption key", "secret"),
    ("credential", "secret"),
    ("cookie", "secret"),
    ("authorization", "secret"),
)
# Too short to be a safe ending (`oauth`, `author`): only the whole name counts.
_EXACT_SECRET_NAMES = {"auth": "secret"}


def _name_endings() -> dict[str, str]:
    endings = {}
    for words, kind in _SECRET_NAMES:
        ending = words.replace(" ", "")
        endings[ending] = kind
        if ending != "token":
            endings[ending + "s"] = kind
    return endings


_NAME_ENDINGS = _name_endings()
_NAME_ENDING_TUPLE = tuple(_NAME_ENDINGS)
_NAME_SEPARATORS = str.maketrans("", "", "-_. ")


def _marker(kind: str) -> str:
    return f"{REDACTED_PREFIX}{kind}]"


@lru_cache(maxsize=2048)
def _name_kind(name: str) -> str | None:
    """Marker kind if the (already redacted) `name` names a secret field, else None."""
    # Only redacted names reach this cache, so it never holds a secret.
    normalised = _MARKER.sub("", name).lower().translate(_NAME_SEPARATORS)
    if normalised in _EXACT_SECRET_NAMES:
        return _EXACT_SECRET_NAMES[normalised]
    if normalised.endswith(_NAME_ENDING_TUPLE):
        return next(kind for end, kind in _NAME_ENDINGS.items() if normalised.endswith(end))
    return None


def _label_names() -> str:
    """The secret names as written in text: `api_key`, `API-KEY`, `apiKey`, `api key`."""
    # Grouped by first letter, so most positions are rejected by one character-class test.
    groups: dict[str, list[str]] = {}
    for words, _ in _SECRET_NAMES:
        name = "[-_. ]?".join(words.split()) + ("" if words == "token" else "s?")
        groups.setdefault(name[0], []).append(name[1:])
    for name in _EXACT_SECRET_NAMES:
        groups.setdefault(name[0], []).append(f"(?<![A-Za-z0-9_.\\]-].){name[1:]}")
    return "|".join(f"[{c}{c.upper()}](?i:{'|'.join(rest)})" for c, rest in groups.items())


def _reversed_label_names() -> str:
    """The secret names spelt backwards; looser than `_label_names` (plurals, boundaries)."""
    names = [
        "[-_. ]?".join(word[::-1] for word in reversed(words.split())) for words, _ in _SECRET_NAMES
    ]
    names += [name[::-1] for name in _EXACT_SECRET_NAMES]
    return f"(?i:s?(?:{'|'.join(names)}))"


@dataclass(frozen=True)
class _Detector:
    """One kind of secret: what to find, what replaces a match, and where to look first.

    `replace` returns None for a match that turns out not to be a secret. `gate` finds at least
    every place `pattern` matches, scanning faster; with `backwards` it runs over the reversed
    text. Every gate match contains one of `needles`, or in ASCII text one of `folded_needles`
    once lower-cased: where a common first letter slows the regex down, a substring test
    (``in``) rules most texts out several times faster.
    """

    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str | None]
    gate: re.Pattern[str]
    backwards: bool
    needles: tuple[str, ...] = ()
    folded_needles: tuple[str, ...] = ()


def _whole(kind: str) -> Callable[[re.Match[str]], str]:
    marker = _marker(kind)
    return lambda match: marker


def _mask(match: re.Match[str], group: str, marker: str) -> str:
    """The whole match with only `group`'s span replaced by `marker`."""
    start, end = match.span(group)
    return f"{match.string[match.start() : start]}{marker}{match.string[end : match.end()]}"


def _aws(match: re.Match[str]) -> str:
    if match.group("secret") is None:
        return _marker("aws_access_key_id")
    separator = match.string[match.start() + 20 : match.start("secret")]
    return f"{_marker('aws_access_key_id')}{separator}{_marker('aws_secret_access_key')}"


def _sk_key(match: re.Match[str]) -> str | None:
    key = match.group()
    # Real keys are random; a kebab-case word chain such as "sk-learn-..." has no digit.
    if not any(char.isdigit() for char in key):
        return None
    return _marker("anthropic_api_key" if key.startswith("sk-ant-") else "openai_api_key")


def _scheme(match: re.Match[str]) -> str | None:
    if match.group("bearer") is not None:
        token = match.group("bearer")
        # "Bearer authentication" is prose: a short all-letter word is not a credential.
        if token.isalpha() and len(token) < 20:
            return None
        return _mask(match, "bearer", _marker("bearer_token"))
    credential = match.group("basic")
    # A Basic credential is base64 of "user:password"; anything else is a word in prose.
    try:
        padded = credential + "=" * (-len(credential) % 4)
        plain = binascii.a2b_base64(padded, strict_mode=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in plain or not plain.isprintable():
        return None
    return _mask(match, "basic", _marker("basic_auth"))


_SCHEME_KINDS = {"bearer": "bearer_token", "basic": "basic_auth"}


def _label(match: re.Match[str]) -> str:
    groups = ("quoted", "credential", "field", "bare")
    group = next(name for name in groups if match.group(name) is not None)
    scheme = (match.group("scheme") or "").strip().lower()
    kind = _SCHEME_KINDS.get(scheme) or _name_kind(match.group("name")) or "secret"
    return _mask(match, group, _marker(kind))


def _detector(
    pattern: str,
    replace: Callable[[re.Match[str]], str | None],
    gate: str | None = None,
    *,
    backwards: bool = False,
    needles: tuple[str, ...] = (),
    folded_needles: tuple[str, ...] = (),
) -> _Detector:
    gate_pattern = re.compile(gate or pattern)
    return _Detector(re.compile(pattern), replace, gate_pattern, backwards, needles, folded_needles)


# Applied in this order, each to what the previous ones left. Patterns start with a literal or
# a small character class and check the word boundary after it, so that the regex engine skips
# ahead fast. For those boundaries a marker counts as part of a word ("]" before a token, "["
# after it), so a marker never exposes a neighbour that the replaced text shielded and a second
# pass finds nothing. Tokens come first, so that a private key's marker never sits where its
# "-----" (no boundary for a token) was; the private key precedes the URL and name rules, which
# would take its first line for a value; the name rule comes last, so that `GITHUB_TOKEN=ghp_...`
# says github_token. Only the private key matches across a line break (see `_redact_strings`).
_DETECTORS: tuple[_Detector, ...] = (
    _detector(
        r"eyJ(?<![A-Za-z0-9_\]-]eyJ)[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
        r"(?:\.[A-Za-z0-9_-]+){0,2}",
        _whole("jwt"),
        needles=("eyJ",),
    ),
    _detector(
        r"A(?<![A-Za-z0-9\]]A)[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9\[])"
        # A 40-character secret key right next to its key id (CSV exports, env listings).
        r"(?:[^A-Za-z0-9/+\n]{1,8}(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=\[]))?",
        _aws,
    ),
    _detector(
        r"AIza(?<![A-Za-z0-9_\]-]AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_\[-])",
        _whole("google_api_key"),
    ),
    _detector(
        r"g(?<![A-Za-z0-9\]]g)(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})",
        _whole("github_token"),
    ),
    _detector(r"glpat-(?<![A-Za-z0-9\]]glpat-)[A-Za-z0-9_-]{20,}", _whole("gitlab_token")),
    _detector(r"xox(?<![A-Za-z0-9\]]xox)[abeprs]-[A-Za-z0-9-]{10,}", _whole("slack_token")),
    _detector(
        r"[rs]k_(?<![A-Za-z0-9\]][rs]k_)(?:live|test)_[A-Za-z0-9]{10,}",
        _whole("stripe_key"),
        gate=r"k_(?:live|test)_",
    ),
    _detector(
        r"whsec_(?<![A-Za-z0-9\]]whsec_)[A-Za-z0-9+/=]{20,}", _whole("stripe_webhook_secret")
    ),
    _detector(r"sk-(?<![A-Za-z0-9_\]-]sk-)[A-Za-z0-9_-]{20,}", _sk_key),
    _detector(
        r"[Bb](?<![A-Za-z0-9\]].)(?i:earer[ \t]+"
        r"(?P<bearer>[A-Za-z0-9_~+/-](?:[A-Za-z0-9._~+/-]*[A-Za-z0-9_~+/=-])?)"
        r"|asic[ \t]+(?P<basic>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=\[]))",
        _scheme,
        folded_needles=("bearer", "basic"),
    ),
    _detector(
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        # A block cut short (truncated log line) is redacted to the end of the string.
        r"(?s:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)",
        _whole("private_key"),
    ),
    _detector(
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<path>[A-Za-z0-9/_-]+)",
        lambda match: _mask(match, "path", _marker("slack_webhook")),
    ),
    _detector(
        # The user part is kept; it may already hold a marker (https://<token>:x@host).
        rf"://(?P<user>(?:\[REDACTED:[a-z_]+\]|[^\s:/?#\[\]])*):{_NOT_MARKER}"
        r"[^\s/?#\"'<>\[\]]+@",
        lambda match: f"://{match.group('user')}:{_marker('password')}@",
    ),
    _detector(
        rf"(?P<name>{_label_names()})(?:\\?[\"'])?[ \t]*(?>=>|:=|=|(?P<colon>:))(?![=:])[ \t]*"
        # A scheme word stays (possessive: "Bearer [REDACTED:jwt]" is done, not a new value).
        r"(?P<quote>\\?[\"'])?(?P<scheme>(?i:bearer|basic|token)[ \t]+)?+"
        rf"{_NOT_MARKER}(?(quote)(?P<quoted>[^\"'\\\r\n]+)"
        r"|(?!(?i:null|none|true|false)(?![^\s\"'\\,;&]))"
        # After "name:" without a scheme only a whole field counts, so that "Forgot password:
        # click here" keeps its words while "password: hunter2" does not. The field is bounded
        # and possessive so that a hostile "password:password:..." costs linear, not quadratic.
        r"(?(colon)(?(scheme)(?P<credential>[^\s\"'\\,;&]++)"
        r"|(?P<field>[^\s\"'\\,;&]{1,256}+)(?= *(?:[\t\r\n\"',;|)}\]\\]|$)))"
        r"|(?P<bare>[^\s\"'\\,;&]++)))",
        _label,
        # Forward, every position tries every name; backwards, the rare "=" or ":" comes first.
        gate=rf"[=:][ \t]*(?:[\"']\\?)?{_reversed_label_names()}",
        backwards=True,
    ),
)


def _collect(value: Any, strings: list[str], keys: list[str]) -> None:
    """Every string in `value` into `strings`; dict keys also into `keys`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                strings.append(key)
                keys.append(key)
            # Strings inline: one call per container rather than one per value.
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, (dict, list)):
                _collect(item, strings, keys)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                strings.append(item)
            elif isinstance(item, (dict, list)):
                _collect(item, strings, keys)
    elif isinstance(value, str):
        strings.append(value)


def _apply(detector: _Detector, text: str) -> str:
    """`text` with every match of `detector` replaced, left to right.

    Unlike ``re.sub``, a match that turns out not to be a secret ("Basic Bearer") does not hide
    the matches that start inside it ("Bearer <token>").
    """
    parts: list[str] = []
    kept = position = 0
    while match := detector.pattern.search(text, position):
        replacement = detector.replace(match)
        if replacement is None:
            position = match.start() + 1
            continue
        parts += (text[kept : match.start()], replacement)
        kept = position = match.end()
    return "".join(parts) + text[kept:] if parts else text


def _redact_strings(strings: list[str]) -> dict[str, str]:
    """The redacted form of every string in `strings` that holds a secret.

    Each detector first searches all strings at once, joined by line breaks (a match inside one
    string shows up there too; a private key spanning lines flags every string it covers), then
    runs on the strings it flagged, as the detectors before it left them.
    """
    originals = list(dict.fromkeys(strings))
    current = originals.copy()
    changed: set[int] = set()
    joined: str | None = None
    folded: str | None = None
    starts: list[int] = []
    for detector in _DETECTORS:
        if joined is None:
            joined = "\n".join(current)
            folded = None
            starts = []
        if detector.needles and not any(needle in joined for needle in detector.needles):
            continue
        if detector.folded_needles:
            # Only ASCII lower-cases exactly as (?i:) matches: not the long s, the Kelvin sign.
            if folded is None and joined.isascii():
                folded = joined.lower()
            if folded is not None and not any(n in folded for n in detector.folded_needles):
                continue
        text = joined[::-1] if detector.backwards else joined
        first_match = detector.gate.search(text)  # usually None: the cheapest call
        if first_match is None:
            continue
        if not starts:
            starts = list(accumulate((len(string) + 1 for string in current[:-1]), initial=0))
        flagged: set[int] = set()
        for match in detector.gate.finditer(text, first_match.start()):
            start, end = match.span()
            if detector.backwards:
                start, end = len(text) - end, len(text) - start
            flagged.update(range(bisect_right(starts, start) - 1, bisect_right(starts, end - 1)))
        for index in flagged:
            result = _apply(detector, current[index])
            if result != current[index]:
                current[index] = result
                changed.add(index)
                joined = None
    return {originals[index]: current[index] for index in changed}


def _secret_marker(value: Any, kind: str, redacted: dict[str, str]) -> str:
    """The marker for a value known to be secret: its detected kind if it is one secret."""
    if isinstance(value, str) and _MARKER.fullmatch(redacted.get(value, "")):
        return redacted[value]
    return _marker(kind)


def _carries_data(value: Any) -> bool:
    """False for values with nothing to hide: None, booleans, empty strings and containers."""
    if value is None or isinstance(value, bool):
        return False
    return not isinstance(value, str | list | dict) or bool(value)


def _copy(value: Any, redacted: dict[str, str]) -> Any:
    if isinstance(value, str):
        return redacted.get(value, value)
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            kind = None
            if isinstance(key, str):
                key = redacted.get(key, key)
                kind = _name_kind(key)
            if kind and _carries_data(item):
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
        return [_copy(item, redacted) for item in value]
    return value


def redact(value: Any) -> Any:
    """Return a redacted deep copy of a JSON-like value; the input is never mutated.

    Detected secrets in strings, dict keys included, become ``[REDACTED:<kind>]`` markers. A
    secret-named key (rule above ``_SECRET_NAMES``) has its whole value replaced unless that
    value is None, a boolean or empty. Deterministic and idempotent; tuples and other non-JSON
    types are returned as they are.
    """
    strings: list[str] = []
    _collect(value, strings, [])
    return _copy(value, _redact_strings(strings) if strings else {})


def redact_if_needed(value: Any) -> Any | None:
    """``redact(value)``, or None when that is sure to be an equal copy (no string holds a
    secret and no key names one): the common, clean payload is not copied at all."""
    strings: list[str] = []
    keys: list[str] = []
    _collect(value, strings, keys)
    redacted = _redact_strings(strings) if strings else {}
    if not redacted and not any(map(_name_kind, keys)):
        return None
    return _copy(value, redacted)


def redact_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Return a redacted deep copy of an event payload (see ``redact``)."""
    result: dict[str, Any] = redact(payload)
    return result
