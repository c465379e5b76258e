"""Reconstruction: a problem's solver, or one named here, applied to a batch of measurements with the execution
settings every solver shares; the baseline, the noise level and data consistency added to its result."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from brgm.core.consistency import consistent
from brgm.core.errors import CollapseWarning, DivergenceWarning, ShapeError
from brgm.core.execution import Execution
from brgm.core.params import build, check_seed, field_values
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, Solver, split_options


def reconstruct(
    problem: Problem,
    y: torch.Tensor,
    *,
    steps: int | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    progress: Progress | None = None,
    solver: str | Solver | None = None,
    **solver_options: object,
) -> Result:
    """Reconstruct ``y`` (``[N, *measurement]`` or one measurement without the batch axis) with the problem's
    solver, or ``solver`` (a registered name or an instance), in batches of ``batch_size``, and add the baseline
    to the result.

    ``y`` may be a tensor or a numpy array. ``steps`` and ``solver_options`` (the solver's fields or the
    :class:`Execution` fields, values or their text) override the problem's settings (a solver named here starts
    from its defaults unless it is the problem's); an unknown option, a bad value or an out-of-range seed (an
    integer in [0, 2**63 − 1]) is a :class:`~brgm.core.errors.ConfigError`. Every item's randomness comes from its
    own seed: ``seeds`` (one per item) or else ``seed`` for all, so an item gives the same result alone or at any
    position of any batch.
    """
    if isinstance(solver, str):
        from brgm.core.plugins import registry

        cls = registry().get("solver", solver).obj
        solver = problem.solver if type(problem.solver) is cls else build(cls, {}, "solver")
    solver = solver or problem.solver
    options = dict(solver_options)
    if steps is not None:
        options["steps"] = steps
    fields, shared = split_options(type(solver), options)
    if fields:
        solver = build(type(solver), {**field_values(solver), **fields}, "solver")
    execution = problem.execution
    if shared:
        execution = build(Execution, {**field_values(execution), **shared}, "solver")
    y = problem.check_measurement(y).to(problem.device)
    seeds = [check_seed(s) for s in (seeds if seeds is not None else [seed] * y.shape[0])]
    if len(seeds) != y.shape[0]:
        raise ShapeError(f"got {len(seeds)} seed(s) for a batch of {y.shape[0]} measurement(s)")
    size = execution.batch_size
    with execution.memory(problem.generator):
        parts = [
            solver.solve(problem, y[i : i + size], seeds=seeds[i : i + size], progress=progress)
            for i in range(0, len(seeds), size)
        ]
    result = Result.concat(parts)
    with torch.no_grad():
        result.baseline = problem.baseline(y).clamp(0, 1).float().cpu()
        result.sigma = problem.noise_level(y).cpu()
    if result.samples is None and execution.refines(problem.forward_model, y.shape):
        # a sampler's mean is already that of its refined draws: refining it again would part it from them
        refined = consistent(problem.forward_model, result.image.to(y.device), y, result.sigma.to(y.device))
        if result.generated is None:
            result.generated = result.image
        result.image = refined.clamp(0, 1).cpu()
    if result.diverged.any():
        total = result.history["total"]
        items = ", ".join(
            f"item {i}: {total[0, i]:.4g} -> {total[-1, i]:.4g}"
            for i in result.diverged.nonzero()[:, 0].tolist()
        )
        warnings.warn(
            f"the energy ended far above where it started ({items}): the solve diverged; "
            f"{solver.divergence_advice()}",
            DivergenceWarning,
            stacklevel=2,
        )
    collapsed = result.history.get("collapsed")
    if collapsed is not None and collapsed.any():
        items = ", ".join(str(i) for i in collapsed[-1].nonzero()[:, 0].tolist())
        warnings.warn(
            f"the posterior draws of item(s) {items} are all the same image: the sampler never moved, so their "
            f"standard deviation (0) says nothing about the uncertainty; {solver.divergence_advice()}, or give "
            "the sampler more steps",
            CollapseWarning,
            stacklevel=2,
        )
    return result
