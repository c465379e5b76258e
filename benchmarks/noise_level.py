"""How well σ is estimated from a measurement when no noise level is given (docs/defaults.md, "Noise level").

For each task of ``benchmarks/quality.py``, noiseless and at σ = 0.02 (the noise model composed only to simulate,
then ignored), the forward model's own estimate
(:meth:`~brgm.core.operators.ForwardModel.estimate_sigma`) of ``--limit`` evenly spaced *training* slices of the
demo data (noise seeded 1), as a Markdown table of mean ± std. Seconds on a CPU; no reconstruction is run.

    python benchmarks/noise_level.py            # 16 training slices
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch
from quality import NOISE_LEVELS, TASKS, default_data_dir, ensure_data, load_slices, noise_label

import brgm


def estimates(images: torch.Tensor, fwd: str, settings: dict[str, object]) -> tuple[torch.Tensor, str]:
    """``[N]`` σ estimated from measurements of ``images`` simulated by ``fwd`` (noise seeded 1), and the
    measurement's spatial shape as text."""
    problem = brgm.compose(gen="demo-brain64", fwd=fwd, device="cpu", prior="gaussian", **settings)
    y = problem.forward_model.simulate(images, torch.Generator().manual_seed(1))
    return problem.forward_model.estimate_sigma(y), "×".join(map(str, y.shape[2:]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="training slices (evenly spaced)")
    args = parser.parse_args(argv)
    _, images = load_slices(ensure_data(default_data_dir()), "train", args.limit)
    x = torch.from_numpy(images)
    levels = " | ".join(f"σ̂, {noise_label(s)}" for s in NOISE_LEVELS)
    print(f"| task | measurement | {levels} |\n|---|---|{'---:|' * len(NOISE_LEVELS)}")
    for task in TASKS:
        cells = [estimates(x, *task.chain(sigma)) for sigma in NOISE_LEVELS]
        values = " | ".join(f"{sigma.mean():.4f} ± {sigma.std():.4f}" for sigma, _ in cells)
        print(f"| {task.label} | {cells[0][1]} | {values} |")


if __name__ == "__main__":
    main()
