"""Per-instance caching of the tensors an operator builds for one input shape, device and dtype.

Forward models are immutable, so a cached tensor never goes stale: a changed model (``attrs.evolve``) is a new
object with an empty cache. The cache dict is the one mutable part of a model."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen(kw_only=True, eq=False)
class TensorCache:
    """Mixin for operators whose tensors (matrices, kernels, masks) are built on first use and reused."""

    _tensors: dict[Hashable, Any] = attrs.field(factory=dict, init=False, repr=False)

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value stored under ``key`` (include shape, device and dtype in it), built once by ``build()``."""
        if key not in self._tensors:
            self._tensors[key] = build()
        return self._tensors[key]
