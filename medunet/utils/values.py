"""Typed configuration values: integers where integers are meant, booleans where booleans are meant.

Configuration arrives from JSON, the command line (fire) and Python. A string such as ``"64"`` is a sequence
of characters and ``int(64.7)`` silently truncates, so both would give a different network than the one
asked for; these helpers accept exactly the integers and say what was wrong otherwise. On the command line
``--amp true`` arrives as the string ``"true"`` and ``--amp false`` as a non-empty string, which every truth
test reads as *on*: :func:`as_bool` reads the words people write for yes and no, and refuses anything else.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["BOOLEAN_WORDS", "as_bool", "positive_int", "positive_ints", "real_number"]

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
BOOLEAN_WORDS = "true/false, 1/0, yes/no (any case)"
"""The values :func:`as_bool` accepts, in words for error messages."""


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: ``True``/``False``, the integers 1/0, and the strings true/false, 1/0, yes/no in any
    case (what a command line or a YAML file gives). Anything else is a ``ValueError`` naming ``name``: a truth
    test would read any non-empty string, ``"false"`` included, as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name}={value!r} is not a boolean; valid values are {BOOLEAN_WORDS}")


def real_number(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within ``[low, high]`` (an end left out with None; ``low_open``/``high_open``
    exclude it). Integers pass; strings and booleans do not (``"1e-3"`` is text, ``True`` is not a rate)."""
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = "a number" + (f" {' and '.join(bounds)}" if bounds else "")
    if number is None or not math.isfinite(number):
        kind = "" if number is not None else f" (a {type(value).__name__})"
        raise ValueError(f"{name} must be {wanted}, got {value!r}{kind}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return number


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; integral floats (``64.0``) pass, ``True``/``"64"``/``64.5`` do not."""
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        number = int(float(value))
    if number is None or number < minimum:
        kind = "" if isinstance(value, numbers.Real) and not isinstance(value, bool) else f" (a {type(value).__name__})"
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}{kind}")
    return number


def positive_ints(value: Any, name: str, example: str = "[64, 128, 256]") -> tuple[int, ...]:
    """``value`` as a non-empty tuple of positive ints (see :func:`positive_int`); a string is refused even
    when it holds digits, because iterating it gives characters."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of positive integers such as {example}, got {value!r}")
    items = tuple(value)
    if not items:
        raise ValueError(f"{name} must be a non-empty list of positive integers such as {example}, got {value!r}")
    return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(items))
