"""BRGM's Gaussian prior on the W+ latents."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.params import interval
from brgm.core.terms import Latents, Prior


@attrs.define(kw_only=True, eq=False)
class GaussianPrior(Prior):
    """BRGM's w prior: mean over layers and dims of ((w − μ)/σ)², μ and scalar σ from mapping samples.

    ``E(ws) = mean_{l, c} ((ws[l, c] − μ[c]) / σ)²`` per sample, where ``μ [w_dim]`` is the mean of ``w`` and
    ``σ`` the single scalar RMS distance of ``w`` from ``μ`` (not a per-dimension std), both from
    ``G.w_stats(n=n_samples, seed=seed)`` computed once in :meth:`bind`. Up to a constant and the factor
    ``num_ws·w_dim / 2`` this is ``−log N(w_l | μ, σ²I)`` summed over the layers. The energy is 0 at ``ws = μ``
    and 1 when every entry is one σ away.

    The default weight 0.01 suits the default ``pixel`` likelihood (weight 1, mean squared error of [0, 1]
    intensities): a typical sample of w scores about 1/w_dim here, so the prior stays below the data term
    until the fit is within a few percent. BRGM's own weights are in the ``brgm-tf`` / ``brgm-pt`` presets.
    """

    name: ClassVar[str] = "gaussian"
    weight: float = attrs.field(default=0.01, converter=float, validator=interval(0.0))
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
        return ((ws - mean) / self._std).square().mean(dim=(1, 2))
