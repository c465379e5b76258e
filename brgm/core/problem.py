"""A reconstruction problem: a generator, a forward model, likelihoods and priors, composed at run time.

The energy of latents ``w`` given a measurement ``y`` is

    E(w) = Σ_k λ_k · L_k(f(x(w)), y) + Σ_j μ_j · E_j(w),   x(w) = (G.synthesis(w) + 1) / 2 ∈ [0, 1]

per batch element. The map from the generator's [-1, 1] to intensities in [0, 1] happens here, before the
forward model, so every forward model, likelihood and metric sees [0, 1].
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch

from brgm.core import noise_level
from brgm.core.errors import ShapeError
from brgm.core.execution import Execution
from brgm.core.generator import Generator
from brgm.core.operators import ForwardModel
from brgm.core.terms import Latents, Likelihood, Prior, Term


@attrs.define(kw_only=True, eq=False)
class Problem:
    """A composed MAP problem. Build it with :func:`brgm.compose`.

    Attributes:
        generator: the generator ``G`` (its parameters are frozen).
        forward_model: the corruption ``f`` (a chain for ``fwd=a+b``).
        likelihoods: data terms, each with its weight λ.
        priors: latent energies, each with its weight μ.
        solver: the chosen :class:`~brgm.core.solver.Solver` (``solver=NAME``), whose fields are its settings; not
            annotated as one, since the solver contract names this class and the kernel's imports go one way.
        execution: how the solver runs (batch size, checkpointing, autocast), whichever it is.
        config: the resolved configuration of every component, as written next to a run's outputs.
    """

    generator: Generator
    forward_model: ForwardModel
    likelihoods: list[Likelihood]
    priors: list[Prior] = attrs.field(factory=list)
    solver: Any
    execution: Execution
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

    def check_measurement(self, y: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Return ``y`` (a tensor or numpy array, on the CPU or a CUDA device) detached, as a tensor with a batch
        axis, or raise :class:`ShapeError` naming the expected shape (also for an empty batch, for non-finite
        values and for a tensor on another device, such as ``meta``)."""
        if isinstance(y, np.ndarray):
            y = torch.from_numpy(y)
        if not isinstance(y, torch.Tensor):
            raise ShapeError(f"the measurement must be a torch.Tensor or numpy array, got {type(y).__name__}")
        if y.device.type not in ("cpu", "cuda"):
            held = " (a meta tensor holds no values)" if y.device.type == "meta" else ""
            raise ShapeError(f"the measurement is on device {str(y.device)!r}{held}; give it on cpu or cuda")
        y = y.detach()  # a measurement is data: a graph it came from is never differentiated through
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
        if y.shape[0] == 0:
            raise ShapeError("the measurement batch is empty: nothing to reconstruct")
        bad = int((~torch.isfinite(y)).sum())
        if bad:
            raise ShapeError(
                f"the measurement has {bad} non-finite value(s) (NaN or ±inf) of {y.numel()}; "
                "mark missing entries with the forward model's mask instead"
            )
        return y

    @property
    def optimises_noise(self) -> bool:
        """Whether the generator's noise inputs are unknowns too (a prior on them was selected)."""
        return any(prior.needs_noise for prior in self.priors)

    @property
    def optimises_deviation(self) -> bool:
        """Whether an image-space deviation is an unknown too (a prior on it was selected)."""
        return any(prior.needs_deviation for prior in self.priors)

    @property
    def noise_source(self) -> str:
        """Where :meth:`noise_level` takes σ from, the first that applies: ``"like.NAME.sigma"`` (the user gave
        it), ``"fwd.NAME.sigma"`` (the composed noise model), ``"estimated"`` (from each measurement)."""
        return self._given_noise()[0]

    def _given_noise(self) -> tuple[str, float | None]:
        """``(noise_source, σ)``, σ None where it is estimated."""
        for like in self.likelihoods:
            if like.uses_sigma and like.given_sigma is not None:
                return f"like.{like.name}.sigma", like.given_sigma
        noise = [op for op in self.forward_model.components if op.noise_sigma is not None]
        if noise:
            return f"fwd.{noise[0].name}.sigma", self.forward_model.noise_sigma
        return "estimated", None

    def noise_level(self, y: torch.Tensor) -> torch.Tensor:
        """The noise level σ of measurements ``y [N, ...]``, ``[N]``, from :attr:`noise_source`: the σ a
        likelihood was given, else the composed noise model's ``sigma``, else estimated from each measurement
        (:meth:`~brgm.core.operators.ForwardModel.estimate_sigma`). Not floored: see :meth:`energy_sigma`."""
        level = self._given_noise()[1]
        if level is not None:
            return torch.full((y.shape[0],), level, dtype=y.real.dtype, device=y.device)
        return self.forward_model.estimate_sigma(y)

    def energy_sigma(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma [N]`` as the calibrated data term uses it: at least :data:`~brgm.core.noise_level.SIGMA_FLOOR`
        times the RMS of the measured entries of ``y``, so that a noiseless measurement stays well posed."""
        return noise_level.floored(sigma, y, self.forward_model.measured(y.shape, y.device))

    def image(self, latents: Latents) -> torch.Tensor:
        """Intensity images ``[N, C, *spatial]`` (the generator's, in [0, 1], plus the deviation when there is
        one; not clamped, so gradients are exact)."""
        if latents.noises is None:
            x = self.generator.synthesis(latents.ws, noise_mode="const")
        else:
            x = self.generator.synthesis(latents.ws, noises=latents.noises)
        x = (x.float() + 1.0) * 0.5
        return x if latents.deviation is None else x + latents.deviation

    def terms(self, *, deviation: bool = True) -> dict[str, Term]:
        """Every energy term by ``like.NAME`` / ``prior.NAME``; ``deviation=False`` leaves out the priors on the
        image-space deviation (the first stage of a staged solve, which fits the latents alone)."""
        priors = [t for t in self.priors if deviation or not t.needs_deviation]
        return {f"like.{t.name}": t for t in self.likelihoods} | {f"prior.{t.name}": t for t in priors}

    def energies(
        self,
        latents: Latents,
        y: torch.Tensor,
        sigma: torch.Tensor | None = None,
        *,
        weighted: bool = True,
        deviation: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The current images and the energy ``[N]`` of every term of :meth:`terms` (``deviation`` as there), times
        its weight unless ``weighted=False``, by ``like.NAME`` / ``prior.NAME``; ``sigma [N]`` is the data term's
        noise level (:meth:`energy_sigma`, computed from ``y`` when not given; solvers compute it once), given to
        likelihoods that use it."""
        if sigma is None and any(like.uses_sigma for like in self.likelihoods):
            sigma = self.energy_sigma(y, self.noise_level(y))
        x = self.image(latents)
        terms = self.data_energies(self.forward_model(x), y, sigma, weighted=weighted)
        for key, term in self.terms(deviation=deviation).items():
            if isinstance(term, Prior):
                energy = term.energy(latents, x) if term.uses_image else term.energy(latents)
                terms[key] = term.weight * energy if weighted else energy
        return x, terms

    def data_energies(
        self, pred: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor | None, *, weighted: bool = True
    ) -> dict[str, torch.Tensor]:
        """The energy ``[N]`` of every likelihood by ``like.NAME`` for predicted measurements ``pred`` (the forward
        model's output), times its weight unless ``weighted=False``; ``sigma`` as in :meth:`energies`."""
        terms: dict[str, torch.Tensor] = {}
        for like in self.likelihoods:
            if like.uses_sigma:
                energy = like.energy(pred, y, self.forward_model, sigma)
            else:
                energy = like.energy(pred, y, self.forward_model)
            terms[f"like.{like.name}"] = like.weight * energy if weighted else energy
        return terms

    def baseline(self, y: torch.Tensor) -> torch.Tensor:
        """The naive inverse of ``y`` (zero-filled, upsampled, masked, ...), the baseline to beat."""
        return self.forward_model.naive_inverse(y)
