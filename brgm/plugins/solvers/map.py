"""MAP reconstruction: Adam over W+ latents under a learning-rate schedule.

When the problem has an image-space deviation (``prior=...+deviation``), the solve ends with the deviation's exact
minimisation given the final latents (:meth:`~brgm.core.terms.Prior.minimise_deviation`), and ``Result.generated``
is the generator's own image. By default (``deviation_lr=0``) the solve is staged: Adam fits the latents alone (the
deviation at 0 and its prior left out) and the deviation only explains what they leave. Leaving the prior in,
its share on the image's TV (``prior.deviation.image_share``) falls on the generator's image and smooths it where
σ is large (2 dB lost on noiseless ×8 super-resolution of the training slices of ``demo-brain64``); optimising both
jointly lets the generator's image drift while the deviation absorbs the misfit, which on the same slices cost 0.5
to 0.7 dB on k-space ×4 (``docs/defaults.md``). ``deviation_lr > 0`` optimises it jointly, which a forward model
without an exact solve (a nonlinear one) needs.

The schedule ``"brgm"`` is BRGM-TF's (and NVIDIA's projector's): a linear ramp-up over the first ``rampup``
fraction of the steps and a cosine ramp-down over the last ``rampdown`` fraction,

    lr(t) = lr · min(1, t / rampup) · (0.5 − 0.5·cos(π · min(1, (1 − t) / rampdown))),   t = step / steps,

and ``"constant"`` is BRGM-PyTorch's. Latents start at the mean of ``w`` (from ``G.w_stats``) tiled over the
``num_ws`` layers, optionally plus BRGM-TF's single scalar jitter ``N(0, (init_jitter·σ)²)`` per image.

The default peak ``lr`` is 0.02, a fifth of BRGM's and the projector's 0.1 (which the BRGM presets keep): on the
training slices of ``demo-brain64`` it gained 0.1 to 3.1 dB on every task but Gaussian blur (which lost 0.1 dB),
the latents staying nearer the prior's mass instead of overfitting the measurement (``docs/defaults.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch

from brgm.core.errors import NonFiniteEnergyError
from brgm.core.params import interval, one_of, to_tuple
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver, diverged
from brgm.core.terms import Latents


def _betas(value: object) -> tuple[float, float]:
    betas = to_tuple(float)(value)
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers, got {value!r}")
    return betas  # type: ignore[return-value]


@attrs.define(kw_only=True, eq=False)
class MAPSolver(Solver):
    """Maximum a posteriori: Adam over W+ for a fixed number of steps under a learning-rate schedule."""

    name: ClassVar[str] = "map"
    steps: int = attrs.field(default=500, converter=int, validator=interval(1, 1_000_000))
    lr: float = attrs.field(default=0.02, converter=float, validator=interval(0, open_lo=True))
    schedule: str = attrs.field(default="brgm", validator=one_of(("brgm", "constant")))
    rampup: float = attrs.field(default=0.05, converter=float, validator=interval(0, 1, open_hi=True))
    rampdown: float = attrs.field(default=0.25, converter=float, validator=interval(0, 1))
    betas: tuple[float, float] = attrs.field(
        default=(0.9, 0.999), converter=_betas, validator=interval(0, 1, open_hi=True)
    )
    eps: float = attrs.field(default=1e-8, converter=float, validator=interval(0, open_lo=True))
    init_jitter: float = attrs.field(default=0.0, converter=float, validator=interval(0))
    #: peak learning rate of the image-space deviation (intensity units per step) in Adam; 0: the deviation stays 0
    #: during Adam and is only solved for exactly at the end (see the module docstring)
    deviation_lr: float = attrs.field(default=0.0, converter=float, validator=interval(0))

    def learning_rate(self, step: int) -> float:
        """The learning rate of ``step`` (0-based) under ``schedule``."""
        if self.schedule == "constant":
            return self.lr
        t = step / self.steps
        ramp = 1.0
        if self.rampdown > 0:
            ramp = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / self.rampdown))
        if self.rampup > 0:
            ramp *= min(1.0, t / self.rampup)
        return self.lr * ramp

    def divergence_advice(self) -> str:
        return f"try a smaller solver.lr (now {self.lr:g})"

    def initial_latents(self, problem: Problem, seeds: Sequence[int]) -> torch.Tensor:
        """``[len(seeds), num_ws, w_dim]``: the mean ``w`` tiled, plus each item's jitter drawn from its seed."""
        G = problem.generator
        mean, std = G.w_stats()
        ws = mean.to(problem.device, torch.float32).reshape(1, 1, -1).repeat(len(seeds), G.num_ws, 1)
        if self.init_jitter > 0:
            draws = [torch.randn(1, 1, generator=torch.Generator().manual_seed(s)) for s in seeds]
            jitter = torch.stack(draws) * (self.init_jitter * float(std))
            ws = ws + jitter.to(ws.device)
        return ws

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        ws = self.initial_latents(problem, seeds).requires_grad_(True)
        noises = None
        if problem.optimises_noise:
            noises = [
                n.to(problem.device).requires_grad_(True) for n in problem.generator.noise_inputs(len(y))
            ]
        deviation = None
        groups: list[dict] = [{"params": [ws, *(noises or [])], "scale": 1.0}]
        if problem.optimises_deviation:
            deviation = torch.zeros(len(y), *problem.image_shape, device=problem.device)
            if self.deviation_lr > 0:
                groups.append(
                    {"params": [deviation.requires_grad_(True)], "scale": self.deviation_lr / self.lr}
                )
        latents = Latents(ws=ws, noises=noises, deviation=deviation)
        sigma = problem.energy_sigma(y, problem.noise_level(y))
        optimizer = torch.optim.Adam(groups, lr=self.lr, betas=self.betas, eps=self.eps)
        staged = self.deviation_lr == 0  # Adam fits the latents alone; the exact solve then the deviation
        names = [*problem.terms(deviation=not staged), "total"]
        record = torch.empty(len(names), self.steps, y.shape[0], dtype=torch.float64)
        lrs = torch.empty(self.steps, dtype=torch.float64)
        for step in range(self.steps):
            lr = self.learning_rate(step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            _, terms = problem.energies(latents, y, sigma, deviation=not staged)
            total = torch.stack(list(terms.values())).sum(dim=0)
            energies = torch.stack([*terms.values(), total]).detach().double().cpu()
            if not torch.isfinite(energies).all():
                bad = [
                    n for n, e in zip(names[:-1], energies[:-1], strict=True) if not torch.isfinite(e).all()
                ]
                raise NonFiniteEnergyError(self._non_finite_message(problem, latents, y, sigma, step, bad))
            record[:, step] = energies
            lrs[step] = lr
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            optimizer.step()
            if noises is not None:
                normalise_noises(noises)
            if progress is not None:
                progress(
                    step + 1, self.steps, {n: float(e.sum()) for n, e in zip(names, energies, strict=True)}
                )
        generated = None
        with torch.no_grad():
            if deviation is not None:
                base = problem.image(Latents(ws=ws, noises=noises))
                for prior in problem.priors:
                    if prior.needs_deviation:
                        exact = prior.minimise_deviation(problem.forward_model, base, y, sigma, deviation)
                        deviation = deviation if exact is None else exact
                latents = Latents(ws=ws, noises=noises, deviation=deviation)
                generated = base.clamp(0, 1).float().cpu()
            image = problem.image(latents).clamp(0, 1).float().cpu()
        history = {name: record[i] for i, name in enumerate(names)}
        history["lr"] = lrs
        return Result(
            image=image,
            ws=ws.detach().cpu(),
            history=history,
            diverged=diverged(history["total"]),
            noises=None if noises is None else [n.detach().cpu() for n in noises],
            generated=generated,
        )

    def _non_finite_message(
        self,
        problem: Problem,
        latents: Latents,
        y: torch.Tensor,
        sigma: torch.Tensor,
        step: int,
        bad: list[str],
    ) -> str:
        """Why the energy is non-finite: after step 0 the optimiser; at step 0 a weight or the input's scale."""
        where = f"the energy became non-finite at step {step} of {self.steps} (terms: {', '.join(bad)})"
        if step > 0:
            return f"{where}; try a smaller solver.lr (now {self.lr:g}) or smaller term weights"
        with torch.no_grad():
            x, raw = problem.energies(latents, y, sigma, weighted=False)
        if not torch.isfinite(x).all():
            return f"{where}: the generator's output is non-finite at the initial latents (its weights?)"
        terms = problem.terms()
        causes = []
        for key in bad:
            if torch.isfinite(raw[key]).all():
                causes.append(
                    f"{key}.weight={terms[key].weight:g} times an energy of {raw[key].abs().max():.3g}"
                )
            else:
                causes.append(
                    f"{key} itself, on a measurement whose largest magnitude is {y.abs().max():.3g}"
                )
        return (
            f"{where}: it overflows at the starting point, from {'; '.join(causes)}; lower the weight, or check "
            "the input's intensity scale and the forward model's settings (such as a noise sigma)"
        )


@torch.no_grad()
def normalise_noises(noises: list[torch.Tensor]) -> None:
    """Shift and scale each item's noise maps ``[N, 1, *shape]`` in place to zero mean and unit variance (the
    projector's rule, which keeps optimised noise from absorbing image content through its scale)."""
    for noise in noises:
        dims = tuple(range(1, noise.ndim))
        noise.sub_(noise.mean(dim=dims, keepdim=True))
        noise.mul_(noise.square().mean(dim=dims, keepdim=True).rsqrt())
