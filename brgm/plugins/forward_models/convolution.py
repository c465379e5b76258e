"""'Valid' convolution of a padded signal with a small kernel via the FFT, and its exact adjoint.

For a kernel of ``k`` samples per axis and a padded signal of ``P = n + k − 1`` samples, the output keeps the
``n`` samples whose kernel support lies inside the padded signal: ``y[i] = Σ_m h[m]·x[i + k − 1 − m]``. It equals
the circular convolution over ``P`` samples cropped at offset ``k − 1`` (no sample wraps), so one real FFT of
size ``P`` per call replaces ``n·k`` multiply-adds per axis; the adjoint zero-embeds, correlates (conjugate
spectrum) and returns the padded signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def kernel_spectrum(kernel: torch.Tensor, padded: Sequence[int]) -> torch.Tensor:
    """The real FFT of ``kernel [*k]`` zero-padded to ``padded`` (one size per axis)."""
    return torch.fft.rfftn(kernel, s=tuple(padded))


def _axes(dims: int) -> tuple[int, ...]:
    return tuple(range(-dims, 0))


def convolve_valid(x: torch.Tensor, spectrum: torch.Tensor, kernel_shape: Sequence[int]) -> torch.Tensor:
    """``x [..., *P]`` convolved with the kernel of ``spectrum``, cropped to ``[..., *(P − k + 1)]``."""
    dims = len(kernel_shape)
    padded = x.shape[-dims:]
    full = torch.fft.irfftn(torch.fft.rfftn(x, dim=_axes(dims)) * spectrum, s=padded, dim=_axes(dims))
    for axis, (p, k) in zip(_axes(dims), zip(padded, kernel_shape, strict=True), strict=True):
        full = full.narrow(axis, k - 1, p - k + 1)
    return full


def convolve_valid_adjoint(
    y: torch.Tensor, spectrum: torch.Tensor, kernel_shape: Sequence[int]
) -> torch.Tensor:
    """The transpose of :func:`convolve_valid`: ``y [..., *n]`` -> ``[..., *(n + k − 1)]``."""
    dims = len(kernel_shape)
    pads = [w for k in reversed(kernel_shape) for w in (k - 1, 0)]
    embedded = torch.nn.functional.pad(y, pads)
    padded = embedded.shape[-dims:]
    return torch.fft.irfftn(
        torch.fft.rfftn(embedded, dim=_axes(dims)) * spectrum.conj(), s=padded, dim=_axes(dims)
    )
