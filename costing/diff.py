"""The change in a stack's monthly cost between two estimates, as a Markdown table.

Both sides are the JSON the cost command prints (`CostEstimate.as_json()`), so the base
side can come from the base branch's own checkout and program, priced by its own model
and price table. Lines are matched by the resource they are billed through, so a node
group whose instance type changes is one changed line, not a removal and an addition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The first line of the PR comment: the workflow finds its earlier comment by it and
# edits that one rather than adding another on each push.
COMMENT_MARKER = "<!-- agent-platform:cost-diff -->"


@dataclass(frozen=True)
class Cost:
    expected: float
    worst: float


@dataclass(frozen=True)
class DiffLine:
    item: str
    before: Cost | None
    after: Cost | None
    # Previous wording of the item when it changed (e.g. another instance type).
    was: str = ""

    @property
    def expected_change(self) -> float:
        return round(_expected(self.after) - _expected(self.before), 2)

    @property
    def worst_change(self) -> float:
        return round(_worst(self.after) - _worst(self.before), 2)

    def over(self, max_increase_pct: float | None) -> bool:
        """Whether the line grew by more than the budget's max_increase_pct, expected or
        worst case; a new line grows from $0, so any cost it adds is over."""
        if max_increase_pct is None:
            return False
        return _grew_over(_expected(self.before), _expected(self.after), max_increase_pct) or (
            _grew_over(_worst(self.before), _worst(self.after), max_increase_pct)
        )


@dataclass(frozen=True)
class StackDiff:
    stack: str
    lines: list[DiffLine]
    before_total: Cost
    after_total: Cost
    unchanged: int
    max_increase_pct: float | None
    before_prices: str
    after_prices: str
    problems: list[str]

    @property
    def total(self) -> DiffLine:
        return DiffLine("Total", self.before_total, self.after_total)

    @property
    def over_budget(self) -> bool:
        return any(line.over(self.max_increase_pct) for line in [*self.lines, self.total])


def _expected(cost: Cost | None) -> float:
    return cost.expected if cost else 0.0


def _worst(cost: Cost | None) -> float:
    return cost.worst if cost else 0.0


def _grew_over(before: float, after: float, pct: float) -> bool:
    return after > round(before * (1 + pct / 100), 2)


def diff(
    stack: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    max_increase_pct: float | None,
) -> StackDiff:
    """The lines whose cost changed between two `as_json()` estimates of a stack;
    `before` None is a stack the base does not have."""
    old = _lines(before["items"] if before else [])
    new = _lines(after["items"])
    lines: list[DiffLine] = []
    unchanged = 0
    for key in sorted(old.keys() | new.keys(), key=lambda k: (new.get(k) or old[k])[0]):
        was_item, was_cost = old.get(key, ("", None))
        item, cost = new.get(key, (was_item, None))
        if cost == was_cost and item == was_item:
            unchanged += 1
            continue
        renamed = bool(was_cost and cost and was_item != item)
        lines.append(DiffLine(item, was_cost, cost, was_item if renamed else ""))
    problems = [f"after: {p['resource']}: {p['message']}" for p in after["problems"]]
    if before:
        problems = [f"before: {p['resource']}: {p['message']}" for p in before["problems"]] + (
            problems
        )
    return StackDiff(
        stack=stack,
        lines=lines,
        before_total=_total(before),
        after_total=_total(after),
        unchanged=unchanged,
        max_increase_pct=max_increase_pct,
        before_prices=_prices(before) if before else "",
        after_prices=_prices(after),
        problems=problems,
    )


def _total(estimate: Mapping[str, Any] | None) -> Cost:
    if estimate is None:
        return Cost(0.0, 0.0)
    return Cost(float(estimate["expected_monthly_usd"]), float(estimate["worst_case_monthly_usd"]))


def _prices(estimate: Mapping[str, Any]) -> str:
    return f"{estimate['source']}, {estimate['region']}, read on {estimate['read_on']}"


def _lines(items: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, Cost]]:
    """Items keyed by the resource they bill; a resource billed by several items (a
    StatefulSet's volume claim templates) keys each by its own wording."""
    per_resource = Counter(str(i["resource"]) for i in items)
    lines: dict[str, tuple[str, Cost]] = {}
    for i in items:
        resource, item = str(i["resource"]), str(i["item"])
        key = resource if per_resource[resource] == 1 else f"{resource}\n{item}"
        lines[key] = (item, Cost(float(i["monthly"]), float(i["worst_monthly"])))
    return lines


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _change(before: float, after: float) -> str:
    change = round(after - before, 2)
    if change == 0:
        return "$0.00"
    sign = "+" if change > 0 else "-"
    pct = f" ({change / before:+.0%})" if before else " (new)" if change > 0 else ""
    return f"{sign}${abs(change):,.2f}{pct}"


def _cell(text: str) -> str:
    # A "|" in a resource's name would end the Markdown cell.
    return text.replace("|", "\\|")


def _row(line: DiffLine, max_increase_pct: float | None, *, bold: bool = False) -> str:
    before, after = line.before, line.after
    item = _cell(line.item)
    if line.was:
        item += f" (was {_cell(line.was)})"
    elif after is None:
        item += " (removed)"
    elif before is None:
        item += " (added)"
    cells = [
        f"**{item}**" if bold else item,
        _usd(before.expected if before else None),
        _usd(after.expected if after else None),
        _change(_expected(before), _expected(after)),
        _usd(before.worst if before else None),
        _usd(after.worst if after else None),
        _change(_worst(before), _worst(after)),
        "⚠️ over" if line.over(max_increase_pct) else "",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(diffs: Sequence[StackDiff], base: str, prices_age: str = "") -> str:
    """The PR comment: one table per stack, with the lines over the budget flagged."""
    out = [COMMENT_MARKER, f"## Estimated monthly cost: this change against `{base}`", ""]
    for d in diffs:
        limit = (
            f"lines growing over `max_increase_pct` {d.max_increase_pct:g}% flagged"
            if d.max_increase_pct is not None
            else "no `max_increase_pct` in its budget, nothing flagged"
        )
        out += [f"### Stack `{d.stack}` ({limit})", ""]
        out += [
            "| Item | Before | After | Change | Worst before | Worst after | Worst change | |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        out += [_row(line, d.max_increase_pct) for line in d.lines]
        out.append(_row(d.total, d.max_increase_pct, bold=True))
        out.append("")
        if not d.lines:
            out.append("No line's cost changed.")
        if d.unchanged:
            out.append(f"{d.unchanged} unchanged line(s) not shown.")
        if d.over_budget:
            out.append(
                f"**Over budget growth:** a line or the total grows by more than "
                f"{d.max_increase_pct:g}% (`monthly-budget.max_increase_pct` in "
                f"`policies/config/{d.stack}.json`)."
            )
        if d.before_prices and d.before_prices != d.after_prices:
            out.append(f"Prices before: {d.before_prices}; after: {d.after_prices}.")
        out += [f"- NOT PRICED {p}" for p in d.problems]
        out.append("")
    out.append(f"Prices: {diffs[0].after_prices}{prices_age}." if diffs else "No stack priced.")
    return "\n".join(out).rstrip() + "\n"
