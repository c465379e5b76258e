"""The noise regulariser of NVIDIA's StyleGAN2 projector."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs
import torch
import torch.nn.functional as F

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.params import interval
from brgm.core.terms import Latents, Prior

if TYPE_CHECKING:
    from brgm.core.generator import Generator
    from brgm.core.operators import ForwardModel


@attrs.define(kw_only=True, eq=False)
class NoiseRegPrior(Prior):
    """NVIDIA's projector noise regulariser: squared autocorrelations of every noise map at every scale.

    For each noise map ``v [N, 1, *spatial]`` (2D or 3D) in ``latents.noises`` and each of its scales (the map,
    then 2×-average-pooled copies until the smallest side is ≤ 8), the energy adds, for every spatial axis,
    ``mean(v · roll(v, 1, axis))²`` per sample. White noise scores near 0; spatially correlated maps (the
    generator hiding image content in its noise) score high. The default weight is the projector's 1e5.
    Selecting it makes the solver optimise the generator's noise inputs with ``ws`` (as BRGM-TF and the
    projector do), starting from the generator's constant noise and renormalised to zero mean and unit
    variance after every step.
    """

    name: ClassVar[str] = "noise_reg"
    needs_noise: ClassVar[bool] = True
    weight: float = attrs.field(default=1e5, converter=float, validator=interval(0.0))

    def bind(self, generator: Generator, forward_model: ForwardModel) -> None:
        if not generator.noise_inputs(1):
            raise ConfigError(
                f"prior noise_reg regularises noise inputs, but generator {type(generator).__name__} has none; "
                "remove noise_reg from prior="
            )

    def energy(self, latents: Latents) -> torch.Tensor:
        """Latents with ``noises`` (a list of ``[N, 1, *spatial]`` maps) -> ``[N]``, non-negative."""
        if not latents.noises:
            raise ConfigError(
                "prior noise_reg needs the generator's noise maps in the latents, which have none"
            )
        total = latents.ws.new_zeros(latents.ws.shape[0])
        for noise in latents.noises:
            total = total + self._map_energy(noise)
        return total

    @staticmethod
    def _map_energy(noise: torch.Tensor) -> torch.Tensor:
        dims = noise.ndim - 2
        if dims not in (2, 3) or noise.shape[1] != 1:
            raise ShapeError(
                f"prior noise_reg takes noise maps shaped [N, 1, H, W] or [N, 1, D, H, W], got {list(noise.shape)}"
            )
        pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
        energy = noise.new_zeros(noise.shape[0])
        while True:
            for axis in range(2, noise.ndim):
                energy = energy + (noise * noise.roll(1, dims=axis)).flatten(1).mean(dim=1).square()
            if min(noise.shape[2:]) <= 8:
                return energy
            noise = pool(noise, kernel_size=2)
