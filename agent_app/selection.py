"""Model selection: the cheapest model good enough for the task that fits the budget."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, field_serializer

from agent_app.settings import ModelSpec


class Candidate(BaseModel):
    model: str
    quality: float
    expected_cost_usd: float
    meets_quality: bool
    fits_budget: bool


class Selection(BaseModel):
    model: str
    required_quality: float
    expected_cost_usd: float
    reason: str
    candidates: list[Candidate] = []

    @field_serializer("expected_cost_usd")
    def _rounded(self, value: float) -> float:
        # A selection is stored and shown rounded; the figure itself stays exact for callers.
        return round(value, 8)


def select_model(
    models: list[ModelSpec],
    required_quality: float,
    remaining_usd: float,
    expected_usd: Mapping[str, float],
    limited: bool = False,
    quality_relief: float = 0.0,
) -> Selection:
    """`expected_usd`: the task's expected cost per model name (`usage.expected_costs`).
    When no model fits `remaining_usd`, the cheapest is returned with a reason saying so,
    and the caller decides (admission refuses the task)."""
    requirement = required_quality
    if limited:
        # Rounded so that 0.8 - 0.2 compares equal to a model rated 0.6.
        requirement = round(max(0.0, required_quality - quality_relief), 6)
    note = (
        f" (budget above limit: requirement relaxed from {required_quality:.2f} by "
        f"{quality_relief:.2f})"
        if limited and quality_relief
        else ""
    )
    costed = sorted(
        ((expected_usd[m.name], m) for m in models),
        key=lambda pair: (pair[0], -pair[1].quality),
    )
    candidates = [
        Candidate(
            model=m.name,
            quality=m.quality,
            expected_cost_usd=round(cost, 8),
            meets_quality=m.quality >= requirement,
            fits_budget=cost <= remaining_usd,
        )
        for cost, m in costed
    ]

    def chosen(cost: float, m: ModelSpec, reason: str) -> Selection:
        return Selection(
            model=m.name,
            required_quality=requirement,
            expected_cost_usd=cost,
            reason=reason + note,
            candidates=candidates,
        )

    for cost, m in costed:
        if m.quality >= requirement and cost <= remaining_usd:
            return chosen(
                cost,
                m,
                f"{m.name} is the cheapest model with quality {m.quality:.2f} >= "
                f"{requirement:.2f} whose expected cost ${cost:.6f} fits the remaining "
                f"${remaining_usd:.4f}",
            )
    fitting = [(c, m) for c, m in costed if c <= remaining_usd]
    if fitting:
        cost, m = max(fitting, key=lambda pair: (pair[1].quality, -pair[0]))
        return chosen(
            cost,
            m,
            f"no model meets quality {requirement:.2f} within the remaining "
            f"${remaining_usd:.4f}; {m.name} is the best that fits",
        )
    cost, m = costed[0]
    return chosen(
        cost, m, f"no model fits the remaining ${remaining_usd:.4f}; {m.name} is the cheapest"
    )
