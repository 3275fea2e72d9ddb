"""The agent's calculator: arithmetic works, everything else is refused without eval."""

from __future__ import annotations

import pytest

from app.engine.calculator import CalculatorError, calculate


@pytest.mark.parametrize(
    "expression, value",
    [("2 + 3 * 4", 14), ("(1200 - 350) * 0.2", 170.0), ("2 ** 10", 1024), ("sqrt(16) + abs(-2)", 6.0), ("7 // 2", 3)],
)
def test_arithmetic(expression, value):
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("__import__('os').system('echo PWNED')", "not allowed"),
        ("open('/etc/passwd').read()", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("[x for x in range(10**9)]", "not allowed"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 999", "digits"),
        ("(2 ** 100) ** 100", "digits"),
        ("1 / 0", "ZeroDivisionError"),
        ("2 +", "not an arithmetic expression"),
        ("1" * 400, "longer than"),
    ],
)
def test_refused(expression, reason):
    with pytest.raises(CalculatorError, match=reason):
        calculate(expression)
