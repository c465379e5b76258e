"""Built-in forward models of brgm, registered through the same hook as third-party plugins."""

from __future__ import annotations

from brgm import hookimpl


@hookimpl
def register_forward_models() -> list[type]:
    return []
