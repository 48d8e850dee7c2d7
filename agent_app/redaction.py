"""Removes credentials from text: from a task before it is stored, from what the model and
the tools produce, and from answers, records and logs on the way out.

Only the credential is replaced (`password=[REDACTED:password]`, `postgres://[REDACTED:
url_credentials]@db/x`), so the text still reads; replacing is idempotent (a redacted text
has nothing left to redact). JSON (a tool call's arguments) is redacted value by value, so
it stays JSON."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARK = "[REDACTED:"
_NOT_DONE = r"(?!\[REDACTED:)"
# A credential's value: quoted, or up to whitespace. `&`, `;`, `,` and quotes belong to it
# (`Tr0ub4dor&3zz`, `ab"c`), except a quote or backslash that ends a string around it
# (`{"note": "password=x"}`, `\"password=x\"`), which stays, so the text keeps its shape.
_VALUE = (
    rf"{_NOT_DONE}(?:\"[^\"\n]*\"|'[^'\n]*'|"
    r"(?:[^\s\"'\\]|[\"'](?![\s,;:}\])]|$)|\\(?![\"']))+)"
)


@dataclass(frozen=True)
class _Pattern:
    kind: str
    # The named group `secret` is what is replaced; the rest of the match stays.
    regex: re.Pattern[str]
    # For phrasings that are as often ordinary prose ("the password is required"): the
    # value must look like a secret.
    plausible: Callable[[str], bool] | None = None


def _looks_secret(value: str) -> bool:
    value = value.rstrip(".,;:!?)")
    return len(value) >= 4 and any(not c.isalpha() for c in value)


# Order matters: a private key block may contain text the later patterns would split.
PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "private_key",
        re.compile(
            r"(?P<secret>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z))",
            re.DOTALL,
        ),
    ),
    _Pattern(
        "aws_access_key_id", re.compile(r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b")
    ),
    _Pattern(
        "aws_secret_access_key",
        re.compile(
            rf"(?i)\baws_?secret_?access_?key\b[\"']?\s*[:=]\s*[\"']?{_NOT_DONE}"
            r"(?P<secret>[A-Za-z0-9/+=]{40})"
        ),
    ),
    _Pattern(
        "github_token",
        re.compile(r"\b(?P<secret>gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})"),
    ),
    _Pattern("api_key", re.compile(r"\b(?P<secret>sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,})")),
    # scheme://user:password@host: the user and password go, the scheme and host stay.
    _Pattern(
        "url_credentials",
        re.compile(
            rf"(?i)\b[a-z][a-z0-9+.-]{{1,20}}://{_NOT_DONE}(?P<secret>[^\s/?#@:]*:[^\s/?#@]+)@"
        ),
    ),
    _Pattern(
        "bearer_token",
        re.compile(rf"(?i)\bbearer\s+{_NOT_DONE}(?P<secret>[A-Za-z0-9\-._~+/]{{8,}}=*)"),
    ),
    _Pattern(
        "password",
        re.compile(
            rf"(?i)\b(?:password|passwd|passphrase|pwd)\b[\"']?\s*[:=]\s*(?P<secret>{_VALUE})"
        ),
    ),
    _Pattern(
        "api_key",
        re.compile(
            r"(?i)\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|"
            rf"secret[_-]?key)\b[\"']?\s*[:=]\s*(?P<secret>{_VALUE})"
        ),
    ),
    # "my password is hunter2", "the PIN is 4821": only a value with a digit or a symbol.
    _Pattern(
        "password",
        re.compile(
            rf"(?i)\b(?:password|passwd|passphrase|pin)\s+(?:is|was)\s+(?P<secret>{_NOT_DONE}\S+)"
        ),
        plausible=_looks_secret,
    ),
)

# Each pattern above needs one of these (in any case): text with none of them, which is
# nearly every log field and answer, is passed with one search instead of ten.
TRIGGERS = re.compile(
    r"(?i:private key|akia|asia|abia|acca|secret|gh[pousr]_|github_pat_|sk-|://|bearer|"
    r"passw|passphrase|pwd|api[_-]?key|access[_-]?token|auth[_-]?token|pin\s)"
)

# A JSON member, or a `{"key"|"name": ..., "value": ...}` pair, whose name says that its
# value is a credential (`{"password": "x"}`, the memory tool's `{"key": "api_token"}`,
# a Kubernetes env entry `{"name": "DB_PASSWORD", "value": "x"}`).
_SECRET_NAME = re.compile(
    r"(?i)(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|private[_-]?key|"
    r"credentials?)$|^pin$"
)

_PASSWORD_NAME = re.compile(r"(?i)passw|passphrase|pwd|^pin$")


@dataclass
class Redacted:
    text: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def redact(text: str) -> Redacted:
    if not TRIGGERS.search(text):
        return Redacted(text=text)
    counts: Counter[str] = Counter()
    for pattern in PATTERNS:
        text = pattern.regex.sub(_replacer(pattern, counts), text)
    return Redacted(text=text, counts=counts)


def _replacer(pattern: _Pattern, counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        secret = match.group("secret")
        if pattern.plausible is not None and not pattern.plausible(secret):
            return match.group(0)
        counts[pattern.kind] += 1
        start, end = match.span("secret")
        whole = match.group(0)
        offset = match.start()
        if pattern.plausible is not None:
            # Trailing punctuation ends the sentence, not the secret.
            end -= len(secret) - len(secret.rstrip(".,;:!?)"))
        return whole[: start - offset] + f"{MARK}{pattern.kind}]" + whole[end - offset :]

    return replace


def redact_named(name: str, value: str) -> Redacted:
    """A value stored under a name: all of it when the name says it is a credential."""
    if _SECRET_NAME.search(name) and value and not value.startswith(MARK):
        kind = "password" if _PASSWORD_NAME.search(name) else "secret"
        return Redacted(f"{MARK}{kind}]", Counter({kind: 1}))
    return redact(value)


def redact_json(text: str) -> Redacted:
    """JSON text redacted value by value, so that it stays JSON; other text as `redact`."""
    try:
        value = json.loads(text)
    except ValueError:
        return redact(text)
    counts: Counter[str] = Counter()
    cleaned = redact_value(value, counts)
    if not counts:
        return Redacted(text=text)
    return Redacted(json.dumps(cleaned, ensure_ascii=False), counts)


def redact_value(value: Any, counts: Counter[str]) -> Any:
    """Every string in a JSON-shaped value redacted, counting into `counts`."""
    if isinstance(value, str):
        return _count(redact(value), counts)
    if isinstance(value, list):
        return [redact_value(v, counts) for v in value]
    if not isinstance(value, dict):
        return value
    # {"key"|"name": <a credential's name>, "value": "..."}: the value is that credential.
    label = value.get("key", value.get("name"))
    out: dict[str, Any] = {}
    for name, item in value.items():
        if isinstance(item, str) and name == "value" and isinstance(label, str):
            out[name] = _count(redact_named(label, item), counts)
        elif isinstance(item, str):
            out[name] = _count(redact_named(name, item), counts)
        else:
            out[name] = redact_value(item, counts)
    return out


def _count(result: Redacted, counts: Counter[str]) -> str:
    counts.update(result.counts)
    return result.text
