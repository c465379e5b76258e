"""A reconstruction problem: a generator, a forward model, likelihoods and priors, composed at run time.

The energy of latents ``w`` given a measurement ``y`` is

    E(w) = Σ_k λ_k · L_k(f(x(w)), y) + Σ_j μ_j · E_j(w),   x(w) = (G.synthesis(w) + 1) / 2 ∈ [0, 1]

per batch element. The map from the generator's [-1, 1] to intensities in [0, 1] happens here, before the
forward model, so every forward model, likelihood and metric sees [0, 1].
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from brgm.core.errors import ShapeError
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.terms import Latents, Likelihood, Prior


@attrs.define(kw_only=True, eq=False)
class Problem:
    """A composed MAP problem. Build it with :func:`brgm.compose`.

    Attributes:
        generator: the generator ``G`` (its parameters are frozen).
        forward_model: the corruption ``f`` (a chain for ``fwd=a+b``).
        likelihoods: data terms, each with its weight λ.
        priors: latent energies, each with its weight μ.
        solver: the solver configuration (:class:`~brgm.core.solver.SolverConfig`).
        config: the resolved configuration, as written next to a run's outputs.
    """

    generator: Generator
    forward_model: ForwardModel
    likelihoods: list[Likelihood]
    priors: list[Prior] = attrs.field(factory=list)
    solver: Any = None
    config: dict[str, Any] = attrs.field(factory=dict)

    @property
    def device(self) -> torch.device:
        return self.generator.device

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of the images the problem produces."""
        return (self.generator.img_channels, *self.generator.img_shape)

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        """The shape of one measurement without the batch axis."""
        return self.forward_model.output_shape((1, *self.image_shape))[1:]

    def term_names(self) -> list[str]:
        return [f"like.{t.name}" for t in self.likelihoods] + [f"prior.{t.name}" for t in self.priors]

    def check_measurement(self, y: torch.Tensor) -> torch.Tensor:
        """Return ``y`` with a batch axis, or raise :class:`ShapeError` naming the expected shape."""
        expected = self.measurement_shape
        if tuple(y.shape) == expected:
            y = y.unsqueeze(0)
        if tuple(y.shape[1:]) != expected:
            raise ShapeError(
                f"measurement of shape {list(y.shape)} does not fit forward model {self.forward_model.name!r} "
                f"on {list(self.image_shape)} images: expected [N, {', '.join(map(str, expected))}]"
            )
        if y.is_complex() != self.forward_model.complex_output:
            kind = "complex" if self.forward_model.complex_output else "real"
            raise ShapeError(
                f"forward model {self.forward_model.name!r} expects a {kind} measurement, got {y.dtype}"
            )
        return y

    def image(self, latents: Latents) -> torch.Tensor:
        """Intensity images ``[N, C, *spatial]`` in [0, 1] (not clamped, so gradients are exact)."""
        x = self.generator.synthesis(latents.ws, noise_mode="const")
        return (x.float() + 1.0) * 0.5

    def energies(self, latents: Latents, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The current images and every weighted term's energy ``[N]``, by ``like.NAME`` / ``prior.NAME``."""
        x = self.image(latents)
        pred = self.forward_model(x)
        terms: dict[str, torch.Tensor] = {}
        for like in self.likelihoods:
            terms[f"like.{like.name}"] = like.weight * like.energy(pred, y, self.forward_model)
        for prior in self.priors:
            terms[f"prior.{prior.name}"] = prior.weight * prior.energy(latents)
        return x, terms

    def baseline(self, y: torch.Tensor) -> torch.Tensor:
        """The naive inverse of ``y`` (zero-filled, upsampled, masked, ...), the baseline to beat."""
        return self.forward_model.naive_inverse(y)
