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
    """k-space data consistency: mean of |A(G(w)) − y|² over the sampled (non-zero) entries of y.

    The measurement ``y`` is zero-filled k-space, so its sampled entries are its non-zero ones (noise makes an
    exactly zero sample improbable). The energy per sample is
    ``Σ_{k: y_k ≠ 0} |pred_k − y_k|² / #{k : y_k ≠ 0}`` (0 for an all-zero ``y``). With the orthonormal FFT
    and full sampling it equals the ``pixel`` term of the image (Parseval). For a known noise level use
    ``pixel`` with ``sigma``: when ``A(G(w))`` is zero-filled like ``y`` it is the same sum, scaled as a
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
        sampled = (target != 0).flatten(1)
        error = squared_error(pred, target).flatten(1) * sampled
        return error.sum(dim=1) / sampled.sum(dim=1).clamp_min(1)
