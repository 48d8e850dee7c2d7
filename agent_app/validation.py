"""Input validation: the task request schema and prompt-injection heuristics."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    task: str = Field(min_length=1, description="What the agent should do.")
    session_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Groups tasks that share memory; tasks without one get their own.",
    )
    # Strict: JSON `true` is not a quality of 1.0, nor "0.9" one of 0.9; NaN is refused as
    # not a number rather than as out of range.
    quality: float | None = Field(
        default=None,
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="Minimum expected model quality, a number from 0 to 1.",
    )


@dataclass(frozen=True)
class _Rule:
    reason: str
    weight: float
    pattern: re.Pattern[str]


# Each rule looks for an instruction-shaped phrase (verb + target + object), not a word:
# "attack", "ignore" or "system" alone in a benign task never match.
_RULES = (
    _Rule(
        "override_instructions",
        0.6,
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?"
            r"\b(?:previous|prior|above|earlier|preceding|all|any|your|system|original)\b"
            r"[^.\n]{0,30}?\b(?:instructions?|prompts?|rules|directives|guidelines|guardrails)\b",
            re.I,
        ),
    ),
    _Rule(
        "reveal_system_prompt",
        0.6,
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|leak|dump|display|tell me)\b[^.\n]{0,30}?"
            r"\b(?:system|hidden|initial|original|developer|secret)\s+"
            r"(?:prompt|instructions?|message)s?\b",
            re.I,
        ),
    ),
    _Rule(
        "role_reassignment",
        0.4,
        re.compile(
            r"\byou are (?:now|no longer)\b|\bfrom now on,? you\b|"
            r"\bact as (?:an? )?(?:unrestricted|unfiltered|jailbroken|evil)\b|"
            r"\bpretend (?:that )?you (?:have no|are not bound|don'?t have)\b",
            re.I,
        ),
    ),
    _Rule(
        "jailbreak_persona",
        0.4,
        re.compile(r"\bDAN\b|\bdo anything now\b|\bdeveloper mode\b|\bjailbr(?:eak|oken)", re.I),
    ),
    _Rule(
        "restriction_removal",
        0.3,
        re.compile(
            r"\b(?:without|with no|remove|disable|turn off)\s+(?:any\s+|all\s+|your\s+)?"
            r"(?:restrictions|filters|safety|guardrails|limitations|censorship)\b",
            re.I,
        ),
    ),
    _Rule(
        "chat_template_tokens",
        0.5,
        re.compile(
            r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|"
            r"^\s*(?:###\s*)?(?:system|assistant)\s*:",
            re.I | re.M,
        ),
    ),
    _Rule(
        "credential_exfiltration",
        0.4,
        re.compile(
            r"\b(?:send|post|upload|exfiltrate|forward|email)\b[^.\n]{0,40}?"
            r"\b(?:api[_ ]?keys?|credentials|secrets?|passwords?|tokens?)\b[^.\n]{0,40}?\bto\b",
            re.I,
        ),
    ),
    _Rule("encoded_payload", 0.2, re.compile(r"[A-Za-z0-9+/]{160,}={0,2}")),
)

# Zero-width and Unicode tag characters hide instructions from a human reviewer.
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\U000e0000-\U000e007f]")


class InjectionVerdict(BaseModel):
    action: Literal["allow", "flag", "reject"]
    score: float
    reasons: list[str] = []


def check_injection(text: str, flag_score: float, reject_score: float) -> InjectionVerdict:
    reasons: list[str] = []
    score = 0.0
    if _INVISIBLE.search(text):
        reasons.append("invisible_characters")
        score += 0.3
    # Normalise so look-alike letters and hidden characters cannot split a phrase.
    normalised = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    for rule in _RULES:
        if rule.pattern.search(normalised):
            reasons.append(rule.reason)
            score += rule.weight
    score = round(score, 3)
    if score >= reject_score:
        return InjectionVerdict(action="reject", score=score, reasons=reasons)
    if score >= flag_score:
        return InjectionVerdict(action="flag", score=score, reasons=reasons)
    return InjectionVerdict(action="allow", score=score, reasons=reasons)
