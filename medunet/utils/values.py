"""Typed configuration values: integers where integers are meant.

Configuration arrives from JSON, the command line (fire) and Python. A string such as ``"64"`` is a sequence
of characters and ``int(64.7)`` silently truncates, so both would give a different network than the one
asked for; these helpers accept exactly the integers and say what was wrong otherwise.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["positive_int", "positive_ints"]


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
