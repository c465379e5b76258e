"""Presets: named configurations that reproduce a reference (``preset=brgm-tf``) or a tested recipe."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Preset:
    """Component selections and parameter values applied before the user's own.

    Attributes:
        name: registry name, e.g. ``"brgm-tf"``.
        description: one line for ``brgm plugins``.
        select: group selections, e.g. ``{"like": "pixel+perceptual", "prior": "gaussian+colinear"}``.
        values: field overrides in CLI spelling, e.g. ``{"like.pixel.weight": 0.001, "solver.steps": 5000}``.
            A value for a component the user deselected is dropped.
        notes: how the values were derived (unit conversions), shown in the resolved configuration.
    """

    name: str
    description: str
    select: dict[str, str] = attrs.field(factory=dict)
    values: dict[str, Any] = attrs.field(factory=dict)
    notes: str = ""
