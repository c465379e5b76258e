"""Calibration benchmark (issue 15, item 3): are brgm's posterior standard deviations honest error bars?

For k-space ×4 and ×8 (fastMRI random masks) and inpainting of a central box, each with Gaussian noise σ = 0.02
(k-space: per real and imaginary part), on 64×64 demo-brain slices with their truth
(``scripts/make_demo_data.py``: ``train``, ``test_in_subject``, ``test_out_of_subject``), it reconstructs every
slice with a posterior sampler (``solver=langevin`` by default; ``brgm.reconstruct`` on measurements simulated by
the problem's own forward model) and measures per task and set, over all pixels of every slice:

- the coverage of the central 90 % and 50 % intervals ``mean ± z·k·std`` (``z`` the normal quantile, ``k`` the
  recalibration factor: 1 uncalibrated);
- the Spearman rank correlation between the std and ``|mean − truth|`` per slice (averaged over slices);
- AUSE (RMSE): the area between the sparsification curve (RMSE of the pixels left after removing the fraction
  ``f`` with the largest std, ``f`` in 0, 0.01, …, 0.99) and the oracle's (removing the largest errors), per
  slice, averaged; 0 is a perfect ranking;
- the solve time per slice.

Split-conformal recalibration (Angelopoulos & Bates, "A gentle introduction to conformal prediction", 2022): per
task and per level ℓ (90 % and 50 %), ``k_ℓ`` is the ⌈(n + 1)·ℓ⌉-th smallest of the scores
``|mean − truth| / (z_ℓ·std)`` over the ``n`` pixels of the training slices (``z_ℓ = Φ⁻¹((1 + ℓ)/2)``), so that the
ℓ interval ``mean ± z_ℓ·k_ℓ·std`` covers ℓ of the training pixels. One factor per level, because the errors are
not Gaussian in units of the std: the tails are heavier, so a single factor fitted at 90 % makes 50 % intervals
too wide (65–74 % coverage on this benchmark). The factors are saved in ``OUT/conformal.json`` and applied
unchanged to the test slices.

    python benchmarks/calibration.py --limit 2 --map-steps 20 --steps 20 --out /tmp/cal     # quick check
    nice -n 10 python benchmarks/calibration.py --out docs/                                 # the table
    python benchmarks/calibration.py --report OUT/calibration.json --out docs/              # table only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import brgm
from brgm.core.diagnostics import coverage, sparsification_error, spearman

TASKS = {
    "kspace4": ("k-space ×4", "kspace", {"fwd.kspace.acceleration": 4, "fwd.kspace.center_fraction": 0.08}),
    "kspace8": ("k-space ×8", "kspace", {"fwd.kspace.acceleration": 8, "fwd.kspace.center_fraction": 0.04}),
    "inpaint-box": ("inpainting (central box)", "mask", {"fwd.mask.missing": "box", "fwd.mask.fill": 0.0}),
}
SETS = {"train": "train", "in-subject": "test_in_subject", "out-of-subject": "test_out_of_subject"}
NOISE = 0.02
LEVELS = (0.9, 0.5)
REGIONS = ("all", "foreground")


def data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brgm" / "demo-brain"


def load(name: str, limit: int) -> np.ndarray:
    """``limit`` evenly spaced slices ``[n, 1, 64, 64]`` of one split, the two ends left out."""
    images = np.load(data_dir() / f"{name}.npz")["images"]
    rows = np.round(np.linspace(0, len(images) - 1, limit + 2)[1:-1]).astype(int)
    return images[rows].astype(np.float32)


def region_mask(mean: np.ndarray, truth: np.ndarray, region: str) -> np.ndarray:
    """The pixels a region's figures pool: ``all``, or ``foreground`` (the truth or the mean above 0: the pixels
    that are not background in both, where an error is possible)."""
    if region == "all":
        return np.ones(truth.shape, dtype=bool)
    return (truth > 0) | (mean > 0)


def scores(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, level: float) -> np.ndarray:
    """``|mean − truth| / (z·std)`` per pixel, ``z`` the normal quantile of the central ``level`` interval (0 where
    both are 0, inf where only the std is)."""
    error = np.abs(mean - truth)
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(error == 0, 0.0, error / (z * std))


def conformal_factor(train_scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1)·level⌉-th smallest score of ``n``: the split-conformal factor on the std for ``level``."""
    flat = np.sort(train_scores.ravel())
    rank = min(len(flat), math.ceil((len(flat) + 1) * level))
    return float(flat[rank - 1])


def evaluate(
    mean: np.ndarray, std: np.ndarray, truth: np.ndarray, factors: dict[str, float] | None, region: str
) -> dict[str, float]:
    """Over the pixels of ``region`` (:func:`region_mask`): the coverage of the 90 % and 50 % intervals with the
    std times each level's factor (``factors`` keyed ``"90"``, ``"50"``; None: 1), pooled over slices,
    Spearman(std, |error|) and AUSE per slice, averaged, the RMSE, and the mean std (times the 90 % factor)."""
    masks = torch.from_numpy(region_mask(mean, truth, region))
    mean_t, std_t, truth_t = (torch.from_numpy(a).double() for a in (mean, std, truth))

    def scaled(level: float) -> torch.Tensor:
        factor = 1.0 if factors is None else factors[str(round(level * 100))]
        return torch.where(std_t > 0, factor * std_t, 0.0)  # inf·0 (no interval) is 0

    row = {
        f"coverage{round(level * 100)}": coverage(mean_t[masks], scaled(level)[masks], truth_t[masks], level)
        for level in LEVELS
    }
    error = (mean_t - truth_t).abs()
    per_slice = list(zip(std_t, error, masks, strict=True))
    row["spearman"] = float(np.nanmean([spearman(s[m], e[m]) for s, e, m in per_slice]))
    row["ause"] = float(np.mean([sparsification_error(s[m], e[m]) for s, e, m in per_slice]))
    row["rmse"] = float(error[masks].square().mean().sqrt())
    row["mean_std"] = float(scaled(LEVELS[0])[masks].mean())
    row["pixels"] = float(masks.double().mean())
    return row


def solve(task: str, images: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior mean and std ``[n, 1, 64, 64]`` of the slices under ``task``, and the seconds per slice."""
    _, fwd, settings = TASKS[task]
    options = {
        "solver.map_steps": args.map_steps,
        "solver.steps": args.steps,
        "solver.chains": args.chains,
        "solver.samples": args.samples,
        "solver.batch_size": len(images),
    }
    if args.solver == "vi":
        options = {k: v for k, v in options.items() if "chains" not in k}
    problem = brgm.compose(
        gen=args.generator,
        fwd=f"{fwd}+gaussian_noise",
        solver=args.solver,
        device=args.device,
        **settings,
        **options,
        **{"fwd.gaussian_noise.sigma": NOISE},
    )
    x = torch.from_numpy(images).to(problem.device)
    with torch.no_grad():
        y = problem.forward_model(x)
    start = time.perf_counter()
    result = brgm.reconstruct(problem, y, seeds=list(range(len(images))))
    seconds = (time.perf_counter() - start) / len(images)
    return result.image.numpy(), result.std.numpy(), seconds


def table(results: dict[str, Any], region: str) -> str:
    lines = [
        "| task | set | k₉₀ · k₅₀ | cov. 90 % | cov. 50 % | cov. 90 % (k₉₀) | cov. 50 % (k₅₀) | Spearman | AUSE | RMSE | s / slice |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in results["tasks"].items():
        for name in ("in-subject", "out-of-subject"):
            if name not in entry:
                continue
            raw, cal = entry[name][region]["uncalibrated"], entry[name][region]["calibrated"]
            factors = entry["factor"]
            lines.append(
                f"| {TASKS[task][0]} | {name} | {factors[region]['90']:.3g} · {factors[region]['50']:.3g} | "
                f"{raw['coverage90']:.1%} | "
                f"{raw['coverage50']:.1%} | {cal['coverage90']:.1%} | {cal['coverage50']:.1%} | "
                f"{raw['spearman']:.2f} | {raw['ause']:.4f} | {raw['rmse']:.4f} | {entry[name]['seconds']:.1f} |"
            )
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    """``calibration.md``: the settings, the machine, the table and the verdict on issue 15's targets."""
    settings = results["settings"]
    checks = []
    for task, entry in results["tasks"].items():
        for region in REGIONS:
            if "out-of-subject" not in entry:
                continue
            cal = entry["out-of-subject"][region]["calibrated"]
            raw = entry["out-of-subject"][region]["uncalibrated"]
            ok = (
                0.85 <= cal["coverage90"] <= 0.95
                and 0.4 <= cal["coverage50"] <= 0.6
                and raw["spearman"] >= 0.4
            )
            checks.append(
                f"- {TASKS[task][0]}, {region} pixels: out of subject, recalibrated 90 % coverage {cal['coverage90']:.1%} (target 85–95 %), "
                f"50 % coverage {cal['coverage50']:.1%} (target 40–60 %), Spearman {raw['spearman']:.2f} (target ≥ 0.4): "
                f"{'met' if ok else 'NOT met'}"
            )
    return "\n".join(
        [
            "# Calibration of brgm's posterior uncertainty",
            "",
            f"Written by `benchmarks/calibration.py` (see its docstring for the definitions). Solver "
            f"`{settings['solver']}` on `{settings['generator']}`: MAP start {settings['map_steps']} steps, "
            f"{settings['steps']} sampler steps, {settings['chains']} chains, {settings['samples']} draws per "
            f"slice; {settings['limit']} slices per set (train, in-subject, out-of-subject); noise σ = {NOISE}; "
            f"{results['machine']}.",
            "",
            "k₉₀ and k₅₀ are the split-conformal factors on the std for the 90 % and 50 % intervals, chosen on the "
            "training slices (saved in `conformal.json`); the columns marked (k) use the std times each level's "
            "factor, the others the std as the sampler gives it. Spearman, AUSE and RMSE do not depend on k.",
            "",
            "All pixels (64 × 64 per slice):",
            "",
            table(results, "all"),
            "",
            "Foreground pixels (the truth or the mean above 0; k chosen on the training slices' foreground):",
            "",
            table(results, "foreground"),
            "",
            "Issue 15's targets:",
            "",
            *checks,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", default="demo-brain64")
    parser.add_argument("--solver", default="langevin", choices=("langevin", "vi"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--limit", type=int, default=3, help="slices per set (train and test)")
    parser.add_argument("--map-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/calibration"))
    parser.add_argument(
        "--report", type=Path, help="only rewrite OUT/calibration.md from this calibration.json"
    )
    args = parser.parse_args()
    if args.report:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "calibration.md").write_text(report(json.loads(args.report.read_text())))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results: dict[str, Any] = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "tasks": {},
    }
    for task in args.tasks:
        entry: dict[str, Any] = {}
        data = {name: load(file, args.limit) for name, file in SETS.items()}
        mean, std, seconds = solve(task, data["train"], args)
        np.savez_compressed(args.out / f"{task}_train.npz", mean=mean, std=std, truth=data["train"])
        entry["factor"] = {
            region: {
                str(round(level * 100)): conformal_factor(
                    scores(mean, std, data["train"], level)[region_mask(mean, data["train"], region)], level
                )
                for level in LEVELS
            }
            for region in REGIONS
        }
        entry["train"] = {
            "all": {"uncalibrated": evaluate(mean, std, data["train"], None, "all")},
            "seconds": seconds,
        }
        for name in ("in-subject", "out-of-subject"):
            mean, std, seconds = solve(task, data[name], args)
            np.savez_compressed(args.out / f"{task}_{name}.npz", mean=mean, std=std, truth=data[name])
            entry[name] = {"seconds": seconds}
            for region in REGIONS:
                entry[name][region] = {
                    "uncalibrated": evaluate(mean, std, data[name], None, region),
                    "calibrated": evaluate(mean, std, data[name], entry["factor"][region], region),
                }
            print(task, name, json.dumps(entry[name]), flush=True)
        results["tasks"][task] = entry
        (args.out / "conformal.json").write_text(
            json.dumps({t: e["factor"] for t, e in results["tasks"].items()}, indent=2) + "\n"
        )
        (args.out / "calibration.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "calibration.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
