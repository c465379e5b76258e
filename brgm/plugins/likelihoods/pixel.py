"""Pixelwise L2 data term (Gaussian measurement noise), for real and complex measurements."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.operators import ForwardModel
from brgm.core.params import interval, one_of
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
    """Pixelwise L2 (Gaussian noise): by default the negative log-likelihood Σ|f(G(w)) − y|²/(2σ²).

    ``reduction="nll"`` (the default, the calibrated energy): ``Σ |pred − y|² / (2σ²)`` over the measured
    entries (the forward model's :meth:`~brgm.core.operators.ForwardModel.measured`; for complex k-space, real
    and imaginary parts each count, each with variance σ²), where σ is the measurement's noise level: ``sigma``
    when given (per real and imaginary part for complex data, in the measurement's units), else the composed
    noise model's ``sigma``, else estimated from the measurement; floored (see
    :meth:`brgm.core.problem.Problem.noise_level`). ``reduction="mean"``: the mean of ``|pred − y|²`` over every
    element, in [0, 1] intensity units, as BRGM's presets use it (BRGM's ``mean((255·Δ)²)`` is 65025 times this).
    """

    name: ClassVar[str] = "pixel"
    uses_sigma: ClassVar[bool] = True
    reduction: str = attrs.field(default="nll", validator=one_of(("nll", "mean")))
    #: the measurement's noise level when known (overrides the noise model's and the estimate); None: not given
    sigma: float | None = attrs.field(default=None, validator=interval(0, open_lo=True))

    @property
    def given_sigma(self) -> float | None:
        return self.sigma

    def energy(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        forward_model: ForwardModel,
        sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Measurements ``[N, ...]`` (real or complex) and noise levels ``sigma [N]`` -> ``[N]``, non-negative."""
        error = squared_error(pred, target)
        if self.reduction == "mean":
            return error.flatten(1).mean(dim=1)
        if sigma is None:
            raise ConfigError("like.pixel with reduction=nll needs the measurement's noise level sigma")
        measured = forward_model.measured(target.shape, target.device)
        if measured is not None:
            error = error * measured
        return error.flatten(1).sum(dim=1) / (2 * sigma.to(error.dtype).square())
