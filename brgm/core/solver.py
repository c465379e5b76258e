"""The solver contract: a solver minimises (or samples) a problem's energy for a batch of measurements.

Solvers are components registered through the ``register_solvers`` hook (the built-ins in
:mod:`brgm.plugins.solvers`) and chosen with ``solver=NAME``; their attrs fields are their settings
(``solver.KEY=VALUE``). What every solver shares (batch size, activation checkpointing, autocast) is one
:class:`Execution`, which :func:`reconstruct` applies around the solver: it splits the batch, switches the
generator's memory options, and computes the baseline (the forward model's naive inverse), which no solver does.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch

from brgm.core.consistency import consistent
from brgm.core.errors import CollapseWarning, DivergenceWarning, ShapeError
from brgm.core.generator import AUTOCAST_DTYPES, Generator
from brgm.core.operators import ForwardModel, is_linear
from brgm.core.params import build, check_seed, field_names, field_values, interval, one_of, unknown_key
from brgm.core.problem import Problem

#: called after each step with (step, steps, energies of the step as floats summed over the batch)
Progress = Callable[[int, int, dict[str, float]], None]


@attrs.define(kw_only=True, eq=False)
class Result:
    """What a reconstruction returns (tensors on the CPU, detached).

    Attributes:
        image: the reconstruction (MAP estimate or posterior mean) as intensities ``[N, C, *spatial]`` in [0, 1].
        ws: the W+ latents ``[N, num_ws, w_dim]`` (optimised, or the posterior mean's).
        history: per-step energies by term name, with ``"total"``: ``[steps, N]`` per item, or ``[steps]`` for
            what all items share (such as the MAP solver's ``"lr"``).
        diverged: ``[N]`` bool, True where the energy ended far above where it started (see :func:`diverged`).
        noises: the optimised noise inputs (``[N, 1, *shape]`` each) when the problem optimises them, else None;
            ``G.synthesis(ws, noises=noises)`` renders ``image`` again.
        std: a sampler's per-pixel posterior standard deviation, shaped like ``image``; else None.
        samples: a sampler's posterior samples ``[S, N, C, *spatial]``; else None.
        baseline: the forward model's naive inverse of the measurement ``[N, C, *spatial]`` (clamped to [0, 1]),
            set by :func:`reconstruct` (solvers leave it None).
        generated: the generator's own image when ``image`` is not: when the solver added an image-space
            deviation, or :func:`reconstruct` refined ``image`` for data consistency (:mod:`brgm.core.consistency`);
            else None.
        sigma: the measurement's noise level ``[N]`` (:meth:`~brgm.core.problem.Problem.noise_level`), set by
            :func:`reconstruct`.
    """

    image: torch.Tensor
    ws: torch.Tensor
    history: dict[str, torch.Tensor]
    diverged: torch.Tensor
    noises: list[torch.Tensor] | None = None
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    baseline: torch.Tensor | None = None
    generated: torch.Tensor | None = None
    sigma: torch.Tensor | None = None

    @classmethod
    def concat(cls, parts: Sequence[Result]) -> Result:
        """The results of consecutive batches as one (items in order)."""
        first = parts[0]

        def cat(name: str, dim: int = 0) -> torch.Tensor | None:
            tensors = [getattr(part, name) for part in parts]
            return None if tensors[0] is None else torch.cat(tensors, dim)

        history = {
            key: torch.cat([part.history[key] for part in parts], dim=1) if value.ndim == 2 else value
            for key, value in first.history.items()
        }
        noises = None
        if first.noises is not None:
            noises = [torch.cat(maps) for maps in zip(*(part.noises or [] for part in parts), strict=True)]
        return cls(
            image=torch.cat([part.image for part in parts]),
            ws=torch.cat([part.ws for part in parts]),
            history=history,
            diverged=torch.cat([part.diverged for part in parts]),
            noises=noises,
            std=cat("std"),
            samples=cat("samples", 1),
            baseline=cat("baseline"),
            generated=cat("generated"),
            sigma=cat("sigma"),
        )


#: a solve diverged when its final energy exceeds its first by more than this many times the first's magnitude
DIVERGENCE_FACTOR = 10.0


def diverged(total: torch.Tensor) -> torch.Tensor:
    """``[steps, N]`` total energies -> ``[N]`` bool: the last step's energy exceeds the first's by more than
    :data:`DIVERGENCE_FACTOR` times the first's magnitude (an optimiser that settles never ends there)."""
    start, end = total[0], total[-1]
    return end - start > DIVERGENCE_FACTOR * start.abs().clamp_min(torch.finfo(total.dtype).tiny)


@attrs.frozen(kw_only=True)
class Execution:
    """How any solver runs: ``solver.batch_size``, ``solver.checkpoint`` and ``solver.autocast`` on the command
    line, whichever solver is chosen (the solver's own fields are its other ``solver.KEY`` settings)."""

    #: measurements solved together; larger batches are split
    batch_size: int = attrs.field(default=8, converter=int, validator=interval(1, 4096))
    #: recompute the generator's activations in the backward pass instead of storing them
    checkpoint: bool = attrs.field(default=False, validator=one_of((False, True)))
    #: run synthesis under autocast: "none", "bf16" or "fp16"
    autocast: str = attrs.field(default="none", validator=one_of(tuple(AUTOCAST_DTYPES)))
    #: data consistency after the solve (:mod:`brgm.core.consistency`): "auto" for linear forward models that
    #: measure a subset (k-space, masks: the exact projection when noiseless), "refine" for every linear model
    #: (also downsampling and blur), "off"
    consistency: str = attrs.field(default="auto", validator=one_of(("auto", "refine", "off")))

    def refines(self, forward_model: ForwardModel, shape: Sequence[int]) -> bool:
        """Whether results of ``forward_model`` for measurements of ``shape`` are refined for consistency."""
        if self.consistency == "off" or not is_linear(forward_model):
            return False
        return self.consistency == "refine" or forward_model.measured(shape) is not None

    def memory(self, generator: Generator) -> contextlib.AbstractContextManager[None]:
        """A context in which ``generator`` runs with these memory settings."""
        return generator.memory_options(
            checkpoint=self.checkpoint, autocast_dtype=AUTOCAST_DTYPES[self.autocast]
        )


@attrs.define(kw_only=True, eq=False)
class Solver:
    """Base of every solver: an attrs class (its fields are the settings, named unlike the :class:`Execution`
    fields, which ``solver.KEY`` reaches first) with a ClassVar ``name`` and a one-line docstring, registered
    through the ``register_solvers`` hook."""

    name: ClassVar[str] = ""

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        """``y [N, *measurement]`` on the problem's device (checked, at most ``batch_size`` items) and one seed per
        item, its only source of randomness -> the result (``baseline`` left None)."""
        raise NotImplementedError

    def divergence_advice(self) -> str:
        """What to change when a solve diverged (ends the warning)."""
        return "try smaller term weights"


def split_options(
    solver: type[Solver], values: Mapping[str, Any], *, strict: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``solver.KEY`` values -> (the solver's fields, the :class:`Execution` fields); an unknown key is a
    :class:`~brgm.core.errors.ConfigError` with a did-you-mean (dropped instead when not ``strict``)."""
    own, shared = field_names(solver), field_names(Execution)
    fields: dict[str, Any] = {}
    execution: dict[str, Any] = {}
    for key, value in values.items():
        if key in shared:
            execution[key] = value
        elif key in own:
            fields[key] = value
        elif strict:
            raise unknown_key("solver", key, [*own, *shared])
    return fields, execution


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
