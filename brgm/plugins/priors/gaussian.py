"""BRGM's Gaussian prior on the W+ latents."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.params import interval, one_of
from brgm.core.terms import Latents, Prior


@attrs.define(kw_only=True, eq=False)
class GaussianPrior(Prior):
    """Gaussian prior on W+: ½·Σ((w − μ)/σ)² over layers and dims (natural units), μ and scalar σ from mapping.

    ``μ [w_dim]`` is the mean of ``w`` and ``σ`` the single scalar RMS distance of ``w`` from ``μ`` (not a
    per-dimension std), both from ``G.w_stats(n=n_samples, seed=seed)`` computed once in :meth:`bind`.
    ``reduction="natural"`` (the default): ``½ Σ_{l, c} ((ws[l, c] − μ[c]) / σ)²``, the negative log-density of
    ``N(μ, σ²I)`` for every layer up to a constant, the units of the calibrated data term (weight 1).
    ``reduction="mean"``: ``mean_{l, c} ((ws[l, c] − μ[c]) / σ)²``, BRGM's form, which its presets weigh by 100;
    it equals the natural energy divided by ``num_ws·w_dim / 2``.
    """

    name: ClassVar[str] = "gaussian"
    weight: float = attrs.field(default=1.0, converter=float, validator=interval(0.0))
    reduction: str = attrs.field(default="natural", validator=one_of(("natural", "mean")))
    n_samples: int = attrs.field(default=10000, converter=int, validator=interval(2, 10_000_000))
    seed: int = attrs.field(default=123, converter=int, validator=interval(0, 2**32 - 1))
    _mean: torch.Tensor | None = attrs.field(default=None, init=False, repr=False)
    _std: float | None = attrs.field(default=None, init=False, repr=False)

    def bind(self, generator: Generator, forward_model: ForwardModel) -> None:
        mean, std = generator.w_stats(n=self.n_samples, seed=self.seed)
        mean = mean.detach().reshape(-1)
        if mean.numel() != generator.w_dim:
            raise ShapeError(
                f"prior gaussian: the generator's w_stats mean has {mean.numel()} entries, expected w_dim = "
                f"{generator.w_dim}"
            )
        std = float(std)
        if not std > 0:
            raise ConfigError(f"prior gaussian: the generator's w_stats std must be positive, got {std}")
        self._mean, self._std = mean, std

    def energy(self, latents: Latents) -> torch.Tensor:
        """``ws [N, num_ws, w_dim]`` -> ``[N]``, non-negative."""
        if self._mean is None or self._std is None:
            raise ConfigError("prior gaussian is not bound: call bind(generator, forward_model) first")
        ws = latents.ws
        mean = self._mean.to(device=ws.device, dtype=ws.dtype)
        squares = ((ws - mean) / self._std).square()
        return squares.mean(dim=(1, 2)) if self.reduction == "mean" else 0.5 * squares.sum(dim=(1, 2))
