"""The solver contract: a solver minimises (or samples) a problem's energy for a batch of measurements.

Solvers are components registered through the ``register_solvers`` hook (the built-ins in
:mod:`brgm.plugins.solvers`) and chosen with ``solver=NAME``; their attrs fields are their settings
(``solver.KEY=VALUE``). What every solver shares (batch size, activation checkpointing, autocast) is one
:class:`~brgm.core.execution.Execution`, which :func:`~brgm.core.reconstruct.reconstruct` applies around the
solver: it splits the batch, switches the generator's memory options, and computes the baseline (the forward
model's naive inverse), which no solver does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch

from brgm.core.execution import Execution
from brgm.core.params import field_names, unknown_key
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
            set by :func:`~brgm.core.reconstruct.reconstruct` (solvers leave it None).
        generated: the generator's own image when ``image`` is not: when the solver added an image-space
            deviation, or :func:`~brgm.core.reconstruct.reconstruct` refined ``image`` for data consistency
            (:mod:`brgm.core.consistency`); else None.
        sigma: the measurement's noise level ``[N]`` (:meth:`~brgm.core.problem.Problem.noise_level`), set by
            :func:`~brgm.core.reconstruct.reconstruct`.
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


@attrs.define(kw_only=True, eq=False)
class Solver:
    """Base of every solver: an attrs class (its fields are the settings, named unlike the :class:`~brgm.core.execution.Execution`
    fields, which ``solver.KEY`` reaches first) with a ClassVar ``name`` and a one-line docstring, registered
    through the ``register_solvers`` hook."""

    name: ClassVar[str] = ""
    #: whether its results carry a posterior std (``Result.std``): a sampler, whose std can be calibrated
    samples_posterior: ClassVar[bool] = False

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
    """``solver.KEY`` values -> (the solver's fields, the :class:`~brgm.core.execution.Execution` fields); an unknown key is a
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
