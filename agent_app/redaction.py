"""Removes credentials from text before it leaves the service (answers and logs)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# Order matters: a private key block may contain text the later patterns would split.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
    ),
    ("aws_access_key_id", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    (
        "aws_secret_access_key",
        re.compile(
            r"(?i)\baws_?secret_?access_?key\b[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}[\"']?"
        ),
    ),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*")),
    (
        "password",
        re.compile(r"(?i)\b(?:password|passwd|pwd)\b\s*[:=]\s*(?:\"[^\"]*\"|'[^']*'|[^\s,;&]+)"),
    ),
)


# Each pattern above needs one of these words (in any case): text with none of them, which
# is nearly every log field and answer, is passed with one search instead of five.
_TRIGGERS = re.compile(r"(?i:private key|akia|asia|abia|acca|secret|bearer|passw|pwd)")


@dataclass
class Redacted:
    text: str
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def redact(text: str) -> Redacted:
    if not _TRIGGERS.search(text):
        return Redacted(text=text)
    counts: Counter[str] = Counter()
    for kind, pattern in _PATTERNS:
        text, n = pattern.subn(f"[REDACTED:{kind}]", text)
        if n:
            counts[kind] += n
    return Redacted(text=text, counts=counts)
