"""Validators shared by the attrs parameter classes of every component.

Each validator raises :class:`~brgm.core.errors.ConfigError` naming the parameter, the accepted range
and the value received, so the CLI can show it as-is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from brgm.core.errors import ConfigError

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def interval(
    lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False
) -> Validator:
    """Accept real numbers in the interval from ``lo`` to ``hi`` (closed unless told otherwise)."""
    left = "(" if open_lo else "["
    right = ")" if open_hi else "]"
    text = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
            ok = ok and (lo is None or (v > lo if open_lo else v >= lo))
            ok = ok and (hi is None or (v < hi if open_hi else v <= hi))
            if not ok:
                raise ConfigError(f"{attribute.name} must be in {text}, got {value!r}")

    return check


def one_of(choices: Sequence[Any]) -> Validator:
    """Accept exactly one of ``choices``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ConfigError(
                f"{attribute.name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )

    return check


def to_tuple(kind: type) -> Callable[[Any], tuple[Any, ...]]:
    """Converter: a scalar or a sequence (or a comma-separated string) becomes a tuple of ``kind``."""

    def convert(value: Any) -> tuple[Any, ...]:
        if isinstance(value, str):
            value = [v for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        try:
            return tuple(kind(v) for v in value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"expected a list of {kind.__name__}, got {value!r}") from err

    return convert
