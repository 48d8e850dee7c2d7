"""The metric names a PromQL expression reads.

A tokenizer, not a full parser: it drops what cannot be a metric name (strings, label
matchers, range and subquery brackets, numbers and durations, Grafana's `$variables`,
grouping lists after by/without/on/ignoring/group_left/group_right), then keeps the
identifiers that are neither keywords nor called as functions or aggregations.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?
      |0[xX][0-9a-fA-F]+)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<space>\s+)
  | (?P<other>==|!=|>=|<=|=~|!~|[-+*/%^=<>,@])
    """,
    re.VERBOSE,
)

_KEYWORDS = frozenset(
    {
        *("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"),
        *("and", "or", "unless", "atan2", "inf", "nan", "start", "end"),
        # Aggregation operators: `sum by (x) (...)` puts the grouping before the bracket.
        *("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk"),
        *("quantile", "count_values", "limitk", "limit_ratio"),
    }
)
# After these, a bracketed list is label names, not an expression.
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


class PromQLSyntaxError(ValueError):
    pass


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLSyntaxError(f"unexpected {expr[position]!r} at {position} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def metric_names(expr: str) -> set[str]:
    tokens = _tokens(expr)
    names: set[str] = set()
    # What each open bracket holds: an expression, or labels (matchers, grouping lists)
    # and ranges, where no metric name can be.
    stack: list[bool] = []
    for index, (kind, text) in enumerate(tokens):
        if kind == "open":
            previous = tokens[index - 1][1] if index else ""
            stack.append(text in "{[" or (text == "(" and previous in _GROUPING))
            continue
        if kind == "close":
            if not stack:
                raise PromQLSyntaxError(f"unbalanced {text!r} in {expr!r}")
            stack.pop()
            continue
        if kind != "name" or any(stack) or text in _KEYWORDS:
            continue
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if following == "(":
            continue
        names.add(text)
    if stack:
        raise PromQLSyntaxError(f"unclosed bracket in {expr!r}")
    return names
