"""Built-in likelihoods of brgm, registered through the same hook as third-party plugins."""

from __future__ import annotations

from brgm import hookimpl


@hookimpl
def register_likelihoods() -> list[type]:
    return []
