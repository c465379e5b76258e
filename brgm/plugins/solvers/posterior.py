"""What the posterior samplers share: the MAP start, the unknowns as one flat vector, a diagonal preconditioner,
and the summary of posterior draws as mean, standard deviation and samples.

The unknowns are the W+ latents and, when the problem has one (``prior=...+deviation``), the image-space
deviation; the samplers draw from ``p(unknowns | y) ∝ exp(−E)`` with ``E`` the problem's total energy
(:meth:`~brgm.core.problem.Problem.energies`). Optimised noise inputs (``prior=...+noise_reg``) are held at their
MAP values: the samplers condition on them.

Data consistency (:mod:`brgm.core.consistency`): when the problem's execution refines results
(``solver.consistency``, ``auto`` for k-space and masks), every posterior draw is refined, and the mean and the
standard deviation are those of the refined draws (``Result.generated`` is then the mean of the unrefined ones).
:func:`~brgm.core.reconstruct.reconstruct` then refines the mean once more, which changes it little: it agrees with
the measurement to within the noise already.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch

from brgm.core.consistency import consistent
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result
from brgm.core.terms import Latents
from brgm.plugins.solvers.map import MAPSolver

#: separates the random streams of one item's seed (a large odd constant, the golden ratio's bits)
STREAM_STRIDE = 0x9E3779B97F4A7C15


def generators(seeds: Sequence[int], device: torch.device, stream: int) -> list[torch.Generator]:
    """One random generator per item on ``device``, seeded from the item's seed and a ``stream`` number, so that
    an item's draws never depend on the rest of its batch."""
    return [torch.Generator(device=device).manual_seed((s + stream * STREAM_STRIDE) % 2**63) for s in seeds]


def randn(
    gens: Sequence[torch.Generator], lanes: int, shape: Sequence[int], device: torch.device
) -> torch.Tensor:
    """``[len(gens)·lanes, *shape]`` standard normal draws, item-major (``lanes`` per item, each from its own
    generator)."""
    return torch.cat([torch.randn(lanes, *shape, generator=g, device=device) for g in gens])


def rand(gens: Sequence[torch.Generator], lanes: int, device: torch.device) -> torch.Tensor:
    """``[len(gens)·lanes]`` uniform draws in [0, 1), item-major."""
    return torch.cat([torch.rand(lanes, generator=g, device=device) for g in gens])


@attrs.frozen
class Packing:
    """The unknowns of one lane as a flat vector ``[P]``: ``ws [num_ws, w_dim]`` then ``deviation [C, *spatial]``
    when there is one; ``noises`` (per item, held fixed) come with :meth:`latents`."""

    ws_shape: tuple[int, ...]
    deviation_shape: tuple[int, ...] | None

    @property
    def ws_size(self) -> int:
        return int(torch.Size(self.ws_shape).numel())

    def pack(self, ws: torch.Tensor, deviation: torch.Tensor | None) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` and ``deviation [B, C, *spatial]`` or None -> ``[B, P]``."""
        parts = [ws.flatten(1)] + ([] if deviation is None else [deviation.flatten(1)])
        return torch.cat(parts, dim=1)

    def latents(self, v: torch.Tensor, noises: list[torch.Tensor] | None) -> Latents:
        """``[B, P]`` -> the latents of the ``B`` lanes (``noises`` already repeated per lane)."""
        ws = v[:, : self.ws_size].reshape(-1, *self.ws_shape)
        deviation = None
        if self.deviation_shape is not None:
            deviation = v[:, self.ws_size :].reshape(-1, *self.deviation_shape)
        return Latents(ws=ws, noises=noises, deviation=deviation)


@attrs.define(kw_only=True, eq=False)
class Start:
    """The MAP solution the samplers start from, for ``N`` items.

    Attributes:
        result: the MAP solver's result (its history opens the sampler's).
        packing: how the unknowns are laid out.
        v: the MAP unknowns ``[N, P]`` on the problem's device.
        noises: the MAP noise inputs on the device (held fixed), or None.
        sigma: the data term's noise level ``[N]`` (:meth:`~brgm.core.problem.Problem.energy_sigma`).
        prior_scale: ``[P]``, the prior's scale of each unknown: the latents' RMS spread ``σ_w`` from
            ``G.w_stats()``, 1 (the intensity range) for the deviation.
    """

    result: Result
    packing: Packing
    v: torch.Tensor
    noises: list[torch.Tensor] | None
    sigma: torch.Tensor
    prior_scale: torch.Tensor


def map_start(
    problem: Problem,
    y: torch.Tensor,
    seeds: Sequence[int],
    *,
    steps: int,
    lr: float,
    progress: Progress | None,
    total_steps: int,
) -> Start:
    """Solve the MAP problem (:class:`MAPSolver` with ``steps`` and ``lr``) and lay out its solution; ``progress``
    sees its steps out of ``total_steps`` (the MAP's and the sampler's)."""

    def forward(step: int, _: int, energies: dict[str, float]) -> None:
        if progress is not None:
            progress(step, total_steps, energies)

    result = MAPSolver(steps=steps, lr=lr).solve(problem, y, seeds=seeds, progress=forward)
    device = problem.device
    ws = result.ws.to(device)
    noises = None if result.noises is None else [n.to(device) for n in result.noises]
    deviation = None
    if problem.optimises_deviation:  # the MAP image less the generator's own (clamping makes it approximate)
        with torch.no_grad():
            deviation = result.image.to(device) - problem.image(Latents(ws=ws, noises=noises))
    packing = Packing(tuple(ws.shape[1:]), None if deviation is None else problem.image_shape)
    _, w_std = problem.generator.w_stats()
    scale = torch.ones(
        packing.pack(ws[:1], None if deviation is None else deviation[:1]).shape[1], device=device
    )
    scale[: packing.ws_size] = float(w_std)
    sigma = problem.energy_sigma(y, problem.noise_level(y))
    return Start(
        result=result,
        packing=packing,
        v=packing.pack(ws, deviation),
        noises=noises,
        sigma=sigma,
        prior_scale=scale,
    )


def repeat(t: torch.Tensor | None, lanes: int) -> torch.Tensor | None:
    """Each item of ``t [N, ...]`` repeated ``lanes`` times, item-major ``[N·lanes, ...]``."""
    return None if t is None else t.repeat_interleave(lanes, dim=0)


def energy_and_gradient(
    problem: Problem,
    packing: Packing,
    v: torch.Tensor,
    y: torch.Tensor,
    sigma: torch.Tensor,
    noises: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The energy of lanes ``v [B, P]`` (``y``, ``sigma`` and ``noises`` per lane): (total ``[B]``, each term
    ``[B]``, images ``[B, C, *spatial]``, gradient ``[B, P]``), all detached."""
    with torch.enable_grad():
        v = v.detach().requires_grad_(True)
        x, terms = problem.energies(packing.latents(v, noises), y, sigma)
        total = torch.stack(list(terms.values())).sum(dim=0)
        (gradient,) = torch.autograd.grad(total.sum(), v)
    return total.detach(), {k: t.detach() for k, t in terms.items()}, x.detach(), gradient


def preconditioner(
    problem: Problem, start: Start, y: torch.Tensor, gens: Sequence[torch.Generator], probes: int
) -> torch.Tensor:
    """``[N, P]``: a diagonal posterior variance at the MAP, ``1 / (F + 1/s²)`` with ``s`` the prior scale and
    ``F`` the diagonal of the data terms' Gauss-Newton (Fisher) matrix ``JᵀAᵀAJ / σ²``, estimated from ``probes``
    random measurements per item: for ``y' = A(x) + σz``, ``z ~ N(0, I)`` (real and imaginary parts each), the
    data terms' gradient ``g`` at the MAP has ``E[g²] = F``."""
    device = problem.device
    n = len(start.sigma)
    v = repeat(start.v, probes)
    sigma = repeat(start.sigma, probes)
    noises = None if start.noises is None else [repeat(t, probes) for t in start.noises]
    with torch.no_grad():
        pred = problem.forward_model(problem.image(start.packing.latents(v, noises)))
    z = randn(gens, probes, pred.shape[1:], device)
    if pred.is_complex():
        z = torch.complex(z, randn(gens, probes, pred.shape[1:], device)).to(pred.dtype)
    probe_y = pred + sigma.reshape(-1, *(1,) * (pred.ndim - 1)) * z
    with torch.enable_grad():
        w = v.detach().requires_grad_(True)
        _, terms = problem.energies(start.packing.latents(w, noises), probe_y, sigma)
        data = torch.stack([t for k, t in terms.items() if k.startswith("like.")]).sum()
        (gradient,) = torch.autograd.grad(data, w)
    fisher = gradient.square().reshape(n, probes, -1).mean(dim=1)
    return 1 / (fisher + start.prior_scale.square().reciprocal())


@attrs.frozen
class Summary:
    """Posterior draws summarised, on the CPU in float32, intensities clamped to [0, 1].

    Attributes:
        mean: ``[N, C, *spatial]``, the mean of the draws (refined for data consistency when the problem refines).
        std: ``[N, C, *spatial]``, their standard deviation (Bessel's correction).
        samples: ``[S, N, C, *spatial]``, the draws.
        generated: the mean of the generator's own draws when they were refined, else None.
    """

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    generated: torch.Tensor | None


def summarise(problem: Problem, images: torch.Tensor, y: torch.Tensor) -> Summary:
    """Posterior draws ``images [S, N, C, *spatial]`` (``S ≥ 2``) of measurements ``y`` -> their summary, each
    draw refined for data consistency when the problem's execution refines results (see the module docstring)."""
    s = images.shape[0]
    generated = None
    if problem.execution.refines(problem.forward_model, y.shape):
        generated = images.clamp(0, 1).double().mean(dim=0).float().cpu()
        sigma = problem.noise_level(y).repeat(s)
        flat = consistent(
            problem.forward_model, images.flatten(0, 1), y.repeat(s, *(1,) * (y.ndim - 1)), sigma
        )
        images = flat.reshape(images.shape)
    draws = images.clamp(0, 1).double()
    return Summary(
        mean=draws.mean(dim=0).float().cpu(),
        std=draws.std(dim=0).float().cpu(),
        samples=draws.float().cpu(),
        generated=generated,
    )


def history_with_start(start: Result, phase: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The MAP start's per-term energies followed by the sampler's (``[map steps + steps, N]``; NaN over the start
    for a term it left out, such as the deviation prior of a staged MAP solve), and the sampler's other records as
    they are."""
    history = dict(phase)
    start_steps = start.history["total"].shape[0]
    for key, values in phase.items():
        if key.startswith(("like.", "prior.")) or key == "total":
            before = start.history.get(key)
            if before is None:
                before = torch.full((start_steps, *values.shape[1:]), float("nan"), dtype=values.dtype)
            history[key] = torch.cat([before, values])
    return history
