"""Built-in presets: named configurations that reproduce a reference implementation."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.presets import Preset


@hookimpl
def register_presets() -> list[Preset]:
    return []
