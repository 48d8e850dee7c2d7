"""The stack's estimated monthly cost stays within its budget and its growth limit."""

from __future__ import annotations

from collections.abc import Sequence

from costing.model import estimate
from costing.view import ResourceView
from policies.rule import Percent, Rule, RuleConfig, StackRule, Usd
from policies.violation import Violation

BUDGET = "monthly-budget"


class BudgetConfig(RuleConfig):
    monthly_budget_usd: Usd = 1000.0
    max_increase_pct: Percent | None = None
    baseline_usd: Usd | None = None


def check_budget(resources: Sequence[ResourceView], cfg: BudgetConfig) -> list[Violation]:
    cost = estimate(resources)
    found = [
        Violation(BUDGET, p.resource, p.urn, f"{p.resource}: cannot be priced: {p.message}")
        for p in cost.problems
    ]
    expected, worst = cost.expected_total, cost.worst_total
    summary = f"expected ${expected:,.2f}/month, worst case ${worst:,.2f}/month"
    breakdown = f"\nCost breakdown (prices read on {cost.read_on}):\n{cost.breakdown()}"
    if expected > cfg.monthly_budget_usd or worst > cfg.monthly_budget_usd:
        found.append(
            Violation(
                BUDGET,
                "stack",
                "",
                f"stack: estimated cost ({summary}) exceeds monthly_budget_usd "
                f"${cfg.monthly_budget_usd:,.2f}; shrink node pools (desiredSize/maxSize) or "
                f"instance types, or raise monthly_budget_usd in the stack's policy config."
                f"{breakdown}",
            )
        )
    if cfg.baseline_usd is not None and cfg.max_increase_pct is not None:
        ceiling = cfg.baseline_usd * (1 + cfg.max_increase_pct / 100)
        if expected > ceiling:
            growth = (expected / cfg.baseline_usd - 1) * 100 if cfg.baseline_usd else float("inf")
            found.append(
                Violation(
                    BUDGET,
                    "stack",
                    "",
                    f"stack: estimated cost ({summary}) is {growth:.0f}% over baseline_usd "
                    f"${cfg.baseline_usd:,.2f}, above max_increase_pct {cfg.max_increase_pct:g}%;"
                    " review the growth, then update baseline_usd in the stack's policy config."
                    f"{breakdown}",
                )
            )
    return found


RULES: list[Rule] = [
    StackRule(
        BUDGET,
        "The stack's estimated monthly cost (expected and worst case) is within budget and "
        "its growth over the baseline is bounded.",
        "mandatory",
        BudgetConfig,
        check_budget,
        "Fails: a resource whose price inputs (instance type, sizes) are unknown cannot be "
        "priced and is a violation, never $0.",
    ),
]
