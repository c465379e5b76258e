"""Posterior sampling by preconditioned, Metropolis-adjusted Langevin dynamics (MALA) in the latent space.

The chains sample ``p(v | y) ∝ exp(−E(v))``, ``v`` the W+ latents (the image-space deviation and noise inputs held
at their MAP values; see :mod:`brgm.plugins.solvers.posterior`) and ``E`` the problem's calibrated energy. From
the MAP solution (:class:`~brgm.plugins.solvers.map.MAPSolver`, ``map_steps`` steps), ``chains`` chains per item
run as one batch; each step proposes

    v' = v − (ε²/2)·M·∇E(v) + ε·√M·ξ,   ξ ~ N(0, I),

with ``M`` a fixed diagonal preconditioner (the Laplace-like variance of
:func:`~brgm.plugins.solvers.posterior.preconditioner`) and accepts it with probability
``min(1, exp(E(v) − E(v') + log q(v | v') − log q(v' | v)))``, so the chains leave the posterior exactly invariant.
During the first ``warmup`` fraction of the steps each chain's ``log ε`` follows the Robbins-Monro rule
``log ε += (α − target_accept) / (t + 1)^0.6`` toward the acceptance rate ``target_accept`` (0.574 is MALA's
optimum); then ε is frozen and the draws are kept, ``samples / chains`` per chain, evenly spaced over the rest.

``Result.history``: the MAP's and then the chains' mean energies per step, ``"acceptance"`` and ``"step_size"``
per sampling step ``[steps, N]``, and ``"rhat"`` and ``"ess"`` ``[1, N]``: the largest rank-normalised split R-hat
and the smallest bulk effective sample size over the latent coordinates after warm-up
(:mod:`brgm.core.diagnostics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch

from brgm.core.diagnostics import bulk_ess, split_rhat
from brgm.core.params import interval
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver
from brgm.plugins.solvers import posterior

#: the random streams of one item (see :func:`brgm.plugins.solvers.posterior.generators`)
PRECONDITIONER_STREAM, CHAIN_STREAM = 1, 2


@attrs.define(kw_only=True, eq=False)
class LangevinSolver(Solver):
    """Posterior sampling: preconditioned Metropolis-adjusted Langevin chains started from the MAP solution."""

    name: ClassVar[str] = "langevin"
    samples_posterior: ClassVar[bool] = True
    #: Langevin steps of every chain, warm-up included (300: 16 draws cost under 3× the default MAP solve on a CPU,
    #: benchmarks/bench_sampling.py)
    steps: int = attrs.field(default=300, converter=int, validator=interval(8, 1_000_000))
    #: the fraction of ``steps`` spent adapting the step size (its draws are discarded)
    warmup: float = attrs.field(default=0.45, converter=float, validator=interval(0, 1, open_hi=True))
    chains: int = attrs.field(default=4, converter=int, validator=interval(2, 1024))
    #: posterior draws kept per item (a multiple of ``chains``); the mean and std are theirs
    samples: int = attrs.field(default=16, converter=int, validator=interval(2, 100_000))
    #: the step size ε at the start of warm-up (in units of the preconditioner's standard deviations)
    step_size: float = attrs.field(default=0.5, converter=float, validator=interval(0, 10, open_lo=True))
    target_accept: float = attrs.field(
        default=0.574, converter=float, validator=interval(0, 1, open_lo=True, open_hi=True)
    )
    #: steps of the MAP solve the chains start from, and its learning rate
    map_steps: int = attrs.field(default=200, converter=int, validator=interval(1, 1_000_000))
    map_lr: float = attrs.field(default=0.1, converter=float, validator=interval(0, open_lo=True))
    #: random measurements estimating the preconditioner
    probes: int = attrs.field(default=4, converter=int, validator=interval(1, 1024))

    @samples.validator
    def _per_chain(self, attribute: attrs.Attribute, value: int) -> None:
        if value % self.chains:
            raise ValueError(f"samples must be a multiple of chains ({self.chains}), got {value}")
        length = self.steps - self.warmup_steps
        if value // self.chains > length:
            raise ValueError(
                f"samples={value} over chains={self.chains} keeps {value // self.chains} draws per chain, which "
                f"needs as many sampling steps after warm-up; steps={self.steps} with warmup={self.warmup:g} "
                f"leaves {length}: accepted samples up to {self.chains * length}, or more steps"
            )

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup * self.steps)

    @property
    def keep_steps(self) -> list[int]:
        """The steps (0-based) whose states are kept: the last of each of ``samples / chains`` equal blocks of
        the sampling steps."""
        start, per_chain = self.warmup_steps, self.samples // self.chains
        length = self.steps - start
        return [start + (length * (k + 1)) // per_chain - 1 for k in range(per_chain)]

    def divergence_advice(self) -> str:
        return f"try a smaller solver.map_lr (now {self.map_lr:g})"

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        keep = self.keep_steps
        device, chains, n = problem.device, self.chains, len(seeds)
        start = posterior.map_start(
            problem,
            y,
            seeds,
            steps=self.map_steps,
            lr=self.map_lr,
            progress=progress,
            total_steps=self.map_steps + self.steps,
        )
        mass = posterior.preconditioner(
            problem, start, y, posterior.generators(seeds, device, PRECONDITIONER_STREAM), self.probes
        )
        gens = posterior.generators(seeds, device, CHAIN_STREAM)
        lanes_y, sigma = posterior.repeat(y, chains), posterior.repeat(start.sigma, chains)
        held = start.held.repeat(chains)
        mass = posterior.repeat(mass, chains)
        root_mass = mass.sqrt()

        def evaluate(
            v: torch.Tensor,
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
            return posterior.energy_and_gradient(problem, start.packing, v, lanes_y, sigma, held)

        v = posterior.repeat(start.v, chains)
        energy, terms, image, gradient = evaluate(v)
        log_eps = torch.full((n * chains,), float(self.step_size), device=device).log()
        names = [*terms, "total"]
        record = torch.empty(len(names) + 2, self.steps, n * chains, device=device)
        trace = torch.empty(self.steps - self.warmup_steps, n * chains, start.packing.ws_size, device=device)
        kept = []
        for step in range(self.steps):
            eps = log_eps.exp()[:, None]
            noise = posterior.randn(gens, chains, v.shape[1:], device)
            proposal = v - 0.5 * eps.square() * mass * gradient + eps * root_mass * noise
            new_energy, new_terms, new_image, new_gradient = evaluate(proposal)
            back = (v - proposal + 0.5 * eps.square() * mass * new_gradient) / (eps * root_mass)
            log_ratio = energy - new_energy + 0.5 * (noise.square().sum(1) - back.square().sum(1))
            log_ratio = torch.nan_to_num(log_ratio, nan=-torch.inf)
            accept = posterior.rand(gens, chains, device).log() < log_ratio
            rate = log_ratio.clamp(max=0).exp()
            if step < self.warmup_steps:
                log_eps = log_eps + (rate - self.target_accept) / (step + 1) ** 0.6
            v = torch.where(accept[:, None], proposal, v)
            gradient = torch.where(accept[:, None], new_gradient, gradient)
            energy = torch.where(accept, new_energy, energy)
            image = torch.where(accept.reshape(-1, *(1,) * (image.ndim - 1)), new_image, image)
            terms = {k: torch.where(accept, new_terms[k], t) for k, t in terms.items()}
            record[:, step] = torch.stack([*terms.values(), energy, rate, log_eps.exp()])
            if step >= self.warmup_steps:
                trace[step - self.warmup_steps] = v
            if step in keep:
                kept.append(image.reshape(n, chains, *image.shape[1:]))
            if progress is not None:
                means = record[: len(names), step].reshape(len(names), n, chains).mean(2).sum(1).tolist()
                progress(
                    self.map_steps + step + 1,
                    self.map_steps + self.steps,
                    dict(zip(names, means, strict=True)),
                )
        per_item = record.reshape(len(record), self.steps, n, chains).double().cpu()
        phase = {name: per_item[i].mean(dim=2) for i, name in enumerate(names)}
        phase["acceptance"] = per_item[-2].mean(dim=2)
        phase["step_size"] = per_item[-1].mean(dim=2)
        draws = trace.reshape(len(trace), n, chains, -1).transpose(1, 2)  # [draws, chains, N, P]
        phase["rhat"] = split_rhat(draws).amax(dim=-1).cpu()[None]
        phase["ess"] = bulk_ess(draws).amin(dim=-1).cpu()[None]
        history = posterior.history_with_start(start.result, phase)
        images = torch.stack(kept, dim=2).flatten(1, 2).transpose(0, 1)  # [S, N, C, *spatial]
        summary = posterior.summarise(problem, images, y)
        ws = trace.reshape(len(trace), n, chains, *start.packing.ws_shape).mean(dim=(0, 2))
        return posterior.result(start, summary, history, ws)
