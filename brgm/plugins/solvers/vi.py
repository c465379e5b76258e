"""Posterior approximation by variational inference: a Gaussian over the unknowns fitted to maximise the ELBO.

The family is written in the preconditioner's units: with ``d = √M`` the diagonal scale of
:func:`~brgm.plugins.solvers.posterior.preconditioner` at the MAP solution,

    v = μ + d ⊙ (L·ε₁ + s ⊙ ε₂),   ε₁ ~ N(0, I_rank),  ε₂ ~ N(0, I_P),

a diagonal (``rank=0``, mean-field) or low-rank-plus-diagonal covariance ``Σ = d dᵀ ⊙ (L Lᵀ + diag(s²))``. The
ELBO ``E_q[−E(v)] + H(q)`` is maximised with Adam over ``μ``, ``log s`` and ``L`` through the reparameterisation
above (``draws`` draws per step, in antithetic pairs ``±ε``, which cancel the noise of the mean's gradient on a
quadratic energy), with the exact entropy

    H(q) = P/2·log(2πe) + Σ log d + Σ log s + ½·log det(I + Lᵀ diag(s⁻²) L)

(the matrix determinant lemma). Unlike BRGM's ``q_loss``, whose reparameterised gradient vanishes, this entropy
is what keeps ``q`` from collapsing to the MAP point. ``μ`` starts at the MAP solution, ``s`` at 1 (the
Laplace-like diagonal), ``L`` at small seeded values; the learning rate decays by a cosine to 0, and the result is
the average of the parameters over the last ``average`` fraction of the steps (Polyak-Ruppert). The fit keeps
Monte-Carlo noise, whose size falls with ``draws``: the exact test needs 2048 on a 6-dim
posterior to be within 1 % for every seed it was tried with; 256 give 1–2 %).

``Result.history``: the MAP's and then the fit's energies (means over the step's draws), and ``"elbo"``
``[steps, N]``, the ELBO estimate of each step up to its constant ``P/2·log(2πe)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch

from brgm.core.params import interval
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver
from brgm.plugins.solvers import posterior

#: the random streams of one item (see :func:`brgm.plugins.solvers.posterior.generators`)
PRECONDITIONER_STREAM, INIT_STREAM, FIT_STREAM, DRAW_STREAM = 1, 3, 4, 5


@attrs.define(kw_only=True, eq=False)
class VariationalGaussian:
    """``q(v) = N(mean, diag(scale)·(L·Lᵀ + diag(s²))·diag(scale))`` for ``N`` items over ``P`` unknowns.

    Attributes:
        mean: ``μ [N, P]``.
        scale: ``d [N, P]``, the fixed preconditioner scale.
        log_s: ``log s [N, P]``.
        factor: ``L [N, P, rank]`` (``rank`` may be 0).
    """

    mean: torch.Tensor
    scale: torch.Tensor
    log_s: torch.Tensor
    factor: torch.Tensor

    def draw(self, gens: Sequence[torch.Generator], count: int) -> torch.Tensor:
        """``[N·count, P]`` draws, item-major, in antithetic pairs ``μ ± d ⊙ (L·ε₁ + s ⊙ ε₂)`` (the last pair
        cut short when ``count`` is odd); each item's ε from its own generator."""
        n, size, rank = self.factor.shape
        half = (count + 1) // 2
        device = self.mean.device
        e2 = posterior.randn(gens, half, (size,), device)
        e1 = posterior.randn(gens, half, (rank,), device)
        offset = posterior.repeat(self.log_s.exp(), half) * e2
        if rank:
            offset = offset + (posterior.repeat(self.factor, half) @ e1[:, :, None])[:, :, 0]
        offset = torch.stack([offset, -offset], dim=1).reshape(n, 2 * half, size)[:, :count]
        return (self.mean[:, None] + self.scale[:, None] * offset).flatten(0, 1)

    def entropy(self) -> torch.Tensor:
        """``[N]``: the entropy less ``P/2·log(2πe)``, ``Σ log d + Σ log s + ½·log det(I + Lᵀ diag(s⁻²) L)``."""
        value = self.scale.log().sum(dim=1) + self.log_s.sum(dim=1)
        rank = self.factor.shape[2]
        if rank:
            scaled = self.factor * (-self.log_s).exp()[:, :, None]
            eye = torch.eye(rank, device=scaled.device, dtype=scaled.dtype)
            value = value + 0.5 * torch.logdet(eye + scaled.transpose(1, 2) @ scaled)
        return value

    def variance(self) -> torch.Tensor:
        """``[N, P]``: the marginal variances ``d² ⊙ (s² + Σ_r L²)``."""
        return self.scale.square() * (self.log_s.exp().square() + self.factor.square().sum(dim=2))


@attrs.define(kw_only=True, eq=False)
class VISolver(Solver):
    """Posterior approximation: a Gaussian (mean-field or low-rank plus diagonal) over the latents, ELBO by Adam."""

    name: ClassVar[str] = "vi"
    samples_posterior: ClassVar[bool] = True
    steps: int = attrs.field(default=200, converter=int, validator=interval(1, 1_000_000))
    lr: float = attrs.field(default=0.05, converter=float, validator=interval(0, open_lo=True))
    #: Monte-Carlo draws per step (antithetic pairs)
    draws: int = attrs.field(default=4, converter=int, validator=interval(2, 4096))
    #: columns of the low-rank factor ``L`` (0: mean-field). At most 64: Adam moves every entry of ``L`` by about
    #: ``lr`` per step, so a wide factor inflates the variance (demo-brain64, k-space ×4, 8 steps: rank 1024
    #: costs the generator's mean 10 dB; rank 4096 saturates it at the intensity range's ends)
    rank: int = attrs.field(default=0, converter=int, validator=interval(0, 64))
    #: posterior draws returned per item; the mean and std are theirs
    samples: int = attrs.field(default=16, converter=int, validator=interval(2, 100_000))
    #: the fraction of the last steps whose parameters are averaged into the result (Polyak-Ruppert)
    average: float = attrs.field(default=0.5, converter=float, validator=interval(0, 1, open_lo=True))
    map_steps: int = attrs.field(default=200, converter=int, validator=interval(1, 1_000_000))
    map_lr: float = attrs.field(default=0.1, converter=float, validator=interval(0, open_lo=True))
    probes: int = attrs.field(default=4, converter=int, validator=interval(1, 1024))

    @draws.validator
    def _pairs(self, attribute: attrs.Attribute, value: int) -> None:
        if value % 2:
            raise ValueError(f"draws must be even (antithetic pairs), got {value}")

    def divergence_advice(self) -> str:
        return f"try a smaller solver.lr (now {self.lr:g}) or solver.map_lr (now {self.map_lr:g})"

    def fit(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> tuple[posterior.Start, VariationalGaussian, dict[str, torch.Tensor]]:
        """The MAP start, the fitted ``q`` and the history (see the module docstring) for measurements ``y``."""
        device, n, k = problem.device, len(seeds), self.draws
        start = posterior.map_start(
            problem,
            y,
            seeds,
            steps=self.map_steps,
            lr=self.map_lr,
            progress=progress,
            total_steps=self.map_steps + self.steps,
        )
        scale = posterior.preconditioner(
            problem, start, y, posterior.generators(seeds, device, PRECONDITIONER_STREAM), self.probes
        ).sqrt()
        size = start.v.shape[1]
        factor = 1e-2 * posterior.randn(
            posterior.generators(seeds, device, INIT_STREAM), 1, (size, self.rank), device
        )
        q = VariationalGaussian(
            mean=start.v.clone().requires_grad_(True),
            scale=scale,
            log_s=torch.zeros(n, size, device=device, requires_grad=True),
            factor=factor.requires_grad_(self.rank > 0),
        )
        optimizer = torch.optim.Adam([q.mean, q.log_s, *([q.factor] if self.rank else [])], lr=self.lr)
        gens = posterior.generators(seeds, device, FIT_STREAM)
        lanes_y, sigma = posterior.repeat(y, k), posterior.repeat(start.sigma, k)
        held = start.held.repeat(k)
        names: list[str] = []
        record = []
        averaged = [torch.zeros_like(t) for t in (q.mean, q.log_s, q.factor)]
        first_averaged = int((1 - self.average) * self.steps)
        for step in range(self.steps):
            for group in optimizer.param_groups:
                group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
            _, terms = problem.energies(start.packing.latents(q.draw(gens, k), held), lanes_y, sigma)
            energy = torch.stack(list(terms.values())).sum(dim=0).reshape(n, k).mean(dim=1)
            entropy = q.entropy()
            optimizer.zero_grad(set_to_none=True)
            (energy - entropy).sum().backward()
            optimizer.step()
            if step >= first_averaged:
                weight = 1 / (step - first_averaged + 1)
                for total, value in zip(averaged, (q.mean, q.log_s, q.factor), strict=True):
                    total.lerp_(value.detach(), weight)
            names = [*terms, "total", "elbo"]
            values = [t.detach().reshape(n, k).mean(dim=1) for t in terms.values()]
            record.append(torch.stack([*values, energy.detach(), (entropy - energy).detach()]))
            if progress is not None:
                sums = record[-1].sum(dim=1).tolist()
                progress(
                    self.map_steps + step + 1,
                    self.map_steps + self.steps,
                    dict(zip(names, sums, strict=True)),
                )
        phase = dict(zip(names, torch.stack(record, dim=1).double().cpu(), strict=True))
        q = VariationalGaussian(mean=averaged[0], scale=scale, log_s=averaged[1], factor=averaged[2])
        return start, q, posterior.history_with_start(start.result, phase)

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        start, q, history = self.fit(problem, y, seeds=seeds, progress=progress)
        n, s = len(seeds), self.samples
        with torch.no_grad():
            draws = q.draw(posterior.generators(seeds, problem.device, DRAW_STREAM), s).reshape(n, s, -1)
            images = []
            for chunk in draws.split(self.draws, dim=1):
                lanes = chunk.shape[1]
                held = start.held.repeat(lanes)
                image = problem.image(start.packing.latents(chunk.flatten(0, 1), held))
                images.append(image.reshape(n, lanes, *problem.image_shape))
            summary = posterior.summarise(problem, torch.cat(images, dim=1).transpose(0, 1), y)
        ws = q.mean.reshape(n, *start.packing.ws_shape)
        return posterior.result(start, summary, history, ws)
