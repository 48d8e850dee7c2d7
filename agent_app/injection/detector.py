"""The detector a deployment screens tasks with (`AGENT_INJECTION_DETECTOR`): the built-in
rules (`rules`, the default), or the rules with LLM Guard's prompt-injection classifier
(`llm_guard`), which needs the llm-guard package and its model where the API runs. The
classifier is loaded at start-up, so a deployment that asks for it and cannot have it does
not start (an error naming the setting), rather than screen with less than it asked for."""

from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any, Protocol

from agent_app.injection.normalise import Forms
from agent_app.injection.rules import check_injection, read, reasons, verdict
from agent_app.settings import Settings, SettingsError
from agent_app.validation import InjectionVerdict

CLASSIFIER_REASON = "classifier"
# What the classifier reads at most: the task, its unobfuscated form and what its
# encodings decode to (each is a model call).
_MAX_CLASSIFIED = 4


class Detector(Protocol):
    async def screen(self, text: str) -> InjectionVerdict: ...


class Scanner(Protocol):
    """LLM Guard's input scanner interface: (sanitised prompt, valid, risk score)."""

    def scan(self, prompt: str) -> tuple[str, bool, float]: ...


class RuleDetector:
    def __init__(self, flag_score: float, reject_score: float) -> None:
        self._flag, self._reject = flag_score, reject_score

    async def screen(self, text: str) -> InjectionVerdict:
        return check_injection(text, self._flag, self._reject)


class ClassifierDetector:
    """The rules, and a classifier on the text in each of its forms: a form it calls an
    injection makes the task a rejection (reason `classifier`). The model runs in a
    thread, off the event loop, one task at a time: a Hugging Face tokenizer refuses
    concurrent calls ("Already borrowed")."""

    def __init__(self, scanner: Scanner, flag_score: float, reject_score: float) -> None:
        self._scanner = scanner
        self._one_at_a_time = threading.Lock()
        self._flag, self._reject = flag_score, reject_score

    async def screen(self, text: str) -> InjectionVerdict:
        seen = read(text)
        found = reasons(seen)
        if await asyncio.to_thread(self._injection, text, seen):
            return verdict([*found, CLASSIFIER_REASON], self._reject, self._flag, self._reject)
        return verdict(found, 0.0, self._flag, self._reject)

    def _injection(self, text: str, seen: Forms) -> bool:
        texts = [text, *([seen.folded] if seen.folded else []), *seen.decoded]
        with self._one_at_a_time:
            return any(not self._scanner.scan(t)[1] for t in texts[:_MAX_CLASSIFIED])


def build_detector(settings: Settings) -> Detector:
    flag, reject = settings.injection_flag_score, settings.injection_reject_score
    if settings.injection_detector == "rules":
        return RuleDetector(flag, reject)
    return ClassifierDetector(_llm_guard_scanner(settings.injection_model), flag, reject)


def _llm_guard_scanner(model_path: str | None) -> Scanner:
    setting = "AGENT_INJECTION_DETECTOR=llm_guard"
    try:
        scanners: Any = importlib.import_module("llm_guard.input_scanners")
        models: Any = importlib.import_module("llm_guard.model")
    except ImportError as exc:
        raise SettingsError(
            f"{setting}: the llm-guard package is not installed ({exc}); install it in the "
            "image, or set AGENT_INJECTION_DETECTOR=rules"
        ) from None
    model = None
    if model_path is not None:
        model = models.Model(
            path=model_path,
            pipeline_kwargs={"return_token_type_ids": False, "max_length": 512, "truncation": True},
        )
    try:
        scanner: Scanner = scanners.PromptInjection(model=model)
    except Exception as exc:  # whatever loading a model raises: missing files, no network
        where = f"AGENT_INJECTION_MODEL={model_path}" if model_path else "its default model"
        raise SettingsError(
            f"{setting}: the prompt-injection classifier ({where}) could not be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return scanner
