"""Separable resampling matrices (area, bicubic, antialiased bicubic) and their application along axes.

Each matrix ``R [n_out, n_in]`` resamples one axis; an image is resampled by applying one matrix per spatial
axis, and the exact adjoint applies the transposes. The matrices reproduce ``torch.nn.functional.interpolate``
(``align_corners=False``) so that the operators match BRGM's reference code bit for bit up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Keys' cubic-convolution parameter of torch's (and OpenCV's) bicubic interpolation
TORCH_CUBIC_A = -0.75
#: the parameter of PIL's antialiased bicubic filter (torch's ``antialias=True``, PULSE's downsampler)
PIL_CUBIC_A = -0.5


def cubic(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``, supported on ``|t| < 2``."""
    t = np.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = a * (((t - 5.0) * t + 8.0) * t - 4.0)
    return np.where(t <= 1.0, near, np.where(t < 2.0, far, 0.0))


def area_matrix(n_in: int, factor: int) -> np.ndarray:
    """Mean over blocks of ``factor`` samples: ``[n_in // factor, n_in]`` (``interpolate(mode="area")``)."""
    rows = np.arange(n_in) // factor
    matrix = np.zeros((n_in // factor, n_in))
    matrix[rows, np.arange(n_in)] = 1.0 / factor
    return matrix


def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bicubic interpolation without antialiasing, ``[n_out, n_in]``: four taps around the source position
    ``(i + ½)·n_in/n_out − ½`` with ``a = −0.75`` and edge samples repeated (``interpolate(mode="bicubic")``).
    Shrinking by a large factor with it point-samples the input and aliases."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src)
    matrix = np.zeros((n_out, n_in))
    for tap in (-1, 0, 1, 2):
        weight = cubic(src - (base + tap), TORCH_CUBIC_A)
        column = np.clip(base + tap, 0, n_in - 1).astype(np.int64)
        np.add.at(matrix, (np.arange(n_out), column), weight)
    return matrix


def antialiased_cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Antialiased bicubic shrinking, ``[n_out, n_in]`` with ``n_out <= n_in``: PIL's cubic filter (``a = −0.5``)
    stretched by the factor ``s = n_in/n_out`` (support ``4·s`` samples), rows renormalised to sum to one where
    the support leaves the image (``interpolate(mode="bicubic", antialias=True)``)."""
    scale = n_in / n_out
    centre = (np.arange(n_out)[:, None] + 0.5) * scale
    matrix = cubic((np.arange(n_in)[None, :] + 0.5 - centre) / scale, PIL_CUBIC_A)
    return matrix / matrix.sum(axis=1, keepdims=True)


def apply_separable(x: torch.Tensor, matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multiply the trailing ``len(matrices)`` axes of ``x`` by one matrix each: axis ``k`` of size ``n_in``
    becomes size ``n_out`` for ``matrices[k]`` of shape ``[n_out, n_in]``."""
    first = x.ndim - len(matrices)
    for k, matrix in enumerate(matrices):
        axis = first + k
        x = torch.movedim(torch.movedim(x, axis, -1) @ matrix.mT, -1, axis)
    return x
