"""The centred orthonormal Fourier transform over the trailing spatial axes (fastMRI's ``fft2c``/``ifft2c``).

``ifftshift → fftn(norm="ortho") → fftshift``: unitary (Parseval holds, the inverse is the adjoint) with the
zero frequency at index ``n // 2`` of each axis. The shifts and the transform are the same torch calls fastMRI
makes, in the same order, so the results are bit-identical to ``fastmri.fft2c`` on the same data.
"""

from __future__ import annotations

import torch


def _axes(dims: int) -> tuple[int, ...]:
    return tuple(range(-dims, 0))


def fft_centered(x: torch.Tensor, dims: int) -> torch.Tensor:
    """k-space of ``x [..., *spatial]`` over its last ``dims`` axes; real input is promoted to complex first."""
    axes = _axes(dims)
    if not x.is_complex():
        x = x.to(x.dtype.to_complex())
    return torch.fft.fftshift(
        torch.fft.fftn(torch.fft.ifftshift(x, dim=axes), dim=axes, norm="ortho"), dim=axes
    )


def ifft_centered(k: torch.Tensor, dims: int) -> torch.Tensor:
    """The inverse (and adjoint) of :func:`fft_centered`: a complex image from k-space ``[..., *spatial]``."""
    axes = _axes(dims)
    return torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(k, dim=axes), dim=axes, norm="ortho"), dim=axes
    )
