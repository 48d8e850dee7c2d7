"""Tools that need no services: arithmetic and the fetch allowlist."""

from __future__ import annotations

import pytest

from agent_app.tools import ToolError, evaluate, url_allowed

ALLOW = ["http://127.0.0.1:9/pages/"]


@pytest.mark.parametrize(
    ("expression", "value"),
    [("(17 + 25) * 3", 126), ("2 ^ 10", 1024), ("7 // 2", 3), ("-4 % 3", 2), ("1 / 4", 0.25)],
)
def test_calculator_evaluates_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "unsupported element"),
        ("(1).__class__", "unsupported element"),
        ("2 ** 1000000", "exponent larger than 64"),
        ("1 / 0", "division by zero"),
        ("True + 1", "booleans"),
        ("1 +", "not an arithmetic expression"),
        ("9" * 201, "longer than 200"),
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:9/pages/fox", True),
        ("http://127.0.0.1:9/pages/fox?x=1", True),
        ("http://127.0.0.1:9/pages/../admin/stats", False),
        ("http://127.0.0.1:9/pages/%2e%2e/admin/stats", False),
        ("http://127.0.0.1:9/pages%2f..%2fadmin", False),
        ("http://127.0.0.1:9/pagesX/fox", False),
        ("http://user@127.0.0.1:9/pages/fox", False),
        ("http://127.0.0.1:9@evil.invalid/pages/fox", False),
        ("http://127.0.0.1:10/pages/fox", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
    ],
)
def test_fetch_allowlist(url: str, allowed: bool) -> None:
    assert url_allowed(url, ALLOW) is allowed
