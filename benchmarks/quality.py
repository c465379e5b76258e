"""Quality benchmark (issue 14, item 4): what a user gets from brgm's defaults, against the naive inverse and TV.

For seven tasks (k-space ×4 and ×8 with fastMRI random masks, super-resolution ×4 and ×8, inpainting of the right
half and of a central box, Gaussian blur σ = 2 px), each noiseless and noisy (Gaussian σ = 0.02; per real and
imaginary part in k-space), and three sets of 64×64 images in [0, 1]:

- ``in-subject``: held-out Colin27 slices (``test_in_subject.npz`` of ``scripts/make_demo_data.py``),
- ``out-of-subject``: slices of a head the generator never saw (``test_out_of_subject.npz``),
- ``samples``: images drawn from the generator itself (seeded z, truncation 1), where the prior is exactly right,

it measures, per slice, PSNR and SSIM (data range 1) and the time per slice of

1. the naive inverse (zero-filled k-space, bicubic upsampling, the masked input, the blurred image);
2. total variation: ``argmin_x ½‖Ax − y‖² + λ·TV(x)`` (isotropic, real x) by the primal-dual algorithm of
   Chambolle and Pock (brgm's exact deviation solve from a zero base,
   :meth:`brgm.plugins.priors.deviation.DeviationPrior.minimise_deviation`, 5000 iterations), the operator's
   adjoint checked by deepinv's adjointness test on it wrapped as a ``deepinv.physics.LinearPhysics``; λ per
   (task, noise) chosen on training slices (``train.npz``, noise drawn with another seed), never on test slices.
   (deepinv's FISTA with its TV prior, which this benchmark used before, was not converged at 200 iterations:
   on 6 out-of-subject slices of k-space ×4 at λ = 0.01 it gave 23.05 dB against 24.66 dB at 1000 iterations and
   24.69 dB at 3000; Chambolle–Pock reaches 24.69 dB in 1000 iterations, 0.5 s, and 25.00 dB at λ = 0.003 in
   5000, where FISTA needs more than 3000);
3. brgm with its defaults, ``brgm.compose(gen=GEN, fwd=TASK)`` (no preset, no weights, no priors argument: whatever
   the library's defaults are), run through the library pipeline ``brgm.core.pipeline.run``: one output folder
   per (task, noise, set) under ``OUT/runs/``, per-item records, outputs written atomically. A rerun skips the
   items the records say are done; TV reads each item's written measurement, so it sees the same mask and noise.

It writes ``OUT/quality.md`` (tables per set and the verdict on issue 14's targets) and ``OUT/quality.png``, both
rewritten after every (task, noise, set), so an interrupted run keeps what it finished.

    python benchmarks/quality.py --limit 2 --samples 2 --steps 10 --tasks kspace4 --out /tmp/q   # quick check
    nice -n 5 python benchmarks/quality.py --out docs/                                            # full, hours
    python benchmarks/quality.py --device cuda --out docs/                                        # on a GPU

Needs the ``bench`` extra (``pip install -e ".[bench]"``, which installs deepinv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import brgm
from brgm.core.errors import ConfigError
from brgm.core.io.outputs import item_metrics
from brgm.core.pipeline import Reporter, run
from brgm.core.problem import Problem
from brgm.core.solver import Progress
from brgm.plugins.priors.deviation import DeviationPrior

#: the default noise levels: noiseless and Gaussian σ = 0.02 (k-space: per real and imaginary part)
NOISE_LEVELS = (0.0, 0.02)
BLUR_SIGMA = 2.0
#: candidate TV weights λ, tried on the training slices
TV_WEIGHTS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
#: the largest relative error accepted from deepinv's adjointness test (float32)
ADJOINT_TOLERANCE = 1e-4
METHODS = ("naive", "TV", "brgm")
SETS = {
    "in-subject": "in-subject held-out slices (`test_in_subject.npz`)",
    "out-of-subject": "out-of-subject slices (`test_out_of_subject.npz`)",
    "samples": "generator samples (in distribution: the prior is exactly right)",
}
SET_FILES = {"in-subject": "test_in_subject", "out-of-subject": "test_out_of_subject"}
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_demo_data.py"
SEED = 0  # the pipeline's run seed (each item's noise derives from it and the item's key)
TRAIN_SEED = 1  # the noise of the training measurements TV's λ is chosen on


@dataclass(frozen=True)
class Task:
    """One corruption: a key (``--tasks``), a label, a forward model (``fwd=``) and its settings (``fwd.*``)."""

    key: str
    label: str
    fwd: str
    settings: dict[str, Any]

    def chain(self, sigma: float) -> tuple[str, dict[str, Any]]:
        """``fwd`` and its settings at noise level ``sigma`` (0: noiseless)."""
        if sigma == 0:
            return self.fwd, self.settings
        return f"{self.fwd}+gaussian_noise", {**self.settings, "fwd.gaussian_noise.sigma": sigma}


TASKS = (
    Task(
        "kspace4", "k-space ×4", "kspace", {"fwd.kspace.acceleration": 4, "fwd.kspace.center_fraction": 0.08}
    ),
    Task(
        "kspace8", "k-space ×8", "kspace", {"fwd.kspace.acceleration": 8, "fwd.kspace.center_fraction": 0.04}
    ),
    Task("sr4", "super-resolution ×4", "downsample", {"fwd.downsample.factor": 4}),
    Task("sr8", "super-resolution ×8", "downsample", {"fwd.downsample.factor": 8}),
    # fill 0 keeps the operator linear, as TV needs
    Task(
        "inpaint-right",
        "inpainting (right half)",
        "mask",
        {"fwd.mask.missing": "right", "fwd.mask.fill": 0.0},
    ),
    Task(
        "inpaint-box", "inpainting (central box)", "mask", {"fwd.mask.missing": "box", "fwd.mask.fill": 0.0}
    ),
    Task("blur", f"Gaussian blur σ = {BLUR_SIGMA:g} px", "blur", {"fwd.blur.sigma": BLUR_SIGMA}),
)
KSPACE = ("kspace4", "kspace8")


def noise_label(sigma: float) -> str:
    return "noiseless" if sigma == 0 else f"σ = {sigma:g}"


# --------------------------------------------------------------------------------------------------- data


def default_data_dir() -> Path:
    """The cache folder of the demo data (``$XDG_CACHE_HOME/brgm/demo-brain``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brgm" / "demo-brain"


def ensure_data(directory: Path) -> Path:
    """``directory``, after building the demo data into it with ``scripts/make_demo_data.py`` if absent."""
    if not all((directory / f"{name}.npz").is_file() for name in ("train", *SET_FILES.values())):
        print(f"building the demo data into {directory}", flush=True)
        subprocess.run([sys.executable, str(DEMO_SCRIPT), "--out", str(directory)], check=True)
    return directory


def evenly_spaced(count: int, limit: int | None) -> np.ndarray:
    """``limit`` evenly spaced indices of ``count`` items, the two ends (the smallest brain sections) left out;
    all of them without a limit or when ``limit >= count``."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.round(np.linspace(0, count - 1, limit + 2)[1:-1]).astype(int)


def load_slices(directory: Path, name: str, limit: int | None) -> tuple[list[str], np.ndarray]:
    """Item keys (``slice_NNN``, the volume's slice index) and images ``[N, 1, 64, 64]`` of one split."""
    data = np.load(directory / f"{name}.npz")
    rows = evenly_spaced(len(data["images"]), limit)
    return [f"slice_{int(i):03d}" for i in data["slice_index"][rows]], data["images"][rows].astype(np.float32)


def generator_samples(generator: str, count: int, device: torch.device) -> tuple[list[str], np.ndarray]:
    """``count`` images of the generator: ``G.synthesis(G.mapping(z))`` with z ~ N(0, I) seeded 0 (drawn on the
    CPU, so the same on every device), truncation 1, mapped to [0, 1] as ``(x + 1) / 2`` clamped."""
    G = brgm.load_generator(generator).to(device).eval().requires_grad_(False)
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = G.synthesis(G.mapping(z.to(device), truncation_psi=1.0))
    images = ((x + 1) / 2).clamp(0, 1).float().cpu().numpy()
    return [f"sample_{i:03d}" for i in range(count)], images


# ------------------------------------------------------------------------------------ total variation


def as_physics(op: Any) -> Any:
    """The linear forward model ``op`` as a deepinv ``LinearPhysics`` (``A = op.forward``, ``A_adjoint =
    op.adjoint``). Complex k-space goes to deepinv as real tensors ``[..., 2]`` (``torch.view_as_real``): under
    the real inner product the adjoint of that map is exactly ``op.adjoint`` (``Re F⁻¹(M·y)``).

    deepinv is imported here, not at the top, so that ``--help`` works without the ``bench`` extra."""
    try:
        from deepinv.physics import LinearPhysics
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(f"benchmarks/quality.py needs deepinv: pip install -e '.[bench]' ({err})") from err
    if not op.complex_output:
        return LinearPhysics(A=op.forward, A_adjoint=op.adjoint)
    return LinearPhysics(
        A=lambda x: torch.view_as_real(op.forward(x)),
        A_adjoint=lambda y: op.adjoint(torch.view_as_complex(y.contiguous())),
    )


def as_physics_measurement(op: Any, y: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(y) if op.complex_output else y


def checked_adjoint_error(physics: Any, x: torch.Tensor) -> float:
    """deepinv's relative adjointness error of ``physics`` at images like ``x``; raises if above tolerance."""
    error = float(physics.adjointness_test(x, num_samples=4))
    if error > ADJOINT_TOLERANCE:
        raise RuntimeError(f"adjointness test failed: relative error {error:.2e} > {ADJOINT_TOLERANCE:g}")
    return error


def tv_reconstruct(op: Any, y: torch.Tensor, weight: float, iterations: int) -> torch.Tensor:
    """``argmin_x ½‖Ax − y‖² + weight·TV(x)`` by Chambolle–Pock (the deviation prior's exact solve from a zero
    base with all of β on the image's TV, σ = 1), clamped to [0, 1]."""
    zero = torch.zeros_like(op.adjoint(y))
    prior = DeviationPrior(weight=weight, image_share=1.0, iterations=iterations, tolerance=0.0)
    sigma = torch.ones(len(y), device=y.device)
    return prior.minimise_deviation(op, zero, y, sigma, zero).clamp(0, 1)


@dataclass(frozen=True)
class TVChoice:
    """TV's λ for one (task, noise), chosen on training slices, with its train PSNR and the adjointness error."""

    weight: float
    train_psnr: float
    adjoint_error: float


def choose_tv_weight(problem: Problem, x_train: torch.Tensor, iterations: int) -> TVChoice:
    """The λ of :data:`TV_WEIGHTS` with the best mean PSNR on ``x_train`` measured by the problem's forward
    model (noise seeded :data:`TRAIN_SEED`, never the test measurements')."""
    op = problem.forward_model
    adjoint_error = checked_adjoint_error(as_physics(op), x_train[:1])
    y = op.simulate(x_train, torch.Generator().manual_seed(TRAIN_SEED))
    scores = [
        float(brgm.metrics.psnr(tv_reconstruct(op, y, w, iterations), x_train, 1.0).mean())
        for w in TV_WEIGHTS
    ]
    best = int(np.argmax(scores))
    return TVChoice(TV_WEIGHTS[best], scores[best], adjoint_error)


def cached(path: Path, key: Mapping[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, stored in JSON file ``path`` (atomically) under ``key``; an earlier value is reused."""
    store = json.loads(path.read_text()) if path.is_file() else {}
    name = json.dumps(key, sort_keys=True)
    if name not in store:
        store[name] = compute()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(store, indent=1))
        os.replace(tmp, path)
    return store[name]


def tv_choice(task: Task, sigma: float, x_train: torch.Tensor, args: argparse.Namespace) -> TVChoice:
    """TV's λ for (task, noise), from ``OUT/runs/tv_weights.json`` or chosen now (:func:`choose_tv_weight`)."""

    def choose() -> dict[str, Any]:
        print(
            f"{task.label}, {noise_label(sigma)}: choosing TV's λ on {len(x_train)} training slices",
            flush=True,
        )
        return vars(choose_tv_weight(compose(task, sigma, args), x_train, args.tv_iterations))

    key = {"task": task.key, "sigma": sigma, "iterations": args.tv_iterations, "train": len(x_train)}
    return TVChoice(**cached(args.out / "runs" / "tv_weights.json", key, choose))


def tv_on_set(
    folder: Path, problem: Problem, y: torch.Tensor, keys: list[str], tv: TVChoice, args: argparse.Namespace
) -> tuple[torch.Tensor, float]:
    """TV's reconstructions of measurements ``y`` and its solve time per slice, from ``folder/tv.npz`` when an
    earlier run stored them for the same items, λ and iterations."""
    path, key = (
        folder / "tv.npz",
        json.dumps({"keys": keys, "weight": tv.weight, "iterations": args.tv_iterations}),
    )
    if path.is_file():
        with np.load(path) as stored:
            if str(stored["key"]) == key:
                return torch.from_numpy(stored["images"]), float(stored["seconds"])
    start = time.perf_counter()
    images = tv_reconstruct(problem.forward_model, y.to(args.device), tv.weight, args.tv_iterations).cpu()
    seconds = (time.perf_counter() - start) / len(keys)
    with open(folder / ".tv.npz.tmp", "wb") as handle:
        np.savez(handle, images=images.numpy(), seconds=seconds, key=key)
    os.replace(folder / ".tv.npz.tmp", path)
    return images, seconds


# ------------------------------------------------------------------------------------------- brgm


class PrintReporter(Reporter):
    """Prints a run's progress: skipped items, the energy every tenth of the solve, finished items."""

    def __init__(self, label: str) -> None:
        self.label = label

    def start(self, total: int, finished: int) -> None:
        print(f"  {self.label}: {total} items, {finished} done by an earlier run", flush=True)

    def solving(self, keys: Sequence[str]) -> Progress | None:
        def progress(step: int, steps: int, energies: dict[str, float]) -> None:
            if step % max(1, steps // 10) == 0 or step == steps:
                print(
                    f"  {self.label}: {len(keys)} items, step {step}/{steps}, energy {energies['total']:.4g}"
                )

        return progress

    def item(self, record: Mapping[str, Any]) -> None:
        if record.get("status") != "done":
            print(f"  {self.label}: {record['key']} failed: {record.get('error')}", flush=True)


def compose(task: Task, sigma: float, args: argparse.Namespace) -> Problem:
    """brgm's default problem for ``task`` at noise ``sigma``: no preset, weights or priors given."""
    fwd, settings = task.chain(sigma)
    if args.steps is not None:
        settings = {**settings, "solver.steps": args.steps}
    return brgm.compose(gen=args.generator, fwd=fwd, device=args.device, **settings)


def read_items(folder: Path, keys: Sequence[str]) -> dict[str, Any]:
    """Per item of a pipeline run: its record's metrics and timings, and its written measurement, recon and
    baseline arrays (stacked ``[N, ...]``)."""
    records = [json.loads((folder / "records" / f"{key}.json").read_text()) for key in keys]
    failed = {r["key"]: r.get("error") for r in records if r.get("status") != "done"}
    if failed:
        raise RuntimeError(f"{folder}: items failed in the pipeline: {failed}")

    def stack(suffix: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.load(folder / f"{key}_{suffix}.npy") for key in keys]))

    return {
        "metrics": [r["metrics"] for r in records],
        "solve_s": [float(r["timings"]["solve_s"]) for r in records],
        "diverged": [k for k, r in zip(keys, records, strict=True) if r["metrics"].get("diverged")],
        "measurement": stack("measurement"),
        "recon": stack("recon"),
        "baseline": stack("baseline"),
    }


# ------------------------------------------------------------------------------------------- a cell


@dataclass
class Cell:
    """The results of one (task, noise, set): per-slice PSNR/SSIM per method, seconds per slice per method
    (None: not measured), TV's choice, and one slice's images (truth, naive, TV, brgm) for the figure."""

    task: Task
    sigma: float
    set: str
    psnr: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    seconds: dict[str, float | None]
    tv: TVChoice
    diverged: list[str]
    panels: dict[str, np.ndarray]

    def mean(self, method: str, metric: str = "psnr") -> float:
        return float(getattr(self, metric)[method].mean())


def run_cell(
    task: Task,
    sigma: float,
    name: str,
    keys: list[str],
    images: np.ndarray,
    tv: TVChoice,
    args: argparse.Namespace,
) -> Cell:
    """brgm through the pipeline into ``OUT/runs/TASK-NOISE-SET`` (resumed where done), then TV on the very
    measurements the pipeline wrote (cached in the folder's ``tv.npz``)."""
    folder = args.out / "runs" / f"{task.key}-{'clean' if sigma == 0 else f'sigma{sigma:g}'}-{name}"
    label = f"{task.label}, {noise_label(sigma)}, {name}"
    problem = compose(task, sigma, args)
    inputs = dict(zip(keys, images, strict=True))
    try:
        run(problem, inputs, folder, input_kind="image", seed=SEED, reporter=PrintReporter(label))
    except ConfigError as err:  # e.g. the library's defaults changed since an earlier run into this folder
        raise SystemExit(f"{err}\n(remove {folder} to rerun it under the current configuration)") from err
    items = read_items(folder, keys)
    truth = torch.from_numpy(images).double()

    tv_images, tv_seconds = tv_on_set(folder, problem, items["measurement"], keys, tv, args)
    tv_metrics = [item_metrics(tv_images[i], truth[i]) for i in range(len(keys))]

    def column(source: list[dict[str, float]], metric: str) -> np.ndarray:
        return np.array([m[metric] for m in source])

    per_method = {
        "naive": [m["baseline"] for m in items["metrics"]],
        "TV": tv_metrics,
        "brgm": [m["recon"] for m in items["metrics"]],
    }
    pick = len(keys) // 2
    panels = {"truth": images[pick, 0], "naive": items["baseline"][pick, 0].numpy()}
    panels |= {"TV": tv_images[pick, 0].numpy(), "brgm": items["recon"][pick, 0].numpy()}
    return Cell(
        task,
        sigma,
        name,
        psnr={m: column(v, "psnr") for m, v in per_method.items()},
        ssim={m: column(v, "ssim") for m, v in per_method.items()},
        seconds={"naive": None, "TV": tv_seconds, "brgm": float(np.mean(items["solve_s"]))},
        tv=tv,
        diverged=items["diverged"],
        panels=panels,
    )


# ------------------------------------------------------------------------------------------ verdicts


#: issue 14's targets: (set, task keys, baseline, margin in dB by which brgm's mean PSNR must beat the baseline's;
#: 0 means strictly above), each over both noise levels
TARGETS = (
    ("out-of-subject", KSPACE, "TV", 1.0),
    ("out-of-subject", tuple(t.key for t in TASKS), "naive", 0.0),
    ("in-subject", KSPACE, "TV", 2.0),
    ("samples", tuple(t.key for t in TASKS), "TV", 3.0),
)


def verdict(cells: list[Cell], name: str, keys: Sequence[str], baseline: str, threshold: float) -> str:
    """One target as a markdown item: holds, does NOT hold (some condition run falls short), or cannot be judged
    yet (every condition run meets it, some were not run); with the margins brgm − baseline."""
    found = {(c.task.key, c.sigma): c for c in cells if c.set == name}
    wanted = [(k, s) for k in keys for s in NOISE_LEVELS]
    margins = {w: found[w].mean("brgm") - found[w].mean(baseline) for w in wanted if w in found}
    failing = [w for w, m in margins.items() if m < threshold or m <= 0]
    missing = len(wanted) - len(margins)
    if failing:
        state = "does NOT hold"
    elif missing:
        state = f"cannot be judged yet ({missing} of {len(wanted)} conditions not run)"
    else:
        state = "holds"
    labels = {t.key: t.label for t in TASKS}

    def cond(w: tuple[str, float]) -> str:
        return f"{labels[w[0]]} {noise_label(w[1])}"

    where = "k-space ×4 and ×8" if tuple(keys) == KSPACE else "every task"
    goal = f"by ≥ {threshold:g} dB" if threshold > 0 else "(brgm − naive > 0 dB)"
    short = f"; short on {', '.join(map(cond, failing))}" if failing else ""
    detail = ", ".join(f"{cond(w)} {m:+.2f} dB" for w, m in margins.items()) or "none run"
    return (
        f"- {name}: brgm beats {baseline} {goal} in mean PSNR on {where}, noiseless and σ = 0.02: "
        f"**{state}**{short}. brgm − {baseline}: {detail}."
    )


def verdicts(cells: list[Cell], meta: Mapping[str, Any]) -> list[str]:
    """Issue 14's targets, each stated as holding or not on this run's cells, and what limits the judgement."""
    lines = [verdict(cells, *t) for t in TARGETS]
    if meta["steps_given"]:
        lines.append(
            f"- These verdicts judge {meta['steps']} solver steps, not the defaults' {meta['default_steps']}."
        )
    if tuple(meta["noise"]) != NOISE_LEVELS:
        levels = ", ".join(map(noise_label, meta["noise"]))
        lines.append(
            f"- This run's noise levels ({levels}) are not all of the targets' (noiseless, σ = 0.02)."
        )
    return lines


# ------------------------------------------------------------------------------------------ reporting


def mean_std(values: np.ndarray, digits: int) -> str:
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return f"{float(values.mean()):.{digits}f} ± {std:.{digits}f}"


def seconds_text(value: float | None) -> str:
    return "~0" if value is None else f"{value:.2f}"


def results_table(cells: list[Cell]) -> list[str]:
    """Markdown rows, one per (task, noise): PSNR and SSIM per method (best mean in bold), brgm − TV, TV's λ and
    the seconds per slice of each method."""
    head = " | ".join(f"{m} PSNR | {m} SSIM" for m in METHODS)
    lines = [
        f"| task | noise | n | {head} | brgm − TV (dB) | TV λ | s/slice naive · TV · brgm |",
        "|---|---|---:|" + "---:|" * (2 * len(METHODS) + 3),
    ]
    for c in cells:
        parts = []
        for method in METHODS:
            for metric, digits in (("psnr", 2), ("ssim", 3)):
                text = mean_std(getattr(c, metric)[method], digits)
                best = max(METHODS, key=lambda m, metric=metric: c.mean(m, metric))  # type: ignore[misc]
                parts.append(f"**{text}**" if best == method else text)
        edge = " (grid edge)" if c.tv.weight in (TV_WEIGHTS[0], TV_WEIGHTS[-1]) else ""
        times = " · ".join(seconds_text(c.seconds[m]) for m in METHODS)
        diverged = f" ({len(c.diverged)} diverged)" if c.diverged else ""
        lines.append(
            f"| {c.task.label} | {noise_label(c.sigma)} | {len(c.psnr['brgm'])}{diverged} | {' | '.join(parts)} | "
            f"{c.mean('brgm') - c.mean('TV'):+.2f} | {c.tv.weight:g}{edge} | {times} |"
        )
    return lines


def describe(value: Any) -> str:
    """A compact text of a configuration entry (lists of named components, or settings)."""
    if isinstance(value, list):
        return ", ".join(describe(v) for v in value) or "none"
    if isinstance(value, dict):
        name = value.get("name")
        body = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"`{name}`({body})" if name else body
    return str(value)


def machine_description(device: torch.device) -> str:
    gpu = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    models = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
    cpu = models[0] if models else platform.processor() or platform.machine()
    return (
        f"{gpu}{cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, torch "
        f"{torch.__version__}, deepinv {version('deepinv')}, Python {platform.python_version()}"
    )


def write_markdown(path: Path, cells: list[Cell], meta: dict[str, Any]) -> None:
    """``quality.md``: settings, one table per set, the verdicts on issue 14's targets."""
    steps = f"{meta['steps']} steps (the library's default)"
    if meta["steps_given"]:
        steps = f"**{meta['steps']} steps (`--steps`: a non-default setting; the default is {meta['default_steps']})**"
    lines = [
        "# Quality benchmark: brgm's defaults vs the naive inverse vs total variation",
        "",
        f"Written by `benchmarks/quality.py` (`python benchmarks/quality.py {meta['command']}`); "
        f"{meta['progress']}.",
        "",
        f"- **brgm:** the library's defaults, `brgm.compose(gen={meta['generator']!r}, fwd=TASK)` (no preset, "
        f"weights or priors given; nothing chosen per task or on any slice), {steps}, through "
        "`brgm.core.pipeline.run` (batches of the default `batch_size`, run seed 0; each item's noise from its "
        f"key). Defaults when run: {meta['defaults']}. Every run's `config.json` and per-item records are in "
        "`runs/TASK-NOISE-SET/`.",
        f"- **TV:** ½‖Ax − y‖² + λ·TV(x) (isotropic, real x), Chambolle–Pock, {meta['tv_iterations']} "
        "iterations (brgm's exact deviation solve from a zero base), on the very measurements brgm got (read back "
        f"from `KEY_measurement.npy`); λ per (task, noise) from {{{', '.join(f'{w:g}' for w in TV_WEIGHTS)}}}, "
        f"best mean PSNR on {meta['train_count']} evenly spaced training slices (`train.npz`, noise seeded "
        "apart from the test measurements), never on test slices; adjointness checked (deepinv, "
        f"relative error ≤ {ADJOINT_TOLERANCE:g}).",
        "- **naive:** the forward model's naive inverse (zero-filled k-space, bicubic upsampling, the masked "
        "input, the blurred image), clamped to [0, 1]: the pipeline's `baseline`.",
        "- **Tasks:** fastMRI random masks (seed 0, the same for every slice) with centre fractions 0.08 (×4) and "
        f"0.04 (×8); super-resolution averages factor × factor blocks; blur is a Gaussian of σ = {BLUR_SIGMA:g} px "
        "(reflect padding); inpainting removes the right half or the central box (25–75 % of each axis), filled "
        "with 0. Noise: additive Gaussian (per real and imaginary part in the orthonormal k-space), only on "
        "measured entries.",
        f"- **Sets:** {meta['counts']}. Metrics: PSNR and SSIM (data range 1) of [0, 1] images, mean ± sample "
        "std over slices; the best mean per row in bold.",
        "- **Time per slice:** brgm: the records' `timings.solve_s` (a batch's solve time over its items), mean; "
        "TV: its solve over the whole set, over the number of slices; naive: one application of the naive "
        "inverse (~0).",
        f"- **Machine:** {meta['machine']}.",
        "",
        "## Issue 14's targets",
        "",
        *verdicts(cells, meta),
    ]
    for name, label in SETS.items():
        rows = [c for c in cells if c.set == name]
        if rows:
            lines += ["", f"## {label[0].upper()}{label[1:]}", "", *results_table(rows)]
    lines += ["", "![truth, naive, TV, brgm per task and noise, one slice per set](quality.png)", ""]
    path.write_text("\n".join(lines))


def write_figure(path: Path, cells: list[Cell]) -> None:
    """``quality.png``: a row per (task, noise); per set, the middle slice's truth, naive, TV and brgm."""
    rows = list(dict.fromkeys((c.task.key, c.sigma) for c in cells))
    labels = {t.key: t.label for t in TASKS}
    sets = [s for s in SETS if any(c.set == s for c in cells)]
    columns = ("truth", *METHODS)
    fig, axes = plt.subplots(
        len(rows),
        len(columns) * len(sets),
        squeeze=False,
        figsize=(1.15 * len(columns) * len(sets), 1.3 * len(rows) + 0.4),
    )
    found = {(c.task.key, c.sigma, c.set): c for c in cells}
    for r, (task, sigma) in enumerate(rows):
        for b, name in enumerate(sets):
            cell = found.get((task, sigma, name))
            for k, column in enumerate(columns):
                ax = axes[r, b * len(columns) + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if cell is not None:
                    ax.imshow(cell.panels[column], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    if column in METHODS:
                        target_ = torch.from_numpy(cell.panels["truth"])[None, None].double()
                        pred = torch.from_numpy(cell.panels[column])[None, None].double()
                        ax.set_xlabel(f"{float(brgm.metrics.psnr(pred, target_, 1.0)[0]):.1f} dB", fontsize=6)
                if r == 0:
                    ax.set_title(f"{name}\n{column}", fontsize=7)
                if b == 0 and k == 0:
                    ax.set_ylabel(f"{labels[task]}\n{noise_label(sigma)}", fontsize=6)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    keys = [t.key for t in TASKS]

    def listed(text: str) -> list[str]:
        return [item.strip() for item in text.split(",") if item.strip()]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="demo-brain64", help="generator name or checkpoint path")
    parser.add_argument("--tasks", type=listed, default=keys, help=f"of {','.join(keys)} (default: all)")
    parser.add_argument(
        "--noise", type=listed, default=["none", "0.02"], help="noise levels: none and/or σ values"
    )
    parser.add_argument("--sets", type=listed, default=list(SETS), help=f"of {','.join(SETS)} (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="at most N evenly spaced slices per test set")
    parser.add_argument("--samples", type=int, default=16, help="generator samples in the set `samples`")
    parser.add_argument("--steps", type=int, default=None, help="brgm steps (default: the library's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tv-iterations", type=int, default=5000, help="Chambolle-Pock iterations of TV")
    parser.add_argument("--train-slices", type=int, default=8, help="training slices TV's λ is chosen on")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--data", type=Path, default=None, help=f"demo data folder (default {default_data_dir()})"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="folder for quality.md, quality.png, runs/"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks) - set(keys)) + sorted(set(args.sets) - set(SETS))
    if unknown:
        parser.error(f"unknown task(s) or set(s) {unknown}; tasks: {','.join(keys)}; sets: {','.join(SETS)}")
    args.tasks = [t for t in TASKS if t.key in args.tasks]
    args.sets = [s for s in SETS if s in args.sets]
    try:
        args.noise = sorted({0.0 if n == "none" else float(n) for n in args.noise})
    except ValueError:
        parser.error(f"--noise takes 'none' and numbers, got {args.noise}")
    if any(n < 0 for n in args.noise):
        parser.error("--noise levels must be ≥ 0")
    for name in ("steps", "limit", "samples", "tv_iterations", "train_slices", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = ensure_data(args.data or default_data_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs").mkdir(exist_ok=True)
    sets: dict[str, tuple[list[str], np.ndarray]] = {}
    for name in args.sets:
        if name == "samples":
            sets[name] = generator_samples(args.generator, args.samples, torch.device(args.device))
        else:
            sets[name] = load_slices(data, SET_FILES[name], args.limit)
    _, train = load_slices(data, "train", args.train_slices)
    x_train = torch.from_numpy(train).to(args.device)
    reference = compose(TASKS[0], 0.0, argparse.Namespace(**{**vars(args), "steps": None}))
    full = {n: len(np.load(data / f"{f}.npz")["images"]) for n, f in SET_FILES.items()}
    meta: dict[str, Any] = {
        "command": " ".join(sys.argv[1:] if argv is None else argv),
        "generator": args.generator,
        "steps": args.steps or reference.solver.steps,
        "steps_given": args.steps is not None,
        "default_steps": reference.solver.steps,
        "defaults": "; ".join(
            f"{key} {describe(reference.config[key])}"
            for key in ("like", "prior", "solver")
            if key in reference.config
        ),
        "tv_iterations": args.tv_iterations,
        "train_count": len(train),
        "noise": args.noise,
        "counts": "; ".join(
            f"{n} {len(sets[n][0])}"
            + (f" of {full[n]} (evenly spaced)" if len(sets[n][0]) < full.get(n, 0) else "")
            for n in args.sets
        ),
        "machine": machine_description(torch.device(args.device)),
    }
    cells: list[Cell] = []
    planned = len(args.tasks) * len(args.noise) * len(args.sets)
    started = time.perf_counter()
    for task in args.tasks:
        for sigma in args.noise:
            tv = tv_choice(task, sigma, x_train, args)
            for name in args.sets:
                cells.append(run_cell(task, sigma, name, *sets[name], tv, args))
                minutes = (time.perf_counter() - started) / 60
                meta["progress"] = f"{len(cells)} of {planned} (task, noise, set) runs, {minutes:.1f} min"
                if len(cells) < planned:
                    meta["progress"] = f"**incomplete: {meta['progress']}**"
                write_markdown(args.out / "quality.md", cells, meta)
                write_figure(args.out / "quality.png", cells)
    print(f"wrote {args.out / 'quality.md'} and {args.out / 'quality.png'}", flush=True)


if __name__ == "__main__":
    main()
