"""What the posterior samplers share: the MAP start, the unknowns as one flat vector, a diagonal preconditioner,
and the summary of posterior draws as mean, standard deviation and samples.

The unknowns are the W+ latents; the samplers draw from ``p(w | y, d*, n*) ∝ exp(−E)`` with ``E`` the problem's
total energy (:meth:`~brgm.core.problem.Problem.energies`). The image-space deviation (``prior=...+deviation``)
and optimised noise inputs (``prior=...+noise_reg``) are held at their MAP values ``d*``, ``n*``: the samplers
condition on them. (Sampling the deviation too, 4096 more unknowns under a total-variation prior, left MALA
rejecting every proposal on masks: the draws were the MAP image repeated, with a standard deviation of exactly
0.)

Data consistency (:mod:`brgm.core.consistency`): when the problem's execution refines results
(``solver.consistency``, ``auto`` for k-space and masks), every posterior draw is refined, and the mean and the
standard deviation are those of the refined draws (``Result.generated`` is then the mean of the unrefined ones);
:func:`~brgm.core.reconstruct.reconstruct` leaves the mean as it is, so that it stays the mean of the samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch

from brgm.core.consistency import consistent
from brgm.core.problem import Problem
from brgm.core.solver import Progress, Result, diverged
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
class Held:
    """The unknowns the samplers hold at their MAP values, per lane: the noise inputs and the image-space
    deviation ``[B, C, *spatial]`` (each None when the problem has none)."""

    noises: list[torch.Tensor] | None
    deviation: torch.Tensor | None

    def repeat(self, lanes: int) -> Held:
        """Each item's values repeated ``lanes`` times, item-major."""
        noises = None if self.noises is None else [repeat(t, lanes) for t in self.noises]
        return Held(noises=noises, deviation=repeat(self.deviation, lanes))


@attrs.frozen
class Packing:
    """The unknowns of one lane, the W+ latents ``[num_ws, w_dim]``, as a flat vector ``[P]``."""

    ws_shape: tuple[int, ...]

    @property
    def ws_size(self) -> int:
        return int(torch.Size(self.ws_shape).numel())

    def latents(self, v: torch.Tensor, held: Held) -> Latents:
        """``[B, P]`` and the held unknowns of the ``B`` lanes -> their latents."""
        return Latents(ws=v.reshape(-1, *self.ws_shape), noises=held.noises, deviation=held.deviation)


@attrs.define(kw_only=True, eq=False)
class Start:
    """The MAP solution the samplers start from, for ``N`` items.

    Attributes:
        result: the MAP solver's result (its history opens the sampler's).
        packing: how the unknowns are laid out.
        v: the MAP latents ``[N, P]`` on the problem's device.
        held: the MAP noise inputs and deviation of the ``N`` items on the device (held fixed).
        sigma: the data term's noise level ``[N]`` (:meth:`~brgm.core.problem.Problem.energy_sigma`).
        prior_scale: the prior's scale of each latent, their RMS spread ``σ_w`` from ``G.w_stats()``.
    """

    result: Result
    packing: Packing
    v: torch.Tensor
    held: Held
    sigma: torch.Tensor
    prior_scale: float


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
    _, w_std = problem.generator.w_stats()
    return Start(
        result=result,
        packing=Packing(tuple(ws.shape[1:])),
        v=ws.flatten(1),
        held=Held(noises=noises, deviation=deviation),
        sigma=problem.energy_sigma(y, problem.noise_level(y)),
        prior_scale=float(w_std),
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
    held: Held,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The energy of lanes ``v [B, P]`` (``y``, ``sigma`` and ``held`` per lane): (total ``[B]``, each term
    ``[B]``, images ``[B, C, *spatial]``, gradient ``[B, P]``), all detached."""
    with torch.enable_grad():
        v = v.detach().requires_grad_(True)
        x, terms = problem.energies(packing.latents(v, held), y, sigma)
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
    held = start.held.repeat(probes)
    with torch.no_grad():
        pred = problem.forward_model(problem.image(start.packing.latents(v, held)))
    z = randn(gens, probes, pred.shape[1:], device)
    if pred.is_complex():
        z = torch.complex(z, randn(gens, probes, pred.shape[1:], device)).to(pred.dtype)
    probe_y = pred + sigma.reshape(-1, *(1,) * (pred.ndim - 1)) * z
    with torch.enable_grad():
        w = v.detach().requires_grad_(True)
        _, terms = problem.energies(start.packing.latents(w, held), probe_y, sigma)
        data = torch.stack([t for k, t in terms.items() if k.startswith("like.")]).sum()
        (gradient,) = torch.autograd.grad(data, w)
    fisher = gradient.square().reshape(n, probes, -1).mean(dim=1)
    return 1 / (fisher + start.prior_scale**-2)


@attrs.frozen
class Summary:
    """Posterior draws summarised, on the CPU in float32, intensities clamped to [0, 1].

    Attributes:
        mean: ``[N, C, *spatial]``, the mean of the draws (refined for data consistency when the problem refines).
        std: ``[N, C, *spatial]``, their standard deviation (Bessel's correction).
        samples: ``[S, N, C, *spatial]``, the draws.
        generated: the mean of the generator's own draws when they were refined, else None.
        collapsed: ``[N]`` bool, True where an item's draws were all the same image before the consistency step
            (the sampler never moved: a std of 0 there is no statement about the posterior).
    """

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    generated: torch.Tensor | None
    collapsed: torch.Tensor


def summarise(problem: Problem, images: torch.Tensor, y: torch.Tensor) -> Summary:
    """Posterior draws ``images [S, N, C, *spatial]`` (``S ≥ 2``) of measurements ``y`` -> their summary, each
    draw refined for data consistency when the problem's execution refines results (see the module docstring)."""
    s = images.shape[0]
    collapsed = (images == images[:1]).flatten(2).all(dim=2).all(dim=0).cpu()
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
        collapsed=collapsed,
    )


def result(start: Start, summary: Summary, history: dict[str, torch.Tensor], ws: torch.Tensor) -> Result:
    """A sampler's :class:`Result` from its start, its draws' summary, its history (to which ``"collapsed"``
    ``[1, N]``, 1 where the draws were all one image, is added) and its latents ``ws [N, num_ws, w_dim]``."""
    history = {**history, "collapsed": summary.collapsed.double()[None]}
    return Result(
        image=summary.mean,
        ws=ws.cpu(),
        history=history,
        diverged=diverged(history["total"]),
        noises=start.result.noises,
        std=summary.std,
        samples=summary.samples,
        generated=summary.generated,
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
