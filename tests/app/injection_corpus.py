"""The prompt-injection corpus (`data/injection_corpus.json`): attacks by kind, and benign
tasks full of the words attacks use. Two sets: the one the rules were written against
("attacks", "benign") and a held-out one written after them and not tuned on
("holdout_attacks", "holdout_benign"). `measure` scores a detector on a set; run this
file to print the tables the app's README quotes:

    .venv/bin/python tests/app/injection_corpus.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).with_name("data") / "injection_corpus.json"

# A verdict's action for a text: "allow", "flag" or "reject".
Screen = Callable[[str], str]


@dataclass
class Report:
    # kind -> (caught, total); an attack is caught when flagged or rejected.
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)
    rejected_attacks: int = 0
    attacks: int = 0
    benign: int = 0
    benign_flagged: list[str] = field(default_factory=list)
    benign_rejected: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def caught(self) -> int:
        return sum(c for c, _ in self.kinds.values())

    @property
    def kinds_caught(self) -> int:
        """Kinds of which every example is caught."""
        return sum(c == t for c, t in self.kinds.values())

    @property
    def precision(self) -> float:
        positives = self.caught + len(self.benign_flagged) + len(self.benign_rejected)
        return self.caught / positives if positives else 1.0

    @property
    def recall(self) -> float:
        return self.caught / self.attacks


SETS = {"tuning": "", "holdout": "holdout_"}


def load(name: str) -> tuple[dict[str, list[str]], list[str]]:
    data = json.loads(CORPUS.read_text(encoding="utf-8"))
    prefix = SETS[name]
    return data[f"{prefix}attacks"], data[f"{prefix}benign"]


def measure(screen: Screen, name: str) -> Report:
    attacks, benign = load(name)
    report = Report(attacks=sum(len(v) for v in attacks.values()), benign=len(benign))
    for kind, texts in attacks.items():
        actions = [screen(t) for t in texts]
        report.kinds[kind] = (sum(a != "allow" for a in actions), len(texts))
        report.rejected_attacks += actions.count("reject")
        report.missed += [t for t, a in zip(texts, actions, strict=True) if a == "allow"]
    for text in benign:
        action = screen(text)
        if action == "flag":
            report.benign_flagged.append(text)
        elif action == "reject":
            report.benign_rejected.append(text)
    return report


def table(report: Report) -> str:
    lines = ["| attack kind | caught |", "| --- | --- |"]
    lines += [f"| {kind} | {c}/{t} |" for kind, (c, t) in report.kinds.items()]
    lines += [
        "",
        f"Attacks caught (flagged or rejected): {report.caught}/{report.attacks} "
        f"(recall {report.recall:.3f}); rejected: {report.rejected_attacks}/{report.attacks}.",
        f"Kinds with every example caught: {report.kinds_caught}/{len(report.kinds)}.",
        f"Benign tasks: {report.benign}; flagged {len(report.benign_flagged)}, rejected "
        f"{len(report.benign_rejected)} (precision {report.precision:.3f}).",
    ]
    lines += [f"  flagged benign: {t!r}" for t in report.benign_flagged]
    lines += [f"  missed attack: {t!r}" for t in report.missed]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[2]))
    from agent_app.injection.rules import check_injection

    for name in SETS:
        print(f"## {name}\n")
        print(table(measure(lambda text: check_injection(text, 0.4, 0.8).action, name)), "\n")
