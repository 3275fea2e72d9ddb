"""Safe arithmetic for the agent's calculator tool: parsed with ``ast``, never ``eval``.

Only numbers, + - * / // % **, parentheses and a few math functions are allowed. Sizes
are bounded so that ``9**9**9`` is refused instead of freezing the process.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_EXPRESSION_CHARS = 300
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 400  # integers beyond 10**400 are refused

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


class CalculatorError(ValueError):
    """An expression the calculator refuses, with the reason."""


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression, or ``CalculatorError`` saying why not."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression ({exc.msg})") from None
    try:
        return _checked(_evaluate(tree.body))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"{type(exc).__name__}: {exc}") from None


def _evaluate(node: ast.AST):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _checked(_FUNCTIONS[node.func.id](*[_evaluate(a) for a in node.args]))
    raise CalculatorError(f"{ast.unparse(node)!r} is not allowed: only numbers, + - * / // % ** and "
                          f"{', '.join(sorted(_FUNCTIONS))}")


def _check_power(base, exponent) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and base not in (0, 1, -1):
        digits = exponent * math.log10(abs(base))
        if digits > MAX_RESULT_DIGITS:
            raise CalculatorError(f"result would have about {digits:.0f} digits (limit {MAX_RESULT_DIGITS})")


def _checked(value):
    if isinstance(value, complex):
        raise CalculatorError("the result is a complex number")
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
        raise CalculatorError(f"result has more than {MAX_RESULT_DIGITS} digits")
    return value
