"""Leaving the generator's range: an image-space deviation with a total-variation prior."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError
from brgm.core.params import interval
from brgm.core.terms import Latents, Prior


def total_variation(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x [N, C, *spatial]`` (2D or 3D) -> ``[N]``: the isotropic total variation ``Σ √(|∇x|² + ε²) − ε`` with
    forward differences (replicated border), smoothed by ``ε`` so that it is differentiable everywhere."""
    squared = torch.zeros_like(x)
    for axis in range(2, x.ndim):
        difference = torch.diff(x, dim=axis, append=x.narrow(axis, x.shape[axis] - 1, 1))
        squared = squared + difference.square()
    return ((squared + eps**2).sqrt() - eps).flatten(1).sum(dim=1)


@attrs.define(kw_only=True, eq=False)
class DeviationPrior(Prior):
    """An image-space deviation ``d`` added to the generator's image, with the prior ``β·TV(d)``.

    Selecting it makes the reconstruction ``x = (G(w) + 1)/2 + d``: the solver optimises ``d [N, C, *spatial]``
    (intensity units, starting at 0) with the latents. Where the generator cannot produce what the data
    demand (anatomy it never saw, a lesion), ``d`` supplies it, and the TV prior keeps ``d`` piecewise smooth,
    so the reconstruction falls back toward a total-variation solution rather than toward the generator's
    nearest image. In natural units, ``p(d) ∝ exp(−β·TV(d))``: ``weight`` is β per unit of intensity
    variation; ``eps`` smooths TV's corner at 0.
    """

    name: ClassVar[str] = "deviation"
    needs_deviation: ClassVar[bool] = True
    weight: float = attrs.field(default=1.0, converter=float, validator=interval(0.0))
    eps: float = attrs.field(default=1e-3, converter=float, validator=interval(0.0, open_lo=True))

    def energy(self, latents: Latents) -> torch.Tensor:
        """Latents with ``deviation [N, C, *spatial]`` -> ``[N]``, non-negative."""
        if latents.deviation is None:
            raise ConfigError(
                "prior deviation needs the image-space deviation in the latents, which have none"
            )
        return total_variation(latents.deviation, self.eps)
