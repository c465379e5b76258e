"""k-space data consistency: complex L2 over the sampled entries."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.terms import Likelihood
from brgm.plugins.likelihoods.pixel import squared_error


@attrs.define(kw_only=True, eq=False)
class KSpaceLikelihood(Likelihood):
    """k-space data consistency: mean of |A(G(w)) − y|² over the entries the forward model samples.

    The sampled entries are the forward model's :meth:`~brgm.core.operators.ForwardModel.measured` ones (the
    k-space mask), so a sample that happens to be exactly zero still counts and nothing outside the mask does.
    The energy per sample is ``Σ_{k sampled} |pred_k − y_k|² / #sampled``. With the orthonormal FFT and full
    sampling it equals the ``pixel`` term of the image (Parseval). For a known noise level use ``pixel`` with
    ``sigma``: since ``A(G(w))`` and ``y`` are both zero outside the mask, it is the same sum, scaled as a
    negative log-likelihood.
    """

    name: ClassVar[str] = "kspace"

    def bind(self, generator: Generator, forward_model: ForwardModel) -> None:
        if not forward_model.complex_output:
            raise ConfigError(
                f"likelihood kspace compares complex k-space measurements, but fwd={forward_model.name} "
                "produces real images; use like=pixel"
            )

    def energy(self, pred: torch.Tensor, target: torch.Tensor, forward_model: ForwardModel) -> torch.Tensor:
        """Complex k-space ``[N, ...]`` -> ``[N]``, non-negative."""
        error = squared_error(pred, target)
        mask = forward_model.measured(target.shape, target.device)
        if mask is None:
            return error.flatten(1).mean(dim=1)
        sampled = mask.expand(target.shape).flatten(1)
        return (error.flatten(1) * sampled).sum(dim=1) / sampled.sum(dim=1).clamp_min(1)
