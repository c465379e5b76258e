"""Parameter schemas of every component: validators, and the one conversion from text to field values.

Each validator raises :class:`~brgm.core.errors.ConfigError` naming the parameter, the accepted range
and the value received, so the CLI can show it as-is. :func:`build` instantiates a component's attrs class
from settings (strings converted by :func:`coerce` according to the field's annotation).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from brgm.core.errors import BrgmError, ConfigError

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest of ``choices``, or an empty string when there are none."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.0)
    return f" (did you mean {close[0]!r}?)" if close else ""


def interval(
    lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False
) -> Validator:
    """Accept finite real numbers in the interval from ``lo`` to ``hi`` (closed unless told otherwise).

    NaN and ±inf are refused even where a bound is open-ended: no parameter means anything by them, and
    they cannot be written to ``config.json`` as valid JSON.
    """
    left = "(" if open_lo else "["
    right = ")" if open_hi else "]"
    text = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
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


#: the largest seed of a run (``torch.Generator.manual_seed`` takes 64-bit integers)
MAX_RUN_SEED = 2**63 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in [0, :data:`MAX_RUN_SEED`], or a :class:`ConfigError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_RUN_SEED:
        raise ConfigError(f"{name} must be an integer in [0, 2**63 - 1], got {seed!r}")
    return seed


def field_names(cls: type) -> list[str]:
    """The parameters of attrs class ``cls``: its public init fields (none for a class that is not attrs)."""
    if not attrs.has(cls):
        return []
    return [f.name for f in attrs.fields(cls) if f.init and not f.name.startswith("_")]


def field_values(obj: Any) -> dict[str, Any]:
    """``{name: value}`` of the parameters of an attrs instance (see :func:`field_names`)."""
    return {name: getattr(obj, name) for name in field_names(type(obj))}


def unknown_key(group: str, field: str, names: Sequence[str]) -> ConfigError:
    """The error for ``group.field`` when the valid parameters are ``names``, with a did-you-mean."""
    return ConfigError(
        f"{group}.{field}: no such parameter{did_you_mean(field, names)}; "
        f"valid keys: {', '.join(f'{group}.{n}' for n in names) or 'none'}"
    )


def check_field(cls: type, group: str, field: str) -> None:
    """Raise a :class:`ConfigError` with a did-you-mean unless ``field`` is a parameter of attrs ``cls``."""
    names = field_names(cls)
    if field not in names:
        raise unknown_key(group, field, names)


def build(cls: type, values: Mapping[str, Any], label: str) -> Any:
    """Instantiate attrs class ``cls`` from ``values`` (strings converted by field type), as ConfigErrors."""
    with contextlib.suppress(NameError):  # unknown annotations: values pass through unconverted
        attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    kwargs = {}
    for name, raw in values.items():
        check_field(cls, label, name)
        kwargs[name] = coerce(raw, fields[name].type, f"{label}.{name}") if isinstance(raw, str) else raw
    try:
        return cls(**kwargs)
    except BrgmError as err:
        raise ConfigError(f"{label}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{label}: {err}") from err


def coerce(raw: str, tp: Any, key: str) -> Any:
    """Convert a CLI string to the annotated type ``tp`` (bool, int, float, str, Path, Literal, X | None,
    tuples and lists); unknown or missing types get a literal guess (number, bool, list or string)."""
    text = raw.strip()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(text, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: cannot convert {raw!r}")
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}, got {raw!r}")
    if origin in (tuple, list) or tp in (tuple, list):
        items = [t.strip() for t in text.strip("[]()").split(",") if t.strip()]
        item_type = args[0] if args else None
        converted = [coerce(item, item_type, key) for item in items]
        return tuple(converted) if (origin or tp) is tuple else converted
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if tp is int:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not (math.isfinite(number) and number.is_integer()):
            raise ConfigError(f"{key} must be an integer, got {raw!r}")
        return int(number)
    if tp is Path:
        return Path(text)
    if tp is str:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
