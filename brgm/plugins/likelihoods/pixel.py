"""Pixelwise L2 data term (Gaussian measurement noise), for real and complex measurements."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ShapeError
from brgm.core.operators import ForwardModel
from brgm.core.params import interval
from brgm.core.terms import Likelihood


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|pred − target|²`` elementwise (real or complex), as a real tensor of the broadcast shape."""
    if pred.shape != target.shape:
        raise ShapeError(
            f"prediction {list(pred.shape)} and measurement {list(target.shape)} differ in shape"
        )
    diff = pred - target
    return diff.real.square() + diff.imag.square() if diff.is_complex() else diff.square()


@attrs.define(kw_only=True, eq=False)
class PixelLikelihood(Likelihood):
    """Pixelwise L2: mean of |f(G(w)) − y|² per sample, or the Gaussian NLL Σ|·|²/(2σ²) given noise sigma.

    Without ``sigma`` the energy is the mean over every element of the measurement (channels and spatial
    positions, or k-space entries) of ``|pred − y|²``, in the [0, 1] intensity units of the problem (BRGM's
    ``mean((255·Δ)²)`` is 65025 times this). With ``sigma`` (the known standard deviation of the additive
    Gaussian noise; for complex data, of each of the real and imaginary parts) it is the negative
    log-likelihood up to a constant, ``Σ |pred − y|² / (2σ²)`` over the elements.
    """

    name: ClassVar[str] = "pixel"
    sigma: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(float),
        validator=interval(0, open_lo=True),
    )

    def energy(self, pred: torch.Tensor, target: torch.Tensor, forward_model: ForwardModel) -> torch.Tensor:
        """Measurements ``[N, ...]`` (real or complex) -> ``[N]``, non-negative."""
        error = squared_error(pred, target).flatten(1)
        if self.sigma is None:
            return error.mean(dim=1)
        return error.sum(dim=1) / (2 * self.sigma**2)
