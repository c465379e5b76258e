"""Posterior sampling by the linearised Laplace approximation around the MAP solution.

At the MAP latents ``w*`` (:class:`~brgm.plugins.solvers.map.MAPSolver`, ``map_steps`` steps; the deviation and
noise inputs held at their MAP values, see :mod:`brgm.plugins.solvers.posterior`) the generator is linearised,
``x(w) ≈ x* + J·(w − w*)`` with ``J = ∂x/∂w`` the full Jacobian ``[pixels, P]``, computed by forward-mode
differentiation in chunks of ``chunk`` directions. The posterior of the linearised model is Gaussian,

    w − w* ~ N(0, H⁻¹),   H = J_yᵀ ∇²ℓ J_y + ∇²E_prior,

``J_y = ∂f(x)/∂w`` the forward model's Jacobian along it, ``∇²ℓ`` the likelihoods' Hessian with respect to the
prediction (Gauss–Newton: exact for the calibrated pixel term, whose Hessian is ``1/σ²`` on the measured
entries), ``∇²E_prior`` the exact Hessian of the priors on the latents alone (the Gaussian prior's ``1/σ_w²``).
The curvature of priors on the image (the deviation prior's share on the image's TV, zero almost everywhere) is
left out. The draws ``x* + J·δ``, ``δ = L⁻ᵀξ`` with ``H = LLᵀ`` (Cholesky, float64), are exact and independent
draws of the linearised model's posterior pushed to images; then each is refined for data consistency like any
sampler's (:func:`~brgm.plugins.solvers.posterior.summarise`).

This is an approximation, not an exact sampler of ``p(w | y)``: it is right to the extent the generator is linear
over the posterior's width, and it sees one mode. It has no Markov chains, so R-hat and ESS do not apply (the
draws are independent). Pushing the Gaussian draws through the generator itself instead of its linearisation was
tried on ``demo-brain64`` and fails: the latent directions the data leave open have the prior's width, over which
the generator is far from linear (the energy of those images rose by ~10⁵).

``groups`` restricts the posterior to shifts of ``w`` shared by contiguous groups of layers, ``w = w* + δ·B``
(``B [groups·w_dim, P]``): ``groups·w_dim`` Jacobian columns instead of ``P = num_ws·w_dim``, the other
directions held at the MAP. It is cheaper by ``num_ws / groups`` and less spread: on images drawn from
``demo-brain64`` (k-space ×4, σ = 0.02, brain pixels, 8 items) the 90 % interval covered 72–87 % with 5 groups
and 41–64 % with 2, against the nominal coverage of all of W+ (the default, ``groups=0``).

Cost: the Jacobian takes ``D / chunk`` batched forward-mode passes (``D`` the directions); it is held in memory (``P·pixels`` floats,
refused above :data:`MAX_JACOBIAN` entries: use ``solver=langevin`` for large volumes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError
from brgm.core.params import interval
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver
from brgm.core.terms import Latents
from brgm.plugins.solvers import posterior

#: the random stream of one item's draws (see :func:`brgm.plugins.solvers.posterior.generators`)
DRAW_STREAM = 6
#: the largest Jacobian (entries: latents × image elements) the solver holds
MAX_JACOBIAN = 2**27


@attrs.define(kw_only=True, eq=False)
class LaplaceSolver(Solver):
    """Posterior draws of the generator linearised at the MAP solution, under the Gauss–Newton Laplace posterior."""

    name: ClassVar[str] = "laplace"
    samples_posterior: ClassVar[bool] = True
    #: posterior draws per item; the mean and std are theirs
    samples: int = attrs.field(default=16, converter=int, validator=interval(2, 100_000))
    #: steps of the MAP solve the approximation is centred on, and its learning rate
    map_steps: int = attrs.field(default=200, converter=int, validator=interval(1, 1_000_000))
    map_lr: float = attrs.field(default=0.1, converter=float, validator=interval(0, open_lo=True))
    #: latent directions differentiated at once (memory against speed)
    chunk: int = attrs.field(default=128, converter=int, validator=interval(1, 1_000_000))
    #: the latent directions the posterior spans: the W+ layers split into ``groups`` contiguous groups, each
    #: shifted by its own ``w_dim`` vector (``groups·w_dim`` directions; 1: the generator's own W space; 0: every
    #: layer its own group, all of W+)
    groups: int = attrs.field(default=0, converter=int, validator=interval(0, 1_000))

    def divergence_advice(self) -> str:
        return f"try a smaller solver.map_lr (now {self.map_lr:g})"

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        size = problem.generator.num_ws * problem.generator.w_dim
        pixels = int(torch.Size(problem.image_shape).numel())
        if size * pixels > MAX_JACOBIAN:
            raise ConfigError(
                f"solver=laplace holds the generator's Jacobian, {size} latents × {pixels} image elements, over "
                f"its limit of {MAX_JACOBIAN} entries; use solver=langevin or solver=vi for images this large"
            )
        start = posterior.map_start(
            problem,
            y,
            seeds,
            steps=self.map_steps,
            lr=self.map_lr,
            progress=progress,
            total_steps=self.map_steps,
        )
        gens = posterior.generators(seeds, problem.device, DRAW_STREAM)
        images = torch.stack(
            [self._draws(problem, start, y, i, gens[i]) for i in range(len(seeds))], dim=1
        )  # [S, N, C, *spatial]
        summary = posterior.summarise(problem, images, y)
        ws = start.v.reshape(-1, *start.packing.ws_shape)
        return posterior.result(start, summary, dict(start.result.history), ws)

    def _draws(
        self, problem: Problem, start: posterior.Start, y: torch.Tensor, index: int, gen: torch.Generator
    ) -> torch.Tensor:
        """Item ``index``'s ``samples`` draws ``[S, C, *spatial]``."""
        held = posterior.Held(
            noises=None if start.held.noises is None else [t[index : index + 1] for t in start.held.noises],
            deviation=None if start.held.deviation is None else start.held.deviation[index : index + 1],
        )
        w = start.v[index].detach()
        item_y, sigma = y[index : index + 1], start.sigma[index : index + 1]

        def latents(v: torch.Tensor) -> Latents:
            return start.packing.latents(v[None], held)

        def render(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = problem.image(latents(v))
            return x, problem.forward_model(x)

        def data(pred: torch.Tensor) -> torch.Tensor:
            return torch.stack(list(problem.data_energies(pred, item_y, sigma).values())).sum()

        with torch.no_grad():
            x0, pred0 = render(w)
        grad_data = torch.func.grad(data)
        basis = self._basis(problem, w)
        images, predictions, curvatures = [], [], []
        for directions in basis.split(self.chunk):

            def column(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                _, (dx, dpred) = torch.func.jvp(render, (w,), (v,))
                _, curvature = torch.func.jvp(grad_data, (pred0,), (dpred,))  # ∇²ℓ·J_y v
                return dx.flatten(), _flat_real(dpred), _flat_real(curvature)

            dx, dy, curved = torch.func.vmap(column)(directions)
            images.append(dx)
            predictions.append(dy)
            curvatures.append(curved)
        jac = torch.cat(images)  # [D, pixels]: row k is J·basis[k]
        gauss_newton = torch.cat(predictions).double() @ torch.cat(curvatures).double().T  # J_yᵀ ∇²ℓ J_y
        hessian = gauss_newton + self._prior_hessian(problem, latents, w, basis)
        hessian = 0.5 * (hessian + hessian.T)
        cholesky = torch.linalg.cholesky(hessian)
        xi = torch.randn(len(basis), self.samples, generator=gen, device=w.device, dtype=torch.float64)
        delta = torch.linalg.solve_triangular(cholesky.T, xi, upper=True).T  # [S, D], covariance H⁻¹
        return (
            (x0.flatten().double() + delta @ jac.double()).float().reshape(self.samples, *problem.image_shape)
        )

    def _basis(self, problem: Problem, w: torch.Tensor) -> torch.Tensor:
        """``[D, P]``: the latent directions the posterior spans (rows), see :attr:`directions`."""
        G = problem.generator
        groups = G.num_ws if self.groups == 0 else min(self.groups, G.num_ws)
        member = torch.arange(G.num_ws, device=w.device) * groups // G.num_ws  # [num_ws]: each layer's group
        onehot = (member[None] == torch.arange(groups, device=w.device)[:, None]).to(
            w.dtype
        )  # [groups, num_ws]
        eye = torch.eye(G.w_dim, device=w.device, dtype=w.dtype)
        return torch.einsum("gl,cd->gcld", onehot, eye).reshape(groups * G.w_dim, G.num_ws * G.w_dim)

    @staticmethod
    def _prior_hessian(
        problem: Problem, latents: Callable[[torch.Tensor], Latents], w: torch.Tensor, basis: torch.Tensor
    ) -> torch.Tensor:
        """The exact Hessian ``[D, D]`` (float64) along ``basis [D, P]`` of the priors that depend on the latents
        alone."""

        def energy(delta: torch.Tensor) -> torch.Tensor:
            lat = latents(w + delta @ basis)
            total = torch.zeros((), dtype=w.dtype, device=w.device)
            for prior in problem.priors:
                if not prior.uses_image and not prior.needs_deviation and not prior.needs_noise:
                    total = total + prior.weight * prior.energy(lat).sum()
            return total

        return torch.func.hessian(energy)(torch.zeros(len(basis), dtype=w.dtype, device=w.device)).double()


def _flat_real(t: torch.Tensor) -> torch.Tensor:
    """A measurement ``[1, ...]`` (real or complex) as one real vector."""
    return (torch.view_as_real(t) if t.is_complex() else t).flatten()
