"""Separable FIR filtering with zero-insertion up-sampling (NVIDIA's ``upfirdn2d``), for 2D and 3D tensors.

The filter buffers keep NVIDIA's layout: the normalised outer product of a 1D filter with itself, ``[fw, fw]``
in 2D and ``[fw, fw, fw]`` in 3D. They are applied as one 1D convolution per spatial axis with the 1D factor
(their marginal), which is exact for such products and costs ``spatial_dims * fw`` instead of ``fw**spatial_dims``
multiply-adds per output element.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

CONV = {2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {2: F.conv_transpose2d, 3: F.conv_transpose3d}


def setup_filter(taps: Sequence[float], spatial_dims: int) -> torch.Tensor:
    """The ``spatial_dims``-fold outer product of ``taps`` with itself, normalised to sum 1 (float32)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    out = f
    for _ in range(spatial_dims - 1):
        out = out.unsqueeze(-1) * f
    return out / out.sum()


def filter_taps(f: torch.Tensor) -> torch.Tensor:
    """The 1D factor ``[fw]`` of a normalised separable filter buffer ``f [fw, ..., fw]`` (sums to 1)."""
    return f.sum(dim=tuple(range(1, f.ndim))) if f.ndim > 1 else f


def upsample_padding(fw: int, up: int = 2) -> tuple[int, int]:
    """Padding that makes ``upfirdn(x, taps, up=up, ...)`` return exactly ``up`` times the input size."""
    return (fw + up - 1) // 2, (fw - up) // 2


def _pad_axis(x: torch.Tensor, dim: int, p0: int, p1: int) -> torch.Tensor:
    """Zero-pad (or crop, for negative amounts) tensor dimension ``dim`` by ``p0`` before and ``p1`` after."""
    return F.pad(x, [0, 0] * (x.ndim - 1 - dim) + [p0, p1])


def upfirdn(
    x: torch.Tensor, taps: torch.Tensor, *, up: int = 1, padding: tuple[int, int] = (0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Up-sample, pad and filter every spatial axis of ``x [N, C, *spatial]``.

    Per axis: insert ``up - 1`` zeros after each sample, zero-pad by ``padding = (p0, p1)`` (negative crops) and
    convolve (true convolution) with ``taps [fw]``. The filter's overall DC gain is ``gain``. Output size per
    axis: ``n * up + p0 + p1 - fw + 1``.
    """
    spatial_dims = x.ndim - 2
    channels = x.shape[1]
    fw = taps.numel()
    p0, p1 = padding
    for axis in range(spatial_dims):
        dim = 2 + axis
        shape = [1] * spatial_dims
        shape[axis] = fw
        k = taps.flip(0) * gain if axis == 0 else taps.flip(0)
        k = k.to(x.dtype).reshape(1, 1, *shape).expand(channels, 1, *shape)
        if up > 1:
            x = _pad_axis(x.unsqueeze(dim + 1), dim + 1, 0, up - 1).flatten(dim, dim + 1)
        conv_pad = [0] * spatial_dims
        if p0 == p1 >= 0:
            conv_pad[axis] = p0
        else:
            x = _pad_axis(x, dim, p0, p1)
        x = CONV[spatial_dims](x, k, padding=conv_pad, groups=channels)
    return x


def upsample(x: torch.Tensor, taps: torch.Tensor, gain: float) -> torch.Tensor:
    """``x [N, C, *spatial] -> [N, C, *2·spatial]``: zero insertion and the FIR ``taps`` with DC gain ``gain``."""
    return upfirdn(x, taps, up=2, padding=upsample_padding(taps.numel()), gain=gain)
