"""brgm: Bayesian reconstruction of medical images with deep generative models, composed from plugins.

>>> import brgm
>>> problem = brgm.compose(gen="demo-brain64", fwd="kspace", priors=["gaussian", "colinear"])  # doctest: +SKIP
>>> result = brgm.reconstruct(problem, y, steps=200, seed=0)                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brgm.core.hookspecs import hookimpl
from brgm.core.version import __version__

__all__ = [
    "__version__",
    "compose",
    "forward_model",
    "hookimpl",
    "load_generator",
    "metrics",
    "reconstruct",
]

if TYPE_CHECKING:
    from brgm import metrics
    from brgm.core.compose import compose, forward_model, load_generator
    from brgm.core.reconstruct import reconstruct

_LAZY = {
    "compose": "brgm.core.compose",
    "forward_model": "brgm.core.compose",
    "load_generator": "brgm.core.compose",
    "reconstruct": "brgm.core.reconstruct",
}


def __getattr__(name: str) -> Any:
    """Import the public API on first use, so that ``import brgm`` stays light and plugin modules can import
    :data:`hookimpl` without a cycle."""
    import importlib

    if name == "metrics":
        return importlib.import_module("brgm.metrics")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'brgm' has no attribute {name!r}")
