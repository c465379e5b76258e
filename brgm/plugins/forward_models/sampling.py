"""k-space sampling masks with fastMRI's semantics, plus variable-density and Poisson-disc masks.

A mask samples a *phase-encode grid*: the last axis (lines, ``[W]``) of a 2D image as in fastMRI, or the last two
axes (points, ``[H, W]``) of a 3D volume whose first spatial axis is the fully sampled readout. Every mask is
drawn from ``numpy.random.RandomState(seed)`` exactly as fastMRI's ``MaskFunc.__call__(shape, seed=seed)``:

1. one ``(center_fraction, acceleration)`` pair is chosen with ``randint(len(accelerations))``;
2. the centre: ``n_low = round(n · center_fraction)`` lines (Python's ``round``), ones on
   ``[pad, pad + n_low)`` with ``pad = (n − n_low + 1) // 2``;
3. the rest, by kind:

- ``random``: each line independently with probability ``(n/acc − n_low) / (n − n_low)`` (``uniform(size=n) <
  prob``), so ``n/acc`` lines in expectation (fastMRI ``RandomMaskFunc``);
- ``equispaced``: every ``acc``-th line from ``offset = randint(0, round(acc))`` (``EquiSpacedMaskFunc``; the
  acceleration must be an integer and the effective one is lower than nominal because of the centre);
- ``equispaced_fraction``: lines at ``around(arange(offset, n − 1, a))`` with the adjusted acceleration
  ``a = acc·(n_low − n) / (n_low·acc − n)`` and ``offset = randint(0, round(a))``, about ``n/acc`` lines in total
  (``EquispacedMaskFractionFunc``, fastMRI's brain data).

Our additions (not in fastMRI):

- on a 2D grid the centre is the product of the per-axis centres and ``random`` keeps each point with
  probability ``(P/acc − C) / (P − C)`` (``P`` points, ``C`` in the centre);
- ``gaussian``: exactly ``round(P/acc) − C`` points outside the centre, drawn without replacement with
  probability proportional to ``exp(−r² / (2·0.3²))``, ``r`` the distance to the centre in units of the half
  grid (1 or 2 axes);
- ``poisson``: variable-density Poisson-disc sampling of a 2D grid: points are visited in a random order and
  kept unless a kept point lies within ``r₀·(1 + 2r)`` pixels; ``r₀`` is bisected to the largest value that keeps
  at least ``round(P/acc) − C`` points and the surplus is dropped at random, so the count is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MASKS = ("random", "equispaced", "equispaced_fraction", "gaussian", "poisson")
#: the phase-encode grid dimensionality each mask kind accepts
GRID_DIMS = {
    "random": (1, 2),
    "equispaced": (1,),
    "equispaced_fraction": (1,),
    "gaussian": (1, 2),
    "poisson": (2,),
}
#: standard deviation of the ``gaussian`` density, in units of the half grid
GAUSSIAN_WIDTH = 0.3
#: growth of the Poisson-disc radius with the distance to the centre (in units of the half grid)
POISSON_SLOPE = 2.0
POISSON_BISECTIONS = 16


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairing: 8% of the lines at accelerations below 8, 4% from 8 on."""
    return 0.08 if acceleration < 8 else 0.04


def centre_lines(n: int, center_fraction: float) -> tuple[int, int]:
    """``(n_low, pad)``: the number of fully sampled centre lines and the index of the first one."""
    n_low = round(n * center_fraction)
    return n_low, (n - n_low + 1) // 2


def centre_mask(grid: Sequence[int], center_fraction: float) -> np.ndarray:
    """The fully sampled centre ``[*grid]``: the product of fastMRI's centre lines along each axis."""
    mask = np.ones((), dtype=bool)
    for n in grid:
        n_low, pad = centre_lines(n, center_fraction)
        line = np.zeros(n, dtype=bool)
        line[pad : pad + n_low] = True
        mask = np.multiply.outer(mask, line)
    return mask


def radius(grid: Sequence[int]) -> np.ndarray:
    """Distance of each grid point to the zero frequency (index ``n // 2``), in units of the half grid."""
    axes = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in grid], indexing="ij")
    return np.sqrt(sum(a**2 for a in axes))


def sampling_mask(
    kind: str,
    grid: Sequence[int],
    center_fractions: Sequence[float],
    accelerations: Sequence[float],
    seed: int,
) -> np.ndarray:
    """The boolean mask ``[*grid]`` of ``kind`` (see the module docstring), drawn from ``seed``."""
    grid = tuple(grid)
    rng = np.random.RandomState(seed)
    choice = rng.randint(len(accelerations))
    center_fraction, acceleration = center_fractions[choice], accelerations[choice]
    centre = centre_mask(grid, center_fraction)
    total, in_centre = math.prod(grid), int(centre.sum())
    if kind == "random":
        extra = np.zeros(grid, dtype=bool)
        if total > in_centre:
            prob = (total / acceleration - in_centre) / (total - in_centre)
            extra = rng.uniform(size=grid) < prob
    elif kind == "equispaced":
        offset = rng.randint(0, high=round(acceleration))
        extra = np.zeros(grid, dtype=bool)
        extra[offset :: int(acceleration)] = True
    elif kind == "equispaced_fraction":
        n = grid[0]
        adjusted = acceleration * (in_centre - n) / (in_centre * acceleration - n)
        offset = rng.randint(0, high=round(adjusted))
        extra = np.zeros(grid, dtype=bool)
        extra[np.around(np.arange(offset, n - 1, adjusted)).astype(np.uint)] = True
    else:
        count = min(max(round(total / acceleration) - in_centre, 0), total - in_centre)
        draw = _gaussian if kind == "gaussian" else _poisson_disc
        extra = np.zeros(total, dtype=bool)
        extra[draw(grid, centre, count, rng)] = True
        extra = extra.reshape(grid)
    return centre | extra


def _gaussian(
    grid: tuple[int, ...], centre: np.ndarray, count: int, rng: np.random.RandomState
) -> np.ndarray:
    """``count`` flat indices outside ``centre``, without replacement, with a Gaussian density."""
    outside = np.flatnonzero(~centre.ravel())
    density = np.exp(-0.5 * (radius(grid).ravel()[outside] / GAUSSIAN_WIDTH) ** 2)
    return rng.choice(outside, size=count, replace=False, p=density / density.sum())


def _poisson_disc(
    grid: tuple[int, ...], centre: np.ndarray, count: int, rng: np.random.RandomState
) -> np.ndarray:
    """``count`` flat indices outside ``centre`` of a 2D grid, variable-density Poisson-disc distributed."""
    height, width = grid
    order = rng.permutation(np.flatnonzero(~centre.ravel()))
    growth = 1.0 + POISSON_SLOPE * radius(grid)

    def throw(r0: float) -> np.ndarray:
        """Greedy dart throwing in ``order`` with minimum distance ``r0 · growth`` at the candidate."""
        radii = r0 * growth
        reach = math.ceil(radii.max())
        taken = np.zeros((height + 2 * reach, width + 2 * reach), dtype=bool)
        offsets = np.arange(-reach, reach + 1)
        dist2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
        kept = []
        for flat in order:
            i, j = divmod(int(flat), width)
            r = radii[i, j]
            k = math.ceil(r)
            window = taken[i + reach - k : i + reach + k + 1, j + reach - k : j + reach + k + 1]
            near = dist2[reach - k : reach + k + 1, reach - k : reach + k + 1] < r * r
            if not (window & near).any():
                taken[i + reach, j + reach] = True
                kept.append(flat)
        return np.asarray(kept, dtype=np.int64)

    low, high = 0.0, float(max(grid))
    best = order
    for _ in range(POISSON_BISECTIONS):
        mid = 0.5 * (low + high)
        kept = throw(mid)
        if len(kept) >= count:
            low, best = mid, kept
        else:
            high = mid
    return rng.choice(best, size=count, replace=False)
