"""Arithmetic for the model: a safe evaluator over Python's expression syntax, never `eval`.

Numbers, + - * / // % **, parentheses, a few functions (sqrt, sin, cos, tan, asin,
acos, atan, log, log10, log2, exp, abs, round, floor, ceil, min, max) and the
constants pi, e and tau. Anything else (names, attributes, calls to anything
else, strings) is refused with a message the model can read. Exponents and
factors are bounded, so no expression can run for long or build a huge number.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 10**100  # integers beyond this are refused before they grow further
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: getattr(math, name)
    for name in ("sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "log10", "log2", "exp", "floor", "ceil")
} | {"abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


class CalculatorError(ValueError):
    """The expression cannot be evaluated; the message says why, for the model."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression such as `2 * (3 + 4) ** 2 / sqrt(16)`."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculatorError("The expression is empty.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"'{expression}' is not an arithmetic expression.") from None
    try:
        value: int | float = _value(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("Division by zero.") from None
    except (OverflowError, ValueError) as exc:
        raise CalculatorError(f"The result is not a finite number ({exc}).") from None
    except TypeError:
        raise CalculatorError("A function was given the wrong number of arguments.") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"Exponents above {MAX_EXPONENT} are not computed.")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise CalculatorError("The result is not a real number.")
        if isinstance(result, int) and abs(result) > MAX_MAGNITUDE:
            raise CalculatorError("The result is too large (more than 100 digits).")
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise CalculatorError("Functions take plain arguments only.")
        return _FUNCTIONS[node.func.id](*(_value(a) for a in node.args))
    raise CalculatorError(f"'{ast.unparse(node)}' is not allowed: only numbers, + - * / // % ** and math functions.")
