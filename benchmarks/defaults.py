"""Choosing brgm's default priors on training slices only (issue 14, item 3).

The calibrated energy has no per-task weight, so what remains to choose once for every task is which priors are
selected by default: the Gaussian prior on W+ alone, or with the image-space deviation (``prior.deviation``,
total variation of weight β in natural units) that lets a reconstruction leave the generator's range, solved
after the latents (the default) or jointly with them. (BRGM's colinearity prior, measured the same way on 6
slices of k-space ×4, changed the mean PSNR by 0.02 dB at its calibrated scale, so it is no longer a candidate.) This script reconstructs ``--limit`` evenly spaced slices of the *training* split
(``train.npz`` of ``scripts/make_demo_data.py``, the slices ``demo-brain64`` was trained on; never the test
splits) for each candidate and task, noiseless and noisy (Gaussian σ = 0.02, the noise model composed so σ is
known), and reports the mean PSNR of the final (data-consistent) reconstruction and of the generator's image.

The built-in candidates are the prior study's (at its settings, :data:`PRIOR_STUDY`); ``--candidates``
runs others, such as docs/defaults.md's learning-rate study; ``--deviation-grid`` scores the deviation prior's β
and image share over a grid from one MAP fit per task and noise, with ``--holdout`` also a choice of the pair per
item by hold-out validation of the measurement (and the best pair per item, an oracle), and ``--upside-down`` on
the training slices turned upside down (heads the generator cannot produce; still no test slice).

    nice -n 5 python benchmarks/defaults.py --out /tmp/defaults.md            # 4 slices, about 30 minutes on 2 cores
    python benchmarks/defaults.py --limit 2 --steps 20 --tasks kspace4 --out /tmp/defaults.md   # quick check
    python benchmarks/defaults.py --tasks kspace8,sr4 --deviation-grid "10,3:0.4,0.6" --holdout 0.2 --out /tmp/cv.md
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import torch
from quality import NOISE_LEVELS, TASKS, Task, default_data_dir, ensure_data, load_slices, noise_label

import brgm
from brgm.core.consistency import consistent
from brgm.core.io.outputs import item_metrics
from brgm.core.terms import Latents
from brgm.plugins.priors.deviation import DeviationPrior

#: what the prior study ran at, since changed (docs/defaults.md): BRGM's peak learning rate (the default became
#: 0.02), all of the deviation prior's β on the deviation (the default share on the image's TV became 0.4), and
#: 500 iterations of the deviation's solve, with no early stop (5000, stopping once converged)
PRIOR_STUDY = {
    "solver.lr": 0.1,
    "prior.deviation.image_share": 0,
    "prior.deviation.iterations": 500,
    "prior.deviation.tolerance": 0,
}
#: candidate default prior selections: (label, ``prior=``, settings)
CANDIDATES: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("gaussian", "gaussian", {"solver.lr": PRIOR_STUDY["solver.lr"]}),
    (
        "gaussian+deviation β=10, joint",
        "gaussian+deviation",
        {"prior.deviation.weight": 10, "solver.deviation_lr": 0.01, **PRIOR_STUDY},
    ),
    *(
        (
            f"gaussian+deviation β={beta:g}",
            "gaussian+deviation",
            {"prior.deviation.weight": beta, **PRIOR_STUDY},
        )
        for beta in (3, 10, 30)
    ),
)


def parse_candidates(text: str) -> tuple[tuple[str, str, dict[str, str]], ...]:
    """``"gaussian;gaussian+deviation:prior.deviation.weight=100,solver.deviation_lr=0.03"`` -> candidates."""
    candidates = []
    for entry in filter(None, text.split(";")):
        prior, _, rest = entry.partition(":")
        settings = dict(item.split("=", 1) for item in filter(None, rest.split(",")))
        candidates.append((entry, prior, settings))
    return tuple(candidates)


def reconstruct(
    task: Task, sigma: float, prior: str, settings: dict[str, object], images: np.ndarray, steps: int
):
    """Mean PSNR of the reconstructions and of the generator's images, and the seconds per slice."""
    fwd, fwd_settings = task.chain(sigma)
    problem = brgm.compose(gen="demo-brain64", fwd=fwd, device="cpu", prior=prior, **fwd_settings, **settings)
    x = torch.from_numpy(images)
    y = problem.forward_model.simulate(x, torch.Generator().manual_seed(1))
    start = time.perf_counter()
    result = brgm.reconstruct(problem, y, steps=steps, seed=0)
    seconds = (time.perf_counter() - start) / len(x)
    final = np.mean([item_metrics(result.image[i], x[i])["psnr"] for i in range(len(x))])
    generated = result.image if result.generated is None else result.generated.clamp(0, 1)
    own = np.mean([item_metrics(generated[i], x[i])["psnr"] for i in range(len(x))])
    return float(final), float(own), seconds


#: random draws of held-out measured entries scored by ``--holdout``
HOLDOUT_DRAWS = 2


def deviation_grid(
    task: Task,
    sigma: float,
    images: np.ndarray,
    steps: int,
    grid: Sequence[tuple[float, float]],
    holdout: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """PSNR per pair of ``grid`` and item ``[pairs, N]`` of the default reconstruction with the deviation prior's
    ``(weight, image_share)`` set to the pair, from one MAP fit: by default the latents are fit without the
    deviation prior (a staged solve), so only the deviation's exact solve and the consistency step after it
    depend on the pair. Checked: the default pair reproduces the library's own reconstruction exactly.

    With ``holdout`` > 0, also each item's PSNR at the pair chosen by hold-out validation ``[N]``: in each of
    :data:`HOLDOUT_DRAWS` seeded draws a fraction ``holdout`` of the measured entries is left out of the
    deviation's data term, and the pair whose reconstruction predicts them best (least mean squared error,
    summed over the draws) is chosen; otherwise None."""
    fwd, fwd_settings = task.chain(sigma)
    problem = brgm.compose(
        gen="demo-brain64", fwd=fwd, device="cpu", prior="gaussian+deviation", **fwd_settings
    )
    forward_model = problem.forward_model
    x = torch.from_numpy(images)
    y = forward_model.simulate(x, torch.Generator().manual_seed(1))
    result = brgm.reconstruct(problem, y, steps=steps, seed=0)
    default = next(p for p in problem.priors if isinstance(p, DeviationPrior))
    with torch.no_grad():
        base = problem.image(Latents(ws=result.ws))
    noise = problem.noise_level(y)
    sigma_energy = problem.energy_sigma(y, noise)
    refines = problem.execution.refines(forward_model, y.shape)
    measured = forward_model.measured(y.shape, y.device)
    measured = torch.ones_like(y.real) if measured is None else measured.expand(y.shape).to(y.real.dtype)
    draws = torch.Generator().manual_seed(7)
    held_out = [
        (torch.rand(y.shape, generator=draws) < holdout).to(measured) * measured
        for _ in range(HOLDOUT_DRAWS if holdout > 0 else 0)
    ]
    scores, errors = [], []
    for weight, share in grid:
        prior = attrs.evolve(default, weight=weight, image_share=share)
        image = (
            base + prior.minimise_deviation(forward_model, base, y, sigma_energy, torch.zeros_like(base))
        ).clamp(0, 1)
        if refines:
            image = consistent(forward_model, image, y, noise).clamp(0, 1)
        if (weight, share) == (default.weight, default.image_share) and not torch.equal(image, result.image):
            raise RuntimeError("the grid's default pair does not reproduce the library's reconstruction")
        scores.append([item_metrics(image[i], x[i])["psnr"] for i in range(len(x))])
        error = torch.zeros(len(x))
        for held in held_out:
            fit = prior.minimise_deviation(
                forward_model, base, y, sigma_energy, torch.zeros_like(base), keep=1 - held
            )
            miss = (forward_model((base + fit).clamp(0, 1)) - y).abs().square() * held
            error += miss.flatten(1).sum(dim=1) / held.flatten(1).sum(dim=1)
        errors.append(error.numpy())
    psnr = np.array(scores)
    chosen = psnr[np.argmin(errors, axis=0), np.arange(len(x))] if holdout > 0 else None
    return psnr, chosen


def parse_grid(text: str) -> tuple[tuple[float, float], ...]:
    """``"3,10:0,0.4"`` (weights ``:`` image shares) -> every (weight, image_share) pair."""
    weights, _, shares = text.partition(":")
    return tuple((float(w), float(s)) for w in weights.split(",") for s in shares.split(","))


def grid_table(tasks: Sequence[Task], images: np.ndarray, args: argparse.Namespace) -> list[str]:
    """Markdown rows of :func:`deviation_grid`'s mean PSNR for every task and noise level, with the mean gain of
    each pair over the first and its smallest gain; with ``--holdout``, two more columns: the best pair per item
    (an oracle that knows the truth) and the pair hold-out validation chooses per item."""
    labels = [f"β={w:g}, s={s:g}" for w, s in args.deviation_grid]
    if args.holdout > 0:
        labels += ["best per item (oracle)", f"hold-out choice ({args.holdout:g})"]
    rows = ["| task | noise | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 2)]
    gains: list[list[float]] = []
    for task in tasks:
        for sigma in NOISE_LEVELS:
            psnr, chosen = deviation_grid(task, sigma, images, args.steps, args.deviation_grid, args.holdout)
            scores = list(psnr.mean(axis=1))
            if chosen is not None:
                scores += [float(psnr.max(axis=0).mean()), float(chosen.mean())]
            gains.append([score - scores[0] for score in scores])
            rows.append(
                f"| {task.label} | {noise_label(sigma)} | " + " | ".join(f"{v:.2f}" for v in scores) + " |"
            )
            print(rows[-1], flush=True)
    columns = list(zip(*gains, strict=True))
    rows.append("| mean gain over the first | | " + " | ".join(f"{np.mean(c):+.2f}" for c in columns) + " |")
    rows.append("| smallest gain | | " + " | ".join(f"{min(c):+.2f}" for c in columns) + " |")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="kspace4,kspace8,sr4,inpaint-box")
    parser.add_argument("--limit", type=int, default=4, help="training slices")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("docs/defaults.md"))
    parser.add_argument(
        "--candidates",
        type=parse_candidates,
        default=CANDIDATES,
        help="PRIOR[:KEY=VALUE,...] entries separated by ';' (default: the built-in list)",
    )
    parser.add_argument(
        "--deviation-grid",
        type=parse_grid,
        help="WEIGHTS:SHARES, e.g. 3,10:0,0.4: the deviation prior's weight and image_share over their grid, "
        "from one MAP fit per task and noise (instead of the candidates)",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="with --deviation-grid: also choose the pair per item by leaving out this fraction of the measured "
        "entries and predicting them",
    )
    parser.add_argument(
        "--upside-down",
        action="store_true",
        help="turn the training slices upside down: heads the generator cannot produce, an out-of-distribution "
        "check built without any test slice",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    _, images = load_slices(ensure_data(default_data_dir()), "train", args.limit)
    if args.upside_down:
        images = np.ascontiguousarray(images[..., ::-1, :])
    tasks = [t for t in TASKS if t.key in args.tasks.split(",")]
    if args.deviation_grid:
        turned = ", upside down" if args.upside_down else ""
        title = f"# The deviation prior's weight and image share, on {len(images)} training slices{turned}"
        args.out.write_text("\n".join([title, "", *grid_table(tasks, images, args)]) + "\n")
        return
    header = "| task | noise | " + " | ".join(label for label, _, _ in args.candidates) + " |"
    lines = [
        "# Default priors, chosen on training slices",
        "",
        f"`python benchmarks/defaults.py --limit {args.limit} --steps {args.steps}`: mean PSNR (dB) over "
        f"{len(images)} training slices of the data-consistent reconstruction (the generator's own image in "
        f"parentheses), `gen=demo-brain64`, {args.steps} MAP steps, every other setting at its default.",
        "",
        header,
        "|" + "---|" * (len(args.candidates) + 2),
    ]
    for task in tasks:
        for sigma in NOISE_LEVELS:
            cells = []
            for label, prior, settings in args.candidates:
                final, own, seconds = reconstruct(task, sigma, prior, settings, images, args.steps)
                cells.append(f"{final:.2f} ({own:.2f})")
                print(
                    f"{task.key} {noise_label(sigma)} {label}: {final:.2f} ({own:.2f}) {seconds:.1f} s/slice"
                )
            lines.append(f"| {task.label} | {noise_label(sigma)} | " + " | ".join(cells) + " |")
            args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
