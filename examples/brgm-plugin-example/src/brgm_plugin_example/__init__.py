"""An example brgm plugin: a forward model, a prior and a solver, registered through brgm's hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch

from brgm import hookimpl
from brgm.core.errors import ShapeError
from brgm.core.operators import LinearForwardModel, check_image_shape
from brgm.core.params import interval
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver, diverged
from brgm.core.terms import Latents, Prior

__version__ = "0.1.0"


@attrs.define(kw_only=True, eq=False)
class RowSkip(LinearForwardModel):
    """Keeps every ``step``-th image row (a line-skipping acquisition); missing rows are zero."""

    name: ClassVar[str] = "row_skip"
    step: int = attrs.field(default=2, converter=int, validator=interval(2, 64))

    def output_shape(self, shape):
        shape = check_image_shape(self, shape)
        if shape[-2] < self.step:
            raise ShapeError(f"row_skip: step {self.step} is larger than the {shape[-2]} rows")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros(x.shape[-2], 1, dtype=x.dtype, device=x.device)
        keep[:: self.step] = 1
        return x * keep

    adjoint = forward  # a diagonal 0/1 operator is self-adjoint
    naive_inverse = forward


@attrs.define(kw_only=True, eq=False)
class Sphere(Prior):
    """Keeps every W+ vector near the sphere of radius sqrt(w_dim) (PULSE's constraint as an energy)."""

    name: ClassVar[str] = "sphere"

    def energy(self, latents: Latents) -> torch.Tensor:
        ws = latents.ws
        radius = ws.norm(dim=-1) / ws.shape[-1] ** 0.5
        return (radius - 1).square().mean(dim=-1)


@attrs.define(kw_only=True, eq=False)
class GradientDescent(Solver):
    """Plain gradient descent on W+ from the mean latent, at a fixed step size."""

    name: ClassVar[str] = "gd"
    steps: int = attrs.field(default=100, converter=int, validator=interval(1, 100_000))
    lr: float = attrs.field(default=0.01, converter=float, validator=interval(0, open_lo=True))

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        G = problem.generator
        mean, _ = G.w_stats()
        ws = mean.to(problem.device).reshape(1, 1, -1).repeat(len(y), G.num_ws, 1).requires_grad_(True)
        totals = []
        for step in range(self.steps):
            _, terms = problem.energies(Latents(ws=ws), y)
            total = torch.stack(list(terms.values())).sum(dim=0)
            (grad,) = torch.autograd.grad(total.sum(), ws)
            with torch.no_grad():
                ws -= self.lr * grad
            totals.append(total.detach().double().cpu())
            if progress is not None:
                progress(step + 1, self.steps, {"total": float(total.sum())})
        with torch.no_grad():
            image = problem.image(Latents(ws=ws)).clamp(0, 1).float().cpu()
        history = {"total": torch.stack(totals)}
        return Result(image=image, ws=ws.detach().cpu(), history=history, diverged=diverged(history["total"]))


@hookimpl
def register_forward_models():
    return [RowSkip]


@hookimpl
def register_priors():
    return [Sphere]


@hookimpl
def register_solvers():
    return [GradientDescent]
