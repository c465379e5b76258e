"""Calibration benchmark (issue 25): are brgm's posterior standard deviations honest error bars, where it matters?

For k-space ×4 and ×8 (fastMRI random masks) and inpainting of a central box, each with Gaussian noise σ = 0.02
(k-space: per real and imaginary part), every image is measured through the problem's own forward model *with
its noise* (``forward_model.simulate``, one seed per image, as ``brgm compose`` simulates a clean input) and
reconstructed with a posterior sampler (``solver=laplace`` by default) at its default settings. Sets:

- ``generator``: images drawn from the generator itself (``z`` seeds 1000, 1001, ...): the model is exactly
  right, so a correct posterior covers nominally whatever the data. Simulation-based calibration (Talts et al.
  2018): besides coverage, the rank of the truth among the draws per pixel, whose fifths are each 20 % when
  the draws and the truth come from one distribution;
- ``in-subject`` / ``out-of-subject``: held-out 64×64 demo-brain slices with their truth
  (``scripts/make_demo_data.py``; out of subject is a head the generator never saw);
- ``train``: training slices (``--calibration fit`` chooses the factors on them).

Per task and set it reports, **foreground first** (brain pixels, truth > 0.02, :func:`brgm.core.diagnostics.
foreground`; then all pixels), pooled over the images:

- the coverage of the central 90 % and 50 % intervals ``mean ± z·std`` of the raw std, and with the
  calibration's factor per level (``mean ± z·k·std``; :mod:`brgm.core.calibration`): the generator's shipped
  calibration (``--calibration auto``, fitted with ``brgm calibrate`` on training slices only), a file, or
  factors fitted here on the training slices (``fit``);
- Spearman(std, |mean − truth|) and AUSE (RMSE; the area between the sparsification curve and the oracle's)
  per image, averaged, and the lowest Spearman of any image; beside it the Spearman a truth drawn from the
  posterior itself would score (:func:`brgm.core.diagnostics.expected_spearman`, leave-one-draw-out): where the
  std hardly varies over the brain it is low however right the posterior, so a Spearman below 0.3 there is out
  of any calibrated sampler's reach;
- the rank fifths (largest deviation from 20 %), the RMSE and the solve time per image.

    python benchmarks/calibration.py --limit 1 --tasks kspace4 --sets generator --option solver.groups=1 --out /tmp/cal
    nice -n 10 python benchmarks/calibration.py --out docs/                  # the table (defaults, about 1 h)
    python benchmarks/calibration.py --report OUT/calibration.json --out docs/   # table only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import brgm
from brgm.core import calibration
from brgm.core.diagnostics import (
    calibration_metrics,
    expected_spearman,
    foreground,
    sparsification_error,
    spearman,
)
from brgm.core.io import calibrations
from brgm.core.plugins import registry

TASKS = {
    "kspace4": ("k-space ×4", "kspace+gaussian_noise", {"fwd.kspace.acceleration": 4}),
    "kspace8": ("k-space ×8", "kspace+gaussian_noise", {"fwd.kspace.acceleration": 8}),
    "inpaint-box": ("inpainting (central box)", "mask+gaussian_noise", {"fwd.mask.missing": "box"}),
}
FILES = {"train": "train", "in-subject": "test_in_subject", "out-of-subject": "test_out_of_subject"}
SETS = ("generator", "in-subject", "out-of-subject")
NOISE = 0.02
GENERATOR_SEED = 1000
REGIONS = ("foreground", "all")


def data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brgm" / "demo-brain"


def load(name: str, limit: int) -> np.ndarray:
    """``limit`` evenly spaced slices ``[n, 1, 64, 64]`` of one split, the two ends left out."""
    images = np.load(data_dir() / f"{FILES[name]}.npz")["images"]
    rows = np.round(np.linspace(0, len(images) - 1, limit + 2)[1:-1]).astype(int)
    return images[rows].astype(np.float32)


def drawn(problem: brgm.Problem, count: int) -> np.ndarray:
    """``count`` images ``[n, C, H, W]`` in [0, 1] drawn from the problem's generator (z seeds 1000, ...)."""
    g = problem.generator
    z = torch.stack(
        [
            torch.randn(g.z_dim, generator=torch.Generator().manual_seed(GENERATOR_SEED + i))
            for i in range(count)
        ]
    )
    with torch.no_grad():
        x = g.synthesis(g.mapping(z.to(problem.device)))
    return ((x + 1) / 2).clamp(0, 1).float().cpu().numpy()


def compose(task: str, args: argparse.Namespace) -> brgm.Problem:
    _, fwd, settings = TASKS[task]
    options = dict(item.split("=", 1) for item in args.option)
    return brgm.compose(
        gen=args.generator,
        fwd=fwd,
        solver=args.solver,
        device=args.device,
        **settings,
        **{"fwd.gaussian_noise.sigma": NOISE},
        **options,
    )


def solve(problem: brgm.Problem, images: np.ndarray) -> dict[str, Any]:
    """Posterior mean, std ``[n, 1, 64, 64]`` and draws ``[S, n, 1, 64, 64]`` of the images measured with noise
    (image ``i`` with seed ``i``), and the seconds per image."""
    x = torch.from_numpy(images).to(problem.device)
    with torch.no_grad():
        y = torch.cat(
            [
                problem.forward_model.simulate(x[i : i + 1], torch.Generator().manual_seed(i))
                for i in range(len(x))
            ]
        )
    start = time.perf_counter()
    result = brgm.reconstruct(problem, y, seeds=list(range(len(images))))
    seconds = (time.perf_counter() - start) / len(images)
    return {"mean": result.image, "std": result.std, "samples": result.samples, "seconds": seconds}


def rank_fifths(samples: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> list[float]:
    """The share of the region's pixels ``[n, C, H, W]`` whose truth falls in each fifth of the draws
    ``[S, n, C, H, W]``: the randomised rank ``(#draws below + U) / (S + 1)``, ``U`` uniform in [0, 1) (seeded),
    is uniform when the truth and the draws come from one distribution, whatever ``S``."""
    below = (samples < truth).double().sum(0)
    u = torch.rand(below.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fifth = ((below + u) / (samples.shape[0] + 1) * 5).floor()[region]
    return [float((fifth == i).double().mean()) for i in range(5)]


def evaluate(solved: dict[str, Any], truth: np.ndarray, factors: dict[str, float] | None) -> dict[str, Any]:
    """Per region: the raw and calibrated coverage (pooled), Spearman and AUSE per image (mean, lowest), the
    rank fifths, the RMSE and the mean std."""
    mean, std, samples = (solved[k].double() for k in ("mean", "std", "samples"))
    target = torch.from_numpy(truth).double()
    masks = {"foreground": foreground(target), "all": torch.ones_like(target, dtype=torch.bool)}
    raw = calibration_metrics(mean, std, target)
    cal = None if factors is None else calibration_metrics(mean, std, target, factors=factors)
    error = (mean - target).abs()
    out: dict[str, Any] = {}
    for region, mask in masks.items():
        row: dict[str, Any] = {"raw": raw[region]}
        if cal is not None:
            row["calibrated"] = cal[region]
        per_image = [spearman(s[m], e[m]) for s, e, m in zip(std, error, mask, strict=True)]
        row["spearman_mean"] = float(np.nanmean(per_image))
        row["spearman_min"] = float(np.nanmin(per_image))
        expected = [expected_spearman(samples[:, i][:, m]) for i, m in enumerate(mask)]
        row["spearman_expected"] = expected
        row["spearman_below_reach"] = int(
            sum(r < 0.3 and e < 0.3 for r, e in zip(per_image, expected, strict=True))
        )
        row["ause"] = float(
            np.mean([sparsification_error(s[m], e[m]) for s, e, m in zip(std, error, mask, strict=True)])
        )
        row["rank_fifths"] = rank_fifths(samples, target, mask)
        row["rmse"] = float(error[mask].square().mean().sqrt())
        row["mean_std"] = float(std[mask].mean())
        out[region] = row
    out["seconds"] = solved["seconds"]
    return out


def factors_for(problem: brgm.Problem, args: argparse.Namespace) -> tuple[dict[str, float] | None, str]:
    """The factors the calibrated columns use, and where they come from."""
    if args.calibration == "none":
        return None, "none"
    if args.calibration == "fit":
        train = load("train", args.limit)
        solved = solve(problem, train)
        fitted = calibration.fit(
            solved["mean"], solved["std"], torch.from_numpy(train).to(solved["mean"].dtype), {}
        )
        return fitted.factors, f"fitted here on {len(train)} training slices"
    if args.calibration == "auto":
        path = registry().get("generator", args.generator).obj().calibration_file()
    else:
        path = Path(args.calibration)
    found = None if path is None else calibration.find(calibrations.load(path), problem.config)
    if found is None:
        return None, f"none fitted for this configuration in {path}"
    shown = os.path.relpath(found.source) if Path(found.source).is_absolute() else found.source
    return found.factors, f"{shown} ({found.fitted_on})"


def expected(row: dict[str, Any]) -> str:
    """The expected Spearman's mean (lowest) over the images, or — for results written before it existed."""
    values = row.get("spearman_expected")
    return "—" if values is None else f"{np.nanmean(values):.2f} ({np.nanmin(values):.2f})"


def fifths_gap(fifths: list[float]) -> float:
    return max(abs(f - 0.2) for f in fifths)


def table(results: dict[str, Any], region: str) -> str:
    lines = [
        "| task | set | n | k₉₀ · k₅₀ | cov. 90 % raw → k | cov. 50 % raw → k | Spearman mean (min) | expected if calibrated: mean (min) | AUSE | rank fifths: max gap | RMSE | s / image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in results["tasks"].items():
        factors = entry["factors"]
        k = "—" if factors is None else f"{factors['90']:.3g} · {factors['50']:.3g}"
        for name in SETS:
            if name not in entry:
                continue
            row = entry[name][region]
            raw, cal = row["raw"], row.get("calibrated")

            def cov(level: str, raw=raw, cal=cal) -> str:
                after = "" if cal is None else f" → {cal[f'coverage{level}']:.1%}"
                return f"{raw[f'coverage{level}']:.1%}{after}"

            lines.append(
                f"| {TASKS[task][0]} | {name} | {entry[name]['n']} | {k} | {cov('90')} | {cov('50')} | "
                f"{row['spearman_mean']:.2f} ({row['spearman_min']:.2f}) | {expected(row)} | {row['ause']:.4f} | "
                f"{fifths_gap(row['rank_fifths']):.3f} | {row['rmse']:.4f} | {entry[name]['seconds']:.1f} |"
            )
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> list[str]:
    """Issue 25's targets, each met or not."""
    lines = []
    for task, entry in results["tasks"].items():
        if "generator" in entry:
            row = entry["generator"]["foreground"]
            raw = row["raw"]
            ok = (
                0.85 <= raw["coverage90"] <= 0.95
                and 0.4 <= raw["coverage50"] <= 0.6
                and row["spearman_min"] >= 0.3
            )
            lines.append(
                f"- {TASKS[task][0]}, generator images, brain pixels, no calibration: 90 % {raw['coverage90']:.1%} "
                f"(85–95 %), 50 % {raw['coverage50']:.1%} (40–60 %), lowest Spearman {row['spearman_min']:.2f} "
                f"(≥ 0.3 on every image): {'met' if ok else 'NOT met'}"
                + (
                    ""
                    if "spearman_below_reach" not in row
                    else f"; {row['spearman_below_reach']} of {entry['generator']['n']} images below 0.3 where "
                    "a truth drawn from the posterior itself would score below 0.3 too"
                )
            )
        if "out-of-subject" in entry and task != "inpaint-box":
            cal = entry["out-of-subject"]["foreground"].get("calibrated")
            if cal is None:
                lines.append(f"- {TASKS[task][0]}, out of subject: no calibration to apply: NOT met")
            else:
                ok = 0.85 <= cal["coverage90"] <= 0.95
                lines.append(
                    f"- {TASKS[task][0]}, out of subject, brain pixels, calibrated: 90 % {cal['coverage90']:.1%} "
                    f"(85–95 %): {'met' if ok else 'NOT met'}"
                )
    return lines


def report(results: dict[str, Any]) -> str:
    """``calibration.md``: the settings, the machine, the tables (foreground first) and the verdicts."""
    s = results["settings"]
    sources = "; ".join(dict.fromkeys(e["factor_source"] for e in results["tasks"].values()))
    return "\n".join(
        [
            "# Calibration of brgm's posterior uncertainty",
            "",
            f"Written by `benchmarks/calibration.py` on {results['date']} (see its docstring for the definitions). "
            f"Solver `{s['solver']}` on `{s['generator']}` at its defaults"
            + (f" with {', '.join(s['option'])} (not the defaults)" if s["option"] else "")
            + f"; every image measured with noise σ = {NOISE}; {results['machine']}.",
            "",
            f"The calibrated columns (raw → k) use the std times each level's factor k; factors from {sources}. "
            "Spearman, AUSE, the rank fifths and the RMSE do not depend on k. 'rank fifths: max gap' is the largest "
            "distance of the five shares of the truth's rank among the draws from 20 %.",
            "",
            "Brain pixels (truth > 0.02):",
            "",
            table(results, "foreground"),
            "",
            "All pixels (the background included, where error and std are both near 0):",
            "",
            table(results, "all"),
            "",
            "Issue 25's targets:",
            "",
            *verdicts(results),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", default="demo-brain64")
    parser.add_argument("--solver", default="laplace", choices=("laplace", "langevin", "vi"))
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting other than the defaults (labelled in the report)",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--limit", type=int, default=6, help="images per set")
    parser.add_argument(
        "--calibration",
        default="auto",
        help="auto (the generator's shipped one), fit (on training slices here), none, or a file",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/calibration"))
    parser.add_argument(
        "--report", type=Path, help="only rewrite OUT/calibration.md from this calibration.json"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        (args.out / "calibration.md").write_text(report(json.loads(args.report.read_text())))
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results: dict[str, Any] = {
        "settings": {k: v if isinstance(v, (list, int)) else str(v) for k, v in vars(args).items()},
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "tasks": {},
    }
    for task in args.tasks:
        problem = compose(task, args)
        factors, source = factors_for(problem, args)
        entry: dict[str, Any] = {"factors": factors, "factor_source": source}
        for name in args.sets:
            images = drawn(problem, args.limit) if name == "generator" else load(name, args.limit)
            solved = solve(problem, images)
            entry[name] = {"n": len(images), **evaluate(solved, images, factors)}
            print(task, name, json.dumps(entry[name]), flush=True)
            results["tasks"][task] = entry
            (args.out / "calibration.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "calibration.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
