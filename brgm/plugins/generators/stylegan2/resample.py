"""FIR filtering with zero-insertion up-sampling (NVIDIA's ``upfirdn2d``), for 2D and 3D tensors, in plain ops.

Filters keep NVIDIA's buffer layout: the normalised outer product of a 1D filter with itself, ``[fw, fw]`` in 2D
and ``[fw, fw, fw]`` in 3D. 2D filters run as one depthwise convolution (fastest for 16 taps); 3D filters run
as one 1D depthwise convolution per axis with the filter's 1D factor, ``3·fw`` instead of ``fw³`` taps per
output element, which is exact for such products.
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
    """The 1D factor ``[fw]`` of a normalised separable filter ``f [fw, ..., fw]`` (its marginal; sums to 1)."""
    return f.sum(dim=tuple(range(1, f.ndim))) if f.ndim > 1 else f


def upsample_padding(fw: int, up: int = 2) -> tuple[int, int]:
    """Padding that makes ``upfirdn(x, f, up=up, ...)`` return exactly ``up`` times the input size."""
    return (fw + up - 1) // 2, (fw - up) // 2


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, padding: int | list[int]) -> torch.Tensor:
    """Correlate every channel of ``x [N, C, *spatial]`` with the same ``kernel [*k]``."""
    channels = x.shape[1]
    weight = kernel.to(x.dtype).reshape(1, 1, *kernel.shape).expand(channels, 1, *kernel.shape)
    return CONV[x.ndim - 2](x, weight, padding=padding, groups=channels)


def upfirdn(
    x: torch.Tensor, f: torch.Tensor, *, up: int = 1, padding: tuple[int, int] = (0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Up-sample, pad and filter every spatial axis of ``x [N, C, *spatial]`` with ``f [fw, ...]``.

    Insert ``up - 1`` zeros after each sample, zero-pad every axis by ``padding = (p0, p1)`` (negative crops),
    convolve (true convolution) with ``f``, whose DC gain becomes ``gain``. Output size per axis:
    ``n * up + p0 + p1 - fw + 1``.
    """
    spatial_dims = x.ndim - 2
    if up > 1:
        spatial = x.shape[2:]
        x = x.reshape(*x.shape[:2], *[s for n in spatial for s in (n, 1)])
        x = F.pad(x, [0, up - 1, 0, 0] * spatial_dims)
        x = x.reshape(*x.shape[:2], *[n * up for n in spatial])
    p0, p1 = padding
    conv_pad = p0 if p0 == p1 >= 0 else 0
    if conv_pad == 0 and (p0 or p1):
        x = F.pad(x, [p0, p1] * spatial_dims)
    if spatial_dims == 2:
        return _depthwise(x, f.flip((0, 1)) * gain, conv_pad)
    taps = filter_taps(f).flip(0)
    for axis in range(spatial_dims):
        shape = [1] * spatial_dims
        shape[axis] = taps.numel()
        pad = [0] * spatial_dims
        pad[axis] = conv_pad
        x = _depthwise(x, (taps * gain if axis == 0 else taps).reshape(shape), pad)
    return x


def upsample(x: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """``x [N, C, *spatial] -> [N, C, *2·spatial]``: zero insertion and the FIR ``f`` with DC gain ``gain``."""
    return upfirdn(x, f, up=2, padding=upsample_padding(f.shape[0]), gain=gain)
