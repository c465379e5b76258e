"""Quality benchmark (issue 7): brgm against the naive inverse and total variation on held-out brain slices.

For the demo brain data (``scripts/make_demo_data.py``: in-subject held-out Colin27 slices and out-of-subject ITK
slices, 64×64 in [0, 1]) and seven tasks (k-space ×4 and ×8, super-resolution ×4 and ×8, inpainting of a half and
of a box, Gaussian blur), it reconstructs every slice with

1. the naive baseline: the forward model's ``naive_inverse`` (zero-filled k-space, bicubic upsampling, the
   masked input, the blurred image), clamped to [0, 1];
2. total variation: ``argmin_x ½‖Ax − y‖² + λ·TV(x)`` solved by deepinv's FISTA with its TV prior (proximal
   steps by its TV denoiser) on our operator wrapped as a ``deepinv.physics.LinearPhysics``; λ is chosen per task
   on training slices (``train.npz``), never on test slices;
3. brgm: MAP with the ``brgm-tf-noperc`` preset (BRGM-TF's terms and schedule without the perceptual term),
   batched over all test slices of a task; the pixel term's weight is chosen per task on the same training
   slices as TV's λ, among multiples of the preset's (whose weight was set for BRGM's perceptual term beside it),

and writes ``OUT/quality.md`` (PSNR and SSIM, mean ± std over slices, per test set) and ``OUT/quality.png``.

    python benchmarks/quality.py --limit 2 --steps 20 --out /tmp/quality      # a quick check
    nice -n 5 python benchmarks/quality.py --generator demo-brain64 --steps 300 --out docs/
    python benchmarks/quality.py --device cuda --steps 1000 --out docs/          # on a GPU
    python benchmarks/quality.py --set like.pixel.weight=6502.5 --out /tmp/q     # one fixed weight for brgm

Needs the ``bench`` extra (``pip install -e ".[bench]"``, which installs deepinv).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import brgm
from brgm.core.generator import Generator
from brgm.core.operators import LinearForwardModel
from brgm.core.plugins import registry
from brgm.core.problem import Problem
from brgm.core.solver import Progress

try:
    from deepinv.optim import FISTA, TVPrior
    from deepinv.optim.data_fidelity import L2
    from deepinv.physics import LinearPhysics
except ImportError as err:  # pragma: no cover - depends on the environment
    raise SystemExit(f"benchmarks/quality.py needs deepinv: pip install -e '.[bench]' ({err})") from err

PRESET = "brgm-tf-noperc"
#: standard deviation of the additive Gaussian measurement noise (k-space: per real and imaginary part)
NOISE_SIGMA = 0.01
#: standard deviation (pixels) of the Gaussian blur kernel
BLUR_SIGMA = 2.0
#: candidate TV weights λ, tried on the training slices
TV_WEIGHTS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
#: candidate weights of brgm's pixel term, as multiples of the preset's, tried on the training slices
PIXEL_WEIGHT_FACTORS = (1, 10, 100, 1000, 10000)
PIXEL_WEIGHT = "like.pixel.weight"
#: the largest relative error accepted from deepinv's adjointness test (float32)
ADJOINT_TOLERANCE = 1e-4
METHODS = ("naive", "TV", "brgm")
SPLITS = {"test_in_subject": "in-subject held-out slices", "test_out_of_subject": "out-of-subject slices"}
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_demo_data.py"


@dataclass(frozen=True)
class Task:
    """One corruption: a key (``--tasks``), a label, a forward-model chain (``fwd=``) and its settings (``fwd.*``
    keys)."""

    key: str
    label: str
    fwd: str
    settings: dict[str, Any]


def _kspace(acceleration: int, center_fraction: float) -> Task:
    return Task(
        f"kspace{acceleration}",
        f"k-space ×{acceleration}",
        "kspace+gaussian_noise",
        {
            "fwd.kspace.acceleration": acceleration,
            "fwd.kspace.center_fraction": center_fraction,
            "fwd.kspace.mask": "random",
            "fwd.gaussian_noise.sigma": NOISE_SIGMA,
        },
    )


def _super_resolution(factor: int) -> Task:
    return Task(
        f"sr{factor}",
        f"super-resolution ×{factor}",
        "downsample+gaussian_noise",
        {"fwd.downsample.factor": factor, "fwd.gaussian_noise.sigma": NOISE_SIGMA},
    )


def _inpainting(label: str, missing: str) -> Task:
    # fill 0 keeps the operator linear (TV needs it) and makes the naive baseline the zero-filled input; the
    # preset's fill 1.0 would only add a constant to brgm's pixel term, so brgm's fit is the same either way
    return Task(
        f"inpaint-{missing}",
        f"inpainting ({label})",
        "mask",
        {"fwd.mask.missing": missing, "fwd.mask.fill": 0.0},
    )


TASKS = (
    _kspace(4, 0.08),
    _kspace(8, 0.04),
    _super_resolution(4),
    _super_resolution(8),
    _inpainting("right half", "right"),
    _inpainting("central box", "box"),
    Task(
        "blur",
        f"Gaussian blur σ={BLUR_SIGMA:g} px",
        "blur+gaussian_noise",
        {"fwd.blur.sigma": BLUR_SIGMA, "fwd.gaussian_noise.sigma": NOISE_SIGMA},
    ),
)
NOISE_NOTE = (
    f"Additive Gaussian noise σ = {NOISE_SIGMA:g} (intensity units; per real and imaginary part in the "
    "orthonormal k-space) on k-space, super-resolution and blur measurements (MRI thermal noise, sensor noise; "
    "without noise, deblurring is unrealistically easy); inpainting is noiseless (missing pixels, observed ones "
    "exact). k-space masks: fastMRI's random mask (seed 0, the same for every slice) with centre fractions "
    f"0.08 (×4) and 0.04 (×8); super-resolution averages factor×factor blocks (the preset's `area`); blur is "
    f"an isotropic Gaussian of σ = {BLUR_SIGMA:g} px with reflect padding; inpainting removes the right half or "
    "the central box (25–75 % of each axis), filled with 0."
)


# --------------------------------------------------------------------------------------------------- data


def default_data_dir() -> Path:
    """The cache folder for the demo data (``$XDG_CACHE_HOME/brgm/demo-brain``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brgm" / "demo-brain"


def ensure_data(directory: Path) -> Path:
    """``directory``, after building the demo data into it with ``scripts/make_demo_data.py`` if absent."""
    if not all((directory / f"{name}.npz").is_file() for name in ("train", *SPLITS)):
        print(f"building the demo data into {directory}", flush=True)
        subprocess.run([sys.executable, str(DEMO_SCRIPT), "--out", str(directory)], check=True)
    return directory


def evenly_spaced(count: int, limit: int | None) -> np.ndarray:
    """``limit`` evenly spaced indices of ``count`` items, the two ends (the smallest brain sections) left out;
    all of them without a limit or when ``limit >= count``."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, limit + 2)[1:-1]).astype(int)


def load_slices(directory: Path, split: str, limit: int | None) -> torch.Tensor:
    """``images [N, 1, 64, 64]`` of one split, at most ``limit`` of them, evenly spaced through the volume."""
    images = np.load(directory / f"{split}.npz")["images"]
    return torch.from_numpy(images[evenly_spaced(len(images), limit)]).float()


# ------------------------------------------------------------------------------------ total variation


def as_physics(op: LinearForwardModel) -> LinearPhysics:
    """``op`` as a deepinv ``LinearPhysics`` (``A = op.forward``, ``A_adjoint = op.adjoint``).

    Complex k-space is handed to deepinv as real tensors ``[..., 2]`` (``torch.view_as_real``): A maps real
    images to ℝ^(2m), whose adjoint under the real inner product is exactly ``op.adjoint`` (``Re F⁻¹(M·y)``),
    so deepinv's real algorithms and its adjointness test apply unchanged."""
    if not op.complex_output:
        return LinearPhysics(A=op.forward, A_adjoint=op.adjoint)
    return LinearPhysics(
        A=lambda x: torch.view_as_real(op.forward(x)),
        A_adjoint=lambda y: op.adjoint(torch.view_as_complex(y.contiguous())),
    )


def as_physics_measurement(op: LinearForwardModel, y: torch.Tensor) -> torch.Tensor:
    """A measurement of ``op`` in the representation :func:`as_physics` uses."""
    return torch.view_as_real(y) if op.complex_output else y


def checked_adjoint_error(physics: LinearPhysics, x: torch.Tensor) -> float:
    """deepinv's relative adjointness error of ``physics`` at images like ``x``; raises if above tolerance."""
    error = float(physics.adjointness_test(x, num_samples=4))
    if error > ADJOINT_TOLERANCE:
        raise RuntimeError(f"adjointness test failed: relative error {error:.2e} > {ADJOINT_TOLERANCE:g}")
    return error


def tv_reconstruct(
    op: LinearForwardModel, y: torch.Tensor, weight: float, iterations: int, shape: Sequence[int]
) -> torch.Tensor:
    """``argmin_x ½‖Ax − y‖² + weight·TV(x)`` by deepinv's FISTA (step 1/‖A‖²), clamped to [0, 1].

    A fresh TV prior per call: deepinv's TV denoiser warm-starts from its previous call."""
    physics = as_physics(op)
    norm = float(physics.compute_norm(torch.rand(1, *shape[1:], device=y.device), verbose=False))
    solver = FISTA(
        data_fidelity=L2(),
        prior=TVPrior(n_it_max=20),
        lambda_reg=weight,
        stepsize=1.0 / norm,
        max_iter=iterations,
    )
    with torch.no_grad():
        return solver(as_physics_measurement(op, y), physics).clamp(0, 1)


def tune_tv_weight(
    op: LinearForwardModel, x_train: torch.Tensor, y_train: torch.Tensor, iterations: int
) -> tuple[float, float]:
    """The weight of :data:`TV_WEIGHTS` with the best mean PSNR on the training slices ``x_train`` (measured as
    ``y_train``), and that PSNR."""
    scores = [
        float(brgm.metrics.psnr(tv_reconstruct(op, y_train, w, iterations, x_train.shape), x_train).mean())
        for w in TV_WEIGHTS
    ]
    best = int(np.argmax(scores))
    return TV_WEIGHTS[best], scores[best]


# ------------------------------------------------------------------------------------------- running


@dataclass
class TaskRun:
    """Everything one task produced over the concatenated test slices of every split."""

    task: Task
    measurement: torch.Tensor
    images: dict[str, torch.Tensor]
    tv_weight: float
    tv_train_psnr: float
    adjoint_error: float
    pixel_weight: float
    pixel_train_psnr: float | None  # None: the weight was given, not chosen
    seconds: dict[str, float] = field(default_factory=dict)


def preset_value(key: str) -> Any:
    """One setting of :data:`PRESET`."""
    return registry().get("preset", PRESET).obj.values[key]


def preset_steps() -> int:
    """The number of solver steps of :data:`PRESET`."""
    return int(preset_value("solver.steps"))


def build_problem(
    task: Task, generator: Generator, device: torch.device, overrides: dict[str, str] | None = None
) -> Problem:
    """The task's problem under :data:`PRESET`; ``overrides`` (``key=value`` settings, e.g. ``like.pixel.weight``)
    change the preset's values for brgm's terms and solver."""
    settings = {**task.settings, **(overrides or {})}
    return brgm.compose(gen=generator, fwd=task.fwd, preset=PRESET, device=device, **settings)


def brgm_progress(label: str, every: int) -> Progress:
    """A solver callback printing the summed energy every ``every`` steps."""

    def report(step: int, steps: int, energies: dict[str, float]) -> None:
        if step % every == 0 or step == steps:
            print(f"  {label}: brgm step {step}/{steps}, energy {energies['total']:.4g}", flush=True)

    return report


def brgm_reconstruct(problem: Problem, y: torch.Tensor, steps: int, seed: int, label: str) -> torch.Tensor:
    """brgm's MAP estimate of every measurement in ``y`` (one batch), ``[N, C, H, W]`` in [0, 1]."""
    progress = brgm_progress(label, max(1, steps // 10))
    return brgm.reconstruct(problem, y, steps=steps, seed=seed, batch_size=len(y), progress=progress).image


def tune_pixel_weight(
    task: Task, generator: Generator, x_train: torch.Tensor, y_train: torch.Tensor, args: argparse.Namespace
) -> tuple[float, float]:
    """The pixel-term weight among :data:`PIXEL_WEIGHT_FACTORS` × the preset's with the best mean PSNR of brgm
    (``args.tune_steps`` steps) on the training slices ``x_train`` (measured as ``y_train``), and that PSNR."""
    base = float(preset_value(PIXEL_WEIGHT))
    scores = {}
    for factor in PIXEL_WEIGHT_FACTORS:
        weight = base * factor
        problem = build_problem(
            task, generator, x_train.device, {**args.overrides, PIXEL_WEIGHT: str(weight)}
        )
        image = brgm_reconstruct(
            problem, y_train, args.tune_steps, args.seed, f"{task.label} (train, ×{factor})"
        )
        scores[weight] = float(brgm.metrics.psnr(image.cpu(), x_train.cpu()).mean())
        print(f"{task.label}: brgm pixel weight {weight:g}: train PSNR {scores[weight]:.2f} dB", flush=True)
    best = max(scores, key=scores.__getitem__)
    return best, scores[best]


def run_task(
    task: Task, generator: Generator, truth: torch.Tensor, x_train: torch.Tensor, args: argparse.Namespace
) -> TaskRun:
    """Measure ``truth`` (every test slice, on the run's device) under ``task`` and reconstruct it with every
    method; the images come back on the CPU."""
    problem = build_problem(task, generator, truth.device, args.overrides)
    op = problem.forward_model
    y = op.simulate(truth, torch.Generator().manual_seed(args.seed))
    adjoint_error = checked_adjoint_error(as_physics(op), truth[:1])
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    # the training measurements both weight searches score on, drawn with another seed than the test ones
    y_train = op.simulate(x_train, torch.Generator().manual_seed(args.seed + 1))
    weight, train_psnr = tune_tv_weight(op, x_train, y_train, args.tv_iterations)
    seconds["TV tuning"] = time.perf_counter() - start
    print(f"{task.label}: TV weight {weight:g} (train PSNR {train_psnr:.2f} dB)", flush=True)

    images = {"naive": op.naive_inverse(y).clamp(0, 1).cpu()}
    start = time.perf_counter()
    images["TV"] = tv_reconstruct(op, y, weight, args.tv_iterations, truth.shape).cpu()
    seconds["TV"] = time.perf_counter() - start

    start = time.perf_counter()
    given = args.pixel_weights.get(task.key, args.overrides.get(PIXEL_WEIGHT))
    if given is not None:
        pixel_weight, pixel_train_psnr = float(given), None
    else:
        pixel_weight, pixel_train_psnr = tune_pixel_weight(task, generator, x_train, y_train, args)
    problem = build_problem(
        task, generator, truth.device, {**args.overrides, PIXEL_WEIGHT: str(pixel_weight)}
    )
    seconds["brgm tuning"] = time.perf_counter() - start

    start = time.perf_counter()
    images["brgm"] = brgm_reconstruct(problem, y, args.steps, args.seed, task.label).cpu()
    seconds["brgm"] = time.perf_counter() - start
    return TaskRun(
        task, y.cpu(), images, weight, train_psnr, adjoint_error, pixel_weight, pixel_train_psnr, seconds
    )


# ------------------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Score:
    """PSNR (dB) and SSIM of one method on one task and test set, one value per slice."""

    psnr: torch.Tensor
    ssim: torch.Tensor

    @staticmethod
    def of(pred: torch.Tensor, truth: torch.Tensor) -> Score:
        return Score(brgm.metrics.psnr(pred, truth, 1.0), brgm.metrics.ssim(pred, truth, 1.0))


def split_scores(run: TaskRun, truth: torch.Tensor, bounds: dict[str, slice]) -> dict[str, dict[str, Score]]:
    """``{split: {method: Score}}`` of one task."""
    return {
        split: {m: Score.of(run.images[m][rows], truth[rows]) for m in METHODS}
        for split, rows in bounds.items()
    }


def mean_std(values: torch.Tensor, digits: int) -> str:
    std = float(values.std()) if len(values) > 1 else 0.0
    return f"{float(values.mean()):.{digits}f} ± {std:.{digits}f}"


def best_method(scores: dict[str, Score], metric: str) -> str:
    return max(METHODS, key=lambda m: float(getattr(scores[m], metric).mean()))


def results_table(per_task: dict[str, dict[str, Score]]) -> list[str]:
    """Markdown rows: one per task, PSNR and SSIM (mean ± std) per method, the best mean in bold."""
    header = "| task | " + " | ".join(f"{m} PSNR (dB) | {m} SSIM" for m in METHODS) + " |"
    lines = [header, "|---|" + "---:|" * (2 * len(METHODS))]
    for label, scores in per_task.items():
        cells = []
        for method in METHODS:
            for metric, digits in (("psnr", 2), ("ssim", 3)):
                text = mean_std(getattr(scores[method], metric), digits)
                cells.append(f"**{text}**" if best_method(scores, metric) == method else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _mean(scores: dict[str, Score], method: str, metric: str = "psnr") -> float:
    return float(getattr(scores[method], metric).mean())


def shortfalls(per_task: dict[str, dict[str, Score]]) -> str:
    """One sentence naming, per baseline and metric, the tasks where brgm's mean does not beat the baseline's."""
    parts = []
    for baseline in ("naive", "TV"):
        for metric in ("psnr", "ssim"):
            losses = [
                t for t, s in per_task.items() if _mean(s, "brgm", metric) <= _mean(s, baseline, metric)
            ]
            if losses:
                where = "any task" if len(losses) == len(per_task) else ", ".join(losses)
                parts.append(f"{baseline} in mean {metric.upper()} on {where}")
    if not parts:
        return "brgm beats both baselines in mean PSNR and mean SSIM on every task."
    return "brgm does not beat " + "; ".join(parts) + "."


def target_verdict(per_task: dict[str, dict[str, Score]]) -> str:
    """Whether issue 7's target holds: brgm beats the naive baseline on every task (mean PSNR) and TV by at
    least 1 dB mean PSNR on k-space ×4 and ×8."""
    naive_losses = [t for t, s in per_task.items() if _mean(s, "brgm") <= _mean(s, "naive")]
    margins = {t: _mean(s, "brgm") - _mean(s, "TV") for t, s in per_task.items() if t.startswith("k-space")}
    met = not naive_losses and all(m >= 1.0 for m in margins.values())
    if len(per_task) < len(TASKS):  # a subset can show the target fails, never that it holds
        verdict = (
            "does not hold" if not met else f"cannot be judged on {len(per_task)} of the {len(TASKS)} tasks"
        )
    else:
        verdict = "holds" if met else "does not hold"
    margin_text = ", ".join(f"{t} {m:+.2f} dB" for t, m in margins.items()) or "no k-space task in this run"
    naive_text = "every task" if not naive_losses else f"every task but {', '.join(naive_losses)}"
    return (
        f"Issue 7's target (beat the naive baseline on every task, beat TV by ≥ 1 dB mean PSNR on k-space ×4 "
        f"and ×8) **{verdict}**: brgm beats the naive baseline in mean PSNR on {naive_text} of this run; brgm − "
        f"TV mean PSNR: {margin_text}."
    )


# ------------------------------------------------------------------------------------------ reporting


def machine_description(device: torch.device) -> str:
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")
    ]
    cpu = models[0] if models else platform.processor() or platform.machine()
    return (
        f"{gpu}{cpu}, {os.cpu_count()} logical cores (shared), torch threads: {torch.get_num_threads()}, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}"
    )


def write_markdown(
    path: Path, runs: list[TaskRun], scores: dict[str, dict[str, dict[str, Score]]], meta: dict[str, Any]
) -> None:
    """``quality.md``: the settings header, a TV table and one results table per test set."""
    steps_note = f"{meta['steps']} Adam steps"
    if meta["steps"] < meta["preset_steps"]:
        steps_note += f" (reduced from the preset's {meta['preset_steps']} to fit the time budget)"
    lines = [
        "# Quality benchmark: brgm vs naive inverse vs total variation",
        "",
        f"Written by `benchmarks/quality.py` ({meta['command']}).",
        "",
        f"- **Generator:** `{meta['generator']}` ({meta['generator_info']})",
        f"- **brgm:** preset `{PRESET}` (BRGM-TF's pixel term, Gaussian and colinearity priors and lr schedule, "
        f"no perceptual term){overrides_note(meta['overrides'])}, {steps_note}, all test slices of a task in one batch, seed "
        f"{meta['seed']}; {pixel_note(meta)}; nothing tuned on test slices.",
        f"- **TV:** ½‖Ax − y‖² + λ·TV(x) (isotropic), deepinv {meta['deepinv']} FISTA, {meta['tv_iterations']} "
        "iterations, step 1/‖A‖², TV prox by deepinv's TV denoiser (20 warm-started iterations); λ per task from "
        f"{{{', '.join(f'{w:g}' for w in TV_WEIGHTS)}}}, best mean PSNR on {meta['train_count']} evenly spaced "
        "training slices (`train.npz`, noise drawn with another seed than the test measurements).",
        f"- **Slices:** {meta['counts']}; metrics `brgm.metrics.psnr` / `ssim` with data_range 1 on [0, 1] "
        "images, mean ± sample std over slices; every method's output clamped to [0, 1].",
        f"- **Measurements:** {NOISE_NOTE}",
        f"- **Runtime:** {meta['runtime']}",
        f"- **Machine:** {meta['machine']}",
        "",
        "## Weights chosen on training slices",
        "",
        "| task | TV λ | TV train PSNR (dB) | brgm pixel weight | brgm train PSNR (dB) | deepinv adjointness error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = float(preset_value(PIXEL_WEIGHT))
    pixel_edges = (base * PIXEL_WEIGHT_FACTORS[0], base * PIXEL_WEIGHT_FACTORS[-1])
    for run in runs:
        edge = " (grid edge)" if run.tv_weight in (TV_WEIGHTS[0], TV_WEIGHTS[-1]) else ""
        pixel_train = "given" if run.pixel_train_psnr is None else f"{run.pixel_train_psnr:.2f}"
        pixel_edge = (
            " (grid edge)" if run.pixel_train_psnr is not None and run.pixel_weight in pixel_edges else ""
        )
        lines.append(
            f"| {run.task.label} | {run.tv_weight:g}{edge} | {run.tv_train_psnr:.2f} | "
            f"{run.pixel_weight:g} (×{run.pixel_weight / base:g}){pixel_edge} | {pixel_train} | "
            f"{run.adjoint_error:.1e} |"
        )
    for split, label in SPLITS.items():
        per_task = {run.task.label: scores[run.task.label][split] for run in runs}
        lines += ["", f"## {label.capitalize()} (`{split}.npz`)", "", *results_table(per_task), ""]
        if split == "test_in_subject":
            lines += [target_verdict(per_task), ""]
        lines.append(f"Where brgm falls short: {shortfalls(per_task)}")
    lines += ["", "![measurement, naive, TV, brgm and truth per task](quality.png)", ""]
    path.write_text("\n".join(lines))


def overrides_note(overrides: dict[str, str]) -> str:
    """The ``--set`` changes to the preset, for the header."""
    return "".join(f", **{key} = {value}** instead of the preset's" for key, value in overrides.items())


def pixel_note(meta: dict[str, Any]) -> str:
    """How brgm's pixel weight was set, for the header."""
    if PIXEL_WEIGHT in meta["overrides"]:
        return "pixel weight given on the command line"
    factors = ", ".join(f"{f:g}" for f in PIXEL_WEIGHT_FACTORS)
    note = (
        f"pixel weight per task from {{{factors}}} × the preset's {float(preset_value(PIXEL_WEIGHT)):g} (set for "
        f"BRGM's perceptual term beside it), best mean PSNR of {meta['tune_steps']}-step reconstructions of the "
        "training slices TV's λ is chosen on"
    )
    if meta["pixel_weights"]:
        note += (
            " (tasks whose train PSNR reads 'given' took the weight of `--pixel-weights`, an earlier choice)"
        )
    return note


def measurement_view(y: torch.Tensor) -> np.ndarray:
    """A displayable ``[h, w]`` array of one measurement ``[C, h, w]``: log-magnitude k-space scaled to [0, 1],
    or the (clamped) image."""
    if y.is_complex():
        magnitude = torch.log1p(y[0].abs() / y[0].abs().max().clamp_min(1e-12) * 1e3)
        return (magnitude / magnitude.max().clamp_min(1e-12)).numpy()
    return y[0].clamp(0, 1).numpy()


def write_figure(path: Path, runs: list[TaskRun], truth: torch.Tensor, picks: dict[str, int]) -> None:
    """``quality.png``: rows = tasks; per picked slice, columns measurement, naive, TV, brgm, truth."""
    columns = ("measurement", *METHODS, "truth")
    fig, axes = plt.subplots(
        len(runs),
        len(columns) * len(picks),
        figsize=(1.3 * len(columns) * len(picks), 1.45 * len(runs) + 0.35),
    )
    axes = np.atleast_2d(axes)
    for row, run in enumerate(runs):
        for block, (split, index) in enumerate(picks.items()):
            target = truth[index : index + 1]
            panels = [measurement_view(run.measurement[index])]
            panels += [run.images[m][index, 0].numpy() for m in METHODS] + [target[0, 0].numpy()]
            for col, (name, panel) in enumerate(zip(columns, panels, strict=True)):
                ax = axes[row, block * len(columns) + col]
                ax.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if name in METHODS:
                    value = float(brgm.metrics.psnr(run.images[name][index : index + 1], target)[0])
                    ax.set_xlabel(f"{value:.1f} dB", fontsize=6, labelpad=1)
                if row == 0:
                    ax.set_title(f"{SPLITS[split].split()[0]}\n{name}", fontsize=7)
                if col == 0 and block == 0:
                    ax.set_ylabel(run.task.label, fontsize=6)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="demo-brain64", help="generator name or checkpoint path")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"demo data folder, built if absent (default {default_data_dir()})",
    )
    parser.add_argument("--steps", type=int, default=preset_steps(), help=f"brgm steps (default: {PRESET}'s)")
    parser.add_argument("--limit", type=int, default=None, help="at most N evenly spaced slices per test set")
    keys = [task.key for task in TASKS]
    parser.add_argument(
        "--tasks",
        type=lambda text: text.split(","),
        default=keys,
        metavar="KEY[,KEY...]",
        help=f"the tasks to run, of {','.join(keys)} (default: all)",
    )
    parser.add_argument(
        "--train-slices", type=int, default=8, help="training slices for choosing TV's and brgm's weights"
    )
    parser.add_argument("--tv-iterations", type=int, default=200, help="FISTA iterations of TV")
    parser.add_argument(
        "--tune-steps",
        type=int,
        default=200,
        help="brgm steps per candidate pixel weight on the training slices (no search with --set like.pixel.weight)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one of the preset's settings for brgm (repeatable), e.g. like.pixel.weight=6502.5",
    )
    parser.add_argument(
        "--pixel-weights",
        type=lambda text: dict(item.split("=", 1) for item in text.split(",")),
        default={},
        metavar="KEY=W[,KEY=W...]",
        help="brgm's pixel weight for these tasks instead of a search (e.g. an earlier run's choice): kspace4=650250",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: oversubscribing a shared CPU is far slower)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the test noise and brgm's initialisation"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="folder for quality.md and quality.png"
    )
    args = parser.parse_args(argv)
    bad = [item for item in args.overrides if "=" not in item or item.startswith(("fwd.", "fwd="))]
    if bad:
        parser.error(f"--set takes KEY=VALUE for brgm's terms and solver (not fwd.*), got {bad}")
    args.overrides = dict(item.split("=", 1) for item in args.overrides)
    unknown = sorted(set(args.tasks) - set(keys))
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}; the tasks are {','.join(keys)}")
    args.tasks = [task for task in TASKS if task.key in args.tasks]
    unknown = sorted(set(args.pixel_weights) - set(keys))
    if unknown:
        parser.error(f"--pixel-weights: unknown task(s) {unknown}; the tasks are {','.join(keys)}")
    try:
        args.pixel_weights = {key: float(value) for key, value in args.pixel_weights.items()}
    except ValueError as err:
        parser.error(f"--pixel-weights takes KEY=NUMBER pairs: {err}")
    for name in ("steps", "limit", "train_slices", "tv_iterations", "tune_steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = ensure_data(args.data or default_data_dir())
    device = torch.device(args.device)
    sets = {split: load_slices(data, split, args.limit) for split in SPLITS}
    x_train = load_slices(data, "train", args.train_slices).to(device)
    truth = torch.cat(list(sets.values()))
    offsets = np.cumsum([0, *(len(s) for s in sets.values())])
    bounds = {
        split: slice(int(a), int(b)) for split, a, b in zip(sets, offsets[:-1], offsets[1:], strict=True)
    }
    generator = brgm.load_generator(args.generator)

    full_counts = {split: len(np.load(data / f"{split}.npz")["images"]) for split in SPLITS}
    meta = {
        "command": "`python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "generator": args.generator,
        "generator_info": ", ".join(f"{k} {v}" for k, v in generator.describe().items()),
        "steps": args.steps,
        "preset_steps": preset_steps(),
        "overrides": args.overrides,
        "pixel_weights": args.pixel_weights,
        "seed": args.seed,
        "tv_iterations": args.tv_iterations,
        "tune_steps": args.tune_steps,
        "train_count": len(x_train),
        "deepinv": version("deepinv"),
        "counts": "; ".join(
            f"{SPLITS[s]}: {len(sets[s])} of {full_counts[s]}"
            + (" (evenly spaced)" if len(sets[s]) < full_counts[s] else "")
            for s in SPLITS
        ),
        "machine": machine_description(device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[TaskRun] = []
    scores: dict[str, dict[str, dict[str, Score]]] = {}
    picks = {split: bounds[split].start + len(sets[split]) // 2 for split in SPLITS}
    for task in args.tasks:  # table and figure are rewritten after every task: an interrupted run keeps them
        run = run_task(task, generator, truth.to(device), x_train, args)
        runs.append(run)
        scores[task.label] = split_scores(run, truth, bounds)
        meta["runtime"] = runtime_note(runs, started, args.steps * len(truth), len(args.tasks))
        write_markdown(args.out / "quality.md", runs, scores, meta)
        write_figure(args.out / "quality.png", runs, truth, picks)
    print(f"wrote {args.out / 'quality.md'} and {args.out / 'quality.png'}", flush=True)


def runtime_note(runs: list[TaskRun], started: float, slice_steps: int, planned: int) -> str:
    """Wall time so far and per method; ``slice_steps`` = brgm steps × test slices of one task, ``planned`` the
    number of tasks the run will do."""
    keys = ("TV tuning", "TV", "brgm tuning", "brgm")
    totals = {key: sum(run.seconds[key] for run in runs) for key in keys}
    note = (
        f"{(time.perf_counter() - started) / 60:.1f} min in all; brgm {totals['brgm'] / 60:.1f} min "
        f"({totals['brgm'] / (slice_steps * len(runs)) * 1e3:.1f} ms per step per slice), brgm weight search "
        f"{totals['brgm tuning'] / 60:.1f} min, TV {totals['TV'] / 60:.1f} min, TV weight search "
        f"{totals['TV tuning'] / 60:.1f} min"
    )
    if len(runs) < planned:
        note += f" (**incomplete: {len(runs)} of {planned} tasks so far**)"
    return note


if __name__ == "__main__":
    main()
