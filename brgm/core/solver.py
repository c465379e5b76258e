"""MAP reconstruction: Adam over W+ latents under a learning-rate schedule.

The schedule ``"brgm"`` is BRGM-TF's (and NVIDIA's projector's): a linear ramp-up over the first ``rampup``
fraction of the steps and a cosine ramp-down over the last ``rampdown`` fraction,

    lr(t) = lr · min(1, t / rampup) · (0.5 − 0.5·cos(π · min(1, (1 − t) / rampdown))),   t = step / steps,

and ``"constant"`` is BRGM-PyTorch's. Latents start at the mean of ``w`` (from ``G.w_stats``) tiled over the
``num_ws`` layers, optionally plus BRGM-TF's single scalar jitter ``N(0, (init_jitter·σ)²)`` per image.

``checkpoint`` and ``autocast`` trade compute or precision for memory during the solve (3D volumes): they are
applied to the generator through :meth:`~brgm.core.generator.Generator.memory_options`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import attrs
import torch

from brgm.core.errors import DivergenceWarning, NonFiniteEnergyError, ShapeError
from brgm.core.generator import AUTOCAST_DTYPES
from brgm.core.params import build, check_seed, interval, one_of, to_tuple
from brgm.core.problem import Problem
from brgm.core.terms import Latents

#: called after each step with (step, steps, energies of the step as floats summed over the batch)
Progress = Callable[[int, int, dict[str, float]], None]


def _betas(value: object) -> tuple[float, float]:
    betas = to_tuple(float)(value)
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers, got {value!r}")
    return betas  # type: ignore[return-value]


@attrs.define(kw_only=True)
class SolverConfig:
    """Settings of the MAP solver (``solver.KEY=VALUE`` on the command line)."""

    steps: int = attrs.field(default=500, converter=int, validator=interval(1, 1_000_000))
    lr: float = attrs.field(default=0.1, converter=float, validator=interval(0, open_lo=True))
    schedule: str = attrs.field(default="brgm", validator=one_of(("brgm", "constant")))
    rampup: float = attrs.field(default=0.05, converter=float, validator=interval(0, 1, open_hi=True))
    rampdown: float = attrs.field(default=0.25, converter=float, validator=interval(0, 1))
    betas: tuple[float, float] = attrs.field(
        default=(0.9, 0.999), converter=_betas, validator=interval(0, 1, open_hi=True)
    )
    eps: float = attrs.field(default=1e-8, converter=float, validator=interval(0, open_lo=True))
    init_jitter: float = attrs.field(default=0.0, converter=float, validator=interval(0))
    batch_size: int = attrs.field(default=8, converter=int, validator=interval(1, 4096))
    #: recompute the generator's activations in the backward pass instead of storing them
    checkpoint: bool = attrs.field(default=False, validator=one_of((False, True)))
    #: run synthesis under autocast: "none", "bf16" or "fp16"
    autocast: str = attrs.field(default="none", validator=one_of(tuple(AUTOCAST_DTYPES)))


def learning_rate(step: int, config: SolverConfig) -> float:
    """The learning rate of ``step`` (0-based) under ``config.schedule``."""
    if config.schedule == "constant":
        return config.lr
    t = step / config.steps
    ramp = 1.0
    if config.rampdown > 0:
        ramp = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / config.rampdown))
    if config.rampup > 0:
        ramp *= min(1.0, t / config.rampup)
    return config.lr * ramp


@attrs.define(kw_only=True, eq=False)
class Result:
    """What a reconstruction returns (tensors on the CPU, detached).

    Attributes:
        image: the reconstruction ``G(w*)`` as intensities ``[N, C, *spatial]`` in [0, 1] (clamped).
        ws: the optimised W+ latents ``[N, num_ws, w_dim]``.
        baseline: the forward model's naive inverse of the measurement, ``[N, C, *spatial]`` (clamped to [0, 1]).
        history: per-step energies ``[steps, N]`` by term name, with ``"total"`` and ``"lr"`` (``[steps]``).
        diverged: ``[N]`` bool, True where the energy ended far above where it started (see :func:`diverged`).
        noises: the optimised noise inputs (``[N, 1, *shape]`` each) when the problem optimises them, else None;
            ``G.synthesis(ws, noises=noises)`` renders ``image`` again.
    """

    image: torch.Tensor
    ws: torch.Tensor
    baseline: torch.Tensor
    history: dict[str, torch.Tensor]
    diverged: torch.Tensor
    noises: list[torch.Tensor] | None = None


#: a solve diverged when its final energy exceeds its first by more than this many times the first's magnitude
DIVERGENCE_FACTOR = 10.0


def diverged(total: torch.Tensor) -> torch.Tensor:
    """``[steps, N]`` total energies -> ``[N]`` bool: the last step's energy exceeds the first's by more than
    :data:`DIVERGENCE_FACTOR` times the first's magnitude (an optimiser that settles never ends there)."""
    start, end = total[0], total[-1]
    return end - start > DIVERGENCE_FACTOR * start.abs().clamp_min(torch.finfo(total.dtype).tiny)


def _non_finite_message(
    problem: Problem, latents: Latents, y: torch.Tensor, step: int, config: SolverConfig, bad: list[str]
) -> str:
    """Why the energy is non-finite: after step 0 the optimiser; at step 0 a weight or the input's scale."""
    where = f"the energy became non-finite at step {step} of {config.steps} (terms: {', '.join(bad)})"
    if step > 0:
        return f"{where}; try a smaller solver.lr (now {config.lr:g}) or smaller term weights"
    with torch.no_grad():
        x, raw = problem.energies(latents, y, weighted=False)
    if not torch.isfinite(x).all():
        return f"{where}: the generator's output is non-finite at the initial latents (its weights?)"
    terms = problem.terms()
    causes = []
    for key in bad:
        if torch.isfinite(raw[key]).all():
            causes.append(f"{key}.weight={terms[key].weight:g} times an energy of {raw[key].abs().max():.3g}")
        else:
            causes.append(f"{key} itself, on a measurement whose largest magnitude is {y.abs().max():.3g}")
    return (
        f"{where}: it overflows at the starting point, from {'; '.join(causes)}; lower the weight, or check "
        "the input's intensity scale and the forward model's settings (such as a noise sigma)"
    )


class Solver:
    """Minimises a problem's energy for a batch of measurements."""

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        """``y [N, *measurement]`` and one seed per item (its only source of randomness) -> the result."""
        raise NotImplementedError


@attrs.define
class MAPSolver(Solver):
    """Maximum a posteriori: Adam over W+ for a fixed number of steps."""

    config: SolverConfig = attrs.field(factory=SolverConfig)

    def initial_latents(self, problem: Problem, seeds: Sequence[int]) -> torch.Tensor:
        """``[len(seeds), num_ws, w_dim]``: the mean ``w`` tiled, plus each item's jitter drawn from its seed."""
        G = problem.generator
        mean, std = G.w_stats()
        ws = mean.to(problem.device, torch.float32).reshape(1, 1, -1).repeat(len(seeds), G.num_ws, 1)
        if self.config.init_jitter > 0:
            draws = [torch.randn(1, 1, generator=torch.Generator().manual_seed(s)) for s in seeds]
            jitter = torch.stack(draws) * (self.config.init_jitter * float(std))
            ws = ws + jitter.to(ws.device)
        return ws

    def solve(
        self, problem: Problem, y: torch.Tensor, *, seeds: Sequence[int], progress: Progress | None = None
    ) -> Result:
        cfg = self.config
        y = problem.check_measurement(y).to(problem.device)
        if len(seeds) != y.shape[0]:
            raise ShapeError(f"got {len(seeds)} seed(s) for a batch of {y.shape[0]} measurement(s)")
        images, latents, histories, noises = [], [], [], []
        memory = problem.generator.memory_options(
            checkpoint=cfg.checkpoint, autocast_dtype=AUTOCAST_DTYPES[cfg.autocast]
        )
        with memory:
            for start in range(0, y.shape[0], cfg.batch_size):
                chunk = y[start : start + cfg.batch_size]
                ws0 = self.initial_latents(problem, seeds[start : start + cfg.batch_size])
                image, chunk_latents, history = self._solve_chunk(problem, chunk, ws0, progress)
                images.append(image)
                latents.append(chunk_latents.ws)
                noises.append(chunk_latents.noises)
                histories.append(history)
        history = {k: torch.cat([h[k] for h in histories], dim=1) for k in histories[0] if k != "lr"}
        history["lr"] = histories[0]["lr"]
        with torch.no_grad():
            baseline = problem.baseline(y).clamp(0, 1).float().cpu()
        flags = diverged(history["total"])
        if flags.any():
            total = history["total"]
            items = ", ".join(
                f"item {i}: {total[0, i]:.4g} -> {total[-1, i]:.4g}" for i in flags.nonzero()[:, 0].tolist()
            )
            warnings.warn(
                f"the energy ended far above where it started ({items}): the solve diverged; "
                f"try a smaller solver.lr (now {cfg.lr:g})",
                DivergenceWarning,
                stacklevel=2,
            )
        return Result(
            image=torch.cat(images),
            ws=torch.cat(latents),
            baseline=baseline,
            history=history,
            diverged=flags,
            noises=None if noises[0] is None else [torch.cat(maps) for maps in zip(*noises, strict=True)],
        )

    def _solve_chunk(
        self, problem: Problem, y: torch.Tensor, ws0: torch.Tensor, progress: Progress | None
    ) -> tuple[torch.Tensor, Latents, dict[str, torch.Tensor]]:
        """Solve one batch: the images ``[n, C, *spatial]``, the final latents and the history (on the CPU)."""
        cfg = self.config
        ws = ws0.clone().requires_grad_(True)
        noises = None
        if problem.optimises_noise:
            noises = [
                n.to(problem.device).requires_grad_(True) for n in problem.generator.noise_inputs(len(y))
            ]
        latents = Latents(ws=ws, noises=noises)
        optimizer = torch.optim.Adam([ws, *(noises or [])], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        names = [*problem.terms(), "total"]
        record = torch.empty(len(names), cfg.steps, y.shape[0], dtype=torch.float64)
        lrs = torch.empty(cfg.steps, dtype=torch.float64)
        for step in range(cfg.steps):
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            _, terms = problem.energies(latents, y)
            total = torch.stack(list(terms.values())).sum(dim=0)
            energies = torch.stack([*terms.values(), total]).detach().double().cpu()
            if not torch.isfinite(energies).all():
                bad = [
                    n for n, e in zip(names[:-1], energies[:-1], strict=True) if not torch.isfinite(e).all()
                ]
                raise NonFiniteEnergyError(_non_finite_message(problem, latents, y, step, cfg, bad))
            record[:, step] = energies
            lrs[step] = lr
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            optimizer.step()
            if noises is not None:
                normalise_noises(noises)
            if progress is not None:
                progress(
                    step + 1, cfg.steps, {n: float(e.sum()) for n, e in zip(names, energies, strict=True)}
                )
        with torch.no_grad():
            image = problem.image(latents).clamp(0, 1).float().cpu()
        history = {name: record[i] for i, name in enumerate(names)}
        history["lr"] = lrs
        final = Latents(
            ws=ws.detach().cpu(), noises=None if noises is None else [n.detach().cpu() for n in noises]
        )
        return image, final, history


@torch.no_grad()
def normalise_noises(noises: list[torch.Tensor]) -> None:
    """Shift and scale each item's noise maps ``[N, 1, *shape]`` in place to zero mean and unit variance (the
    projector's rule, which keeps optimised noise from absorbing image content through its scale)."""
    for noise in noises:
        dims = tuple(range(1, noise.ndim))
        noise.sub_(noise.mean(dim=dims, keepdim=True))
        noise.mul_(noise.square().mean(dim=dims, keepdim=True).rsqrt())


def reconstruct(
    problem: Problem,
    y: torch.Tensor,
    *,
    steps: int | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    progress: Progress | None = None,
    **solver_options: object,
) -> Result:
    """Reconstruct ``y`` (``[N, *measurement]`` or one measurement without the batch axis) by MAP.

    ``y`` may be a tensor or a numpy array. ``steps`` and ``solver_options`` (any :class:`SolverConfig` field,
    values or their text) override the problem's solver settings; an unknown option, a bad value or an
    out-of-range seed (an integer in [0, 2**63 − 1]) is a :class:`~brgm.core.errors.ConfigError`. Every item's
    randomness comes from its own seed: ``seeds`` (one per item) or else ``seed`` for all, so an item gives the
    same result alone or at any position of any batch.
    """
    base = problem.solver if isinstance(problem.solver, SolverConfig) else SolverConfig()
    changes = dict(solver_options)
    if steps is not None:
        changes["steps"] = steps
    config = build(SolverConfig, {**attrs.asdict(base, recurse=False), **changes}, "solver")
    y = problem.check_measurement(y)
    seeds = [check_seed(s) for s in (seeds if seeds is not None else [seed] * y.shape[0])]
    return MAPSolver(config).solve(problem, y, seeds=seeds, progress=progress)
