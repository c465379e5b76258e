"""Blur kernels as numpy arrays ``[*k]`` (one size per spatial axis), normalised to sum to one."""

from __future__ import annotations

import math

import numpy as np

from brgm.core.errors import ConfigError

#: samples per pixel of length when a motion path is rasterised
MOTION_SAMPLES_PER_PIXEL = 16


def normalised(kernel: np.ndarray, what: str) -> np.ndarray:
    """``kernel`` as float64 scaled to unit sum; a :class:`ConfigError` for non-finite, negative or empty ones."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim not in (2, 3) or kernel.size == 0:
        raise ConfigError(f"{what} must be a 2D or 3D array, got shape {list(kernel.shape)}")
    if not np.isfinite(kernel).all() or (kernel < 0).any() or kernel.sum() <= 0:
        raise ConfigError(f"{what} must hold finite non-negative weights with a positive sum")
    return kernel / kernel.sum()


def gaussian(sigma: float, dims: int) -> np.ndarray:
    """Isotropic sampled Gaussian of standard deviation ``sigma`` pixels, ``2·⌈3σ⌉ + 1`` wide per axis."""
    half = math.ceil(3.0 * sigma)
    profile = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel = profile
    for _ in range(dims - 1):
        kernel = np.multiply.outer(kernel, profile)
    return kernel / kernel.sum()


def box(size: int, dims: int) -> np.ndarray:
    """Uniform average over ``size`` samples per axis."""
    return np.full((size,) * dims, 1.0 / size**dims)


def motion(length: float, angle: float, dims: int) -> np.ndarray:
    """Uniform motion along a straight path of ``length`` pixels at ``angle`` degrees (counter-clockwise from
    the +W axis, with H pointing down), centred on the kernel; the path is sampled densely and each sample
    spread bilinearly onto the grid. Volumes get the same in-plane (H, W) path: a ``[1, k, k]`` kernel."""
    half = math.ceil(length / 2.0) + 1
    size = 2 * half + 1
    steps = max(2, math.ceil(length * MOTION_SAMPLES_PER_PIXEL) + 1)
    t = np.linspace(-length / 2.0, length / 2.0, steps)
    rows = half - t * math.sin(math.radians(angle))
    cols = half + t * math.cos(math.radians(angle))
    kernel = np.zeros((size, size))
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = rows - r0, cols - c0
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            np.add.at(kernel, (r0 + dr, c0 + dc), wr * wc)
    kernel /= kernel.sum()
    return kernel if dims == 2 else kernel[None]
