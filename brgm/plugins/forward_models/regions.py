"""Inpainting masks: boolean arrays ``[*spatial]``, True where a pixel (voxel) is observed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from brgm.core.errors import ConfigError

#: half name -> (axis counted from the end, which side is missing: 0 = low indices, 1 = high indices)
HALVES = {"left": (-1, 0), "right": (-1, 1), "top": (-2, 0), "bottom": (-2, 1)}
#: segments per stroke and segment length (a fraction of the image) drawn by :func:`strokes`
STROKE_SEGMENTS = (2, 6)
STROKE_STEP = (0.1, 0.3)


def _centres(n: int) -> np.ndarray:
    """Pixel centres along an axis of ``n`` pixels, in units of the axis length (0..1)."""
    return (np.arange(n) + 0.5) / n


def half(spatial: Sequence[int], side: str) -> np.ndarray:
    """One half missing: pixels whose centre lies strictly on the ``side`` of the axis midpoint (for an odd
    size the middle row or column stays observed, so ``left`` and ``right`` mirror each other)."""
    axis, high = HALVES[side]
    centres = _centres(spatial[axis])
    missing_1d = centres > 0.5 if high else centres < 0.5
    shape = [1] * len(spatial)
    shape[axis] = spatial[axis]
    return np.broadcast_to(~missing_1d.reshape(shape), tuple(spatial)).copy()


def boxes(spatial: Sequence[int], corners: Sequence[float]) -> np.ndarray:
    """Boxes missing: ``corners`` holds ``2·dims`` numbers per box, the low corner then the high corner as
    fractions of each axis (``top, left, bottom, right`` in 2D); a pixel is missing when its centre is inside."""
    dims = len(spatial)
    observed = np.ones(tuple(spatial), dtype=bool)
    for start in range(0, len(corners), 2 * dims):
        low, high = corners[start : start + dims], corners[start + dims : start + 2 * dims]
        inside = np.ones((), dtype=bool)
        for axis, (lo, hi, n) in enumerate(zip(low, high, spatial, strict=True)):
            shape = [1] * dims
            shape[axis] = n
            centres = _centres(n).reshape(shape)
            inside = inside & (centres >= lo) & (centres < hi)
        observed &= ~inside
    return observed


def strokes(spatial: Sequence[int], count: int, width: float, seed: int) -> np.ndarray:
    """``count`` free-form brush strokes missing, drawn with ``numpy.random.default_rng(seed)``: each stroke is a
    polyline of 2–6 segments from a uniform start point, each segment 0.1–0.3 of the image long in a uniform
    random direction (clipped to the image); pixels within ``width/2`` of the path (``width`` a fraction of the
    smallest side, at least one pixel) are missing. Works in any dimension."""
    rng = np.random.default_rng(seed)
    dims = len(spatial)
    sizes = np.asarray(spatial, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) + 0.5 for n in spatial], indexing="ij"), axis=-1)
    points = grid.reshape(-1, dims)
    radius = max(width * sizes.min() / 2.0, 0.5)
    missing = np.zeros(len(points), dtype=bool)
    for _ in range(count):
        vertex = rng.uniform(0.0, 1.0, dims)
        for _ in range(rng.integers(STROKE_SEGMENTS[0], STROKE_SEGMENTS[1] + 1)):
            direction = rng.normal(size=dims)
            direction /= max(np.linalg.norm(direction), np.finfo(np.float64).tiny)
            step = rng.uniform(*STROKE_STEP)
            end = np.clip(vertex + step * direction, 0.0, 1.0)
            missing |= _segment_distance(points, vertex * sizes, end * sizes) <= radius
            vertex = end
    return ~missing.reshape(tuple(spatial))


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``points [M, d]`` to the segment from ``a`` to ``b``."""
    ab = b - a
    length2 = float(ab @ ab)
    t = np.zeros(len(points)) if length2 == 0 else np.clip((points - a) @ ab / length2, 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def pixels(spatial: Sequence[int], fraction: float, seed: int) -> np.ndarray:
    """Exactly ``round(fraction · size)`` pixels missing, chosen uniformly without replacement with
    ``numpy.random.default_rng(seed)``."""
    total = math.prod(spatial)
    missing = np.random.default_rng(seed).permutation(total)[: round(fraction * total)]
    observed = np.ones(total, dtype=bool)
    observed[missing] = False
    return observed.reshape(tuple(spatial))


def from_array(array: np.ndarray, what: str) -> np.ndarray:
    """A mask given as data: a boolean array is taken as is (True = observed); any other array follows BRGM's
    rule, missing exactly where it equals its minimum (black = missing; antialiased grey edges count as
    observed). A constant non-boolean array marks nothing and is rejected."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.copy()
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise ConfigError(f"{what} must be a non-empty numeric or boolean array, got dtype {array.dtype}")
    low = array.min()
    if (array == low).all():
        raise ConfigError(f"{what} is constant, so it marks no pixel as missing (black = missing)")
    return array != low
