"""Estimating a measurement's noise level σ (the standard deviation of additive Gaussian noise; for complex
k-space, of each of the real and imaginary parts), for the calibrated data term when no noise model is composed.

Both estimators are robust (a median of absolute values, scaled by ``1/Φ⁻¹(¾) ≈ 1.4826``), so structure that
survives them biases σ upward a little rather than a lot:

- :func:`image_sigma`: Donoho's wavelet estimate. The finest-scale diagonal Haar coefficients of an image (the
  ``±1`` pattern over each 2×2, or 2×2×2, block, divided by ``2^(d/2)``) hold white noise of standard deviation σ
  and almost no smooth signal. Only blocks whose pixels are all measured count (inpainting masks).
- :func:`kspace_sigma`: the measured k-space entries at the periphery (Euclidean radius at least the half-width
  of the grid, ``|k| ≥ n/2``: the corners of 2D and 3D k-space), where an image's spectrum has decayed most.

A noiseless measurement gets the σ that its own fine structure implies, which is not small for sharp or small
measurements (noiseless 64×64 k-space of a brain slice: about 0.017 in [0, 1] intensity units; an 8×8
low-resolution slice: about 0.07; docs/defaults.md); the energy's floor (:data:`SIGMA_FLOOR`, and
:data:`ABSOLUTE_SIGMA_FLOOR` for a measurement of zeros) keeps it away from zero. A σ the user gives
(``like.pixel.sigma``) or a composed noise model's replaces the estimate.
"""

from __future__ import annotations

import torch

#: 1 / Φ⁻¹(3/4): the median absolute value of N(0, σ²) samples is σ / MAD_SCALE
MAD_SCALE = 1.482602218505602
#: the least σ the calibrated energy uses, as a fraction of the measurement's root-mean-square value
SIGMA_FLOOR = 1e-3
#: and in intensity units, for a measurement of zeros (whose RMS is 0): a millionth of the intensity range,
#: below the rounding noise of a 16-bit image (1/65535/√12 ≈ 4.4e-6)
ABSOLUTE_SIGMA_FLOOR = 1e-6


def _median_abs(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per item ``[N]``: the median of ``|values|`` where ``keep`` (both ``[N, K]``; NaN where none is kept)."""
    magnitudes = torch.where(keep, values.abs(), torch.nan)
    return magnitudes.nanmedian(dim=1).values


def image_sigma(y: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
    """``y [N, C, *spatial]`` (real; 2D or 3D) -> ``[N]`` σ from the diagonal Haar coefficients of the measured
    blocks (``measured`` broadcasts to ``y``; None: every entry)."""
    keep = torch.ones_like(y, dtype=torch.bool) if measured is None else measured.expand(y.shape)
    coefficients, whole = y.double(), keep
    for axis in range(2, y.ndim):
        even = (coefficients.shape[axis] // 2) * 2
        coefficients = coefficients.narrow(axis, 0, even)
        whole = whole.narrow(axis, 0, even)
        coefficients = (coefficients[_take(axis, 0, y.ndim)] - coefficients[_take(axis, 1, y.ndim)]) / 2**0.5
        whole = whole[_take(axis, 0, y.ndim)] & whole[_take(axis, 1, y.ndim)]
    return (MAD_SCALE * _median_abs(coefficients.flatten(1), whole.flatten(1))).to(y.real.dtype)


def _take(axis: int, start: int, ndim: int) -> tuple[slice, ...]:
    """The index selecting every other entry of ``axis`` from ``start``."""
    return (slice(None),) * axis + (slice(start, None, 2),) + (slice(None),) * (ndim - axis - 1)


def kspace_sigma(y: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
    """``y [N, coils, *spatial]`` (complex, centred) -> ``[N]`` σ per real and imaginary part from the measured
    entries at the periphery (see the module docstring)."""
    axes = [(torch.arange(n, device=y.device) - n // 2).double() / (n / 2) for n in y.shape[2:]]
    radius = sum(k.square() for k in torch.meshgrid(*axes, indexing="ij")).sqrt()
    periphery = radius >= 1.0
    keep = periphery.expand(y.shape) if measured is None else (periphery & measured).expand(y.shape)
    parts = torch.cat([y.real.flatten(1), y.imag.flatten(1)], dim=1).double()
    return (MAD_SCALE * _median_abs(parts, torch.cat([keep.flatten(1)] * 2, dim=1))).to(y.real.dtype)


def floored(sigma: torch.Tensor, y: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
    """``sigma [N]`` raised to at least :data:`SIGMA_FLOOR` times the RMS of the measured entries of ``y``, and to
    at least :data:`ABSOLUTE_SIGMA_FLOOR`."""
    keep = torch.ones_like(y, dtype=torch.bool) if measured is None else measured.expand(y.shape)
    power = (y.abs().square() * keep).flatten(1).sum(dim=1) / keep.flatten(1).sum(dim=1).clamp_min(1)
    return torch.maximum(sigma, SIGMA_FLOOR * power.sqrt().to(sigma.dtype)).clamp_min(ABSOLUTE_SIGMA_FLOOR)
