"""Validators and converters shared by the forward models, on top of :mod:`brgm.core.params`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from brgm.core.errors import ConfigError
from brgm.core.params import Validator

#: the seeds numpy's ``RandomState`` accepts (fastMRI's masks are drawn with it)
MAX_SEED = 2**32 - 1


def integer(lo: int, hi: int | None = None) -> Validator:
    """Accept integers (not bools) from ``lo`` to ``hi`` inclusive."""
    text = f"an integer in [{lo}, {'inf' if hi is None else hi}]"

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not ok or value < lo or (hi is not None and value > hi):
            raise ConfigError(f"{attribute.name} must be {text}, got {value!r}")

    return check


def array_or_name(value: Any) -> str | np.ndarray | None:
    """Converter for parameters that take a name, a file path or an array: tensors become numpy arrays,
    paths become strings."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def existing_file(attribute: str, value: str, accepted: str) -> Path:
    """``value`` as a path to an existing file, or a :class:`ConfigError` that lists what ``attribute`` accepts."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{attribute} must be {accepted}; {value!r} is neither a known name nor an existing file"
        )
    return path
