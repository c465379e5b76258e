"""Boundary extension of the trailing spatial axes (reflect, circular, zeros) and its exact adjoint.

Reflect and circular padding gather samples by index, so their adjoint scatters (adds) each padded sample back
onto the sample it copies; zero padding's adjoint crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch
import torch.nn.functional as F

MODES = ("reflect", "circular", "zeros")


def source_indices(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each of the ``before + n + after`` padded positions, the index of the sample it copies.

    ``reflect`` mirrors about the edge samples without repeating them (``d c b | a b c d | c b a``), for any pad
    width (repeatedly); ``circular`` wraps around."""
    positions = np.arange(-before, n + after)
    if mode == "circular":
        return positions % n
    if n == 1:
        return np.zeros_like(positions)
    period = 2 * (n - 1)
    folded = positions % period
    return np.where(folded < n, folded, period - folded)


@attrs.frozen(kw_only=True)
class Padding:
    """Pad the trailing ``len(widths)`` axes of a tensor by ``(before, after)`` samples each."""

    mode: str
    sizes: tuple[int, ...]
    widths: tuple[tuple[int, int], ...]
    #: per axis, the gather indices of reflect/circular padding (empty for zeros)
    indices: tuple[torch.Tensor, ...]

    @classmethod
    def build(
        cls, mode: str, sizes: Sequence[int], widths: Sequence[tuple[int, int]], device: torch.device
    ) -> Padding:
        indices = ()
        if mode != "zeros":
            indices = tuple(
                torch.as_tensor(source_indices(n, b, a, mode), device=device)
                for n, (b, a) in zip(sizes, widths, strict=True)
            )
        return cls(mode=mode, sizes=tuple(sizes), widths=tuple(widths), indices=indices)

    def _axes(self, ndim: int) -> range:
        return range(ndim - len(self.sizes), ndim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "zeros":
            flat = [w for before_after in reversed(self.widths) for w in before_after]
            return F.pad(x, flat)
        for axis, index in zip(self._axes(x.ndim), self.indices, strict=True):
            x = x.index_select(axis, index)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Sum each padded sample back onto its source (crop for zeros): the transpose of :meth:`__call__`."""
        if self.mode == "zeros":
            for axis, n, (before, _) in zip(self._axes(y.ndim), self.sizes, self.widths, strict=True):
                y = y.narrow(axis, before, n)
            return y
        for axis, n, index in zip(self._axes(y.ndim), self.sizes, self.indices, strict=True):
            shape = list(y.shape)
            shape[axis] = n
            y = y.new_zeros(shape).index_add(axis, index, y)
        return y
