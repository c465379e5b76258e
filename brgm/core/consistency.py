"""Data consistency: move a reconstruction the least distance that makes it agree with its measurement.

For a linear forward model ``A`` (with ``A(x) = A_lin(x) + A(0)``: masks may fill unmeasured entries with a
constant), measurement ``y`` with Gaussian noise of standard deviation σ, and a reconstruction ``x₀`` (the
generator's image), the refined image is the posterior mean of ``x ~ N(x₀, τ²I)`` given ``y``:

    x = x₀ + A_linᴴ (A_lin A_linᴴ + (σ²/τ²) I)⁻¹ (y − A(x₀)),

computed as ``x₀ + (A_linᴴA_lin + (σ²/τ²) I)⁻¹ A_linᴴ (y − A(x₀))`` (the same, by the push-through identity)
with conjugate gradients in image space, started at zero so that a singular ``A_linᴴA_lin`` (several coils, a
mask) yields the least-norm correction; inner products are real, so complex k-space of real images is exact. τ², the variance of the generator's error per entry, is derived from the residual: the mean
power of ``y − A(x₀)`` over the measured entries, less the noise's σ², divided by the mean gain of ``A_lin A_linᴴ``
along the residual. With σ = 0 this is the exact projection onto ``{x : A(x) = y}`` (the measured k-space entries
or observed pixels put back); with σ > 0 it weighs the measurement against the model by their variances; where
the generator already explains the data to within the noise (τ² → 0) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from brgm.core.operators import LinearForwardModel

#: conjugate-gradient iterations at most, and the relative residual at which they stop
CG_ITERATIONS = 100
CG_TOLERANCE = 1e-7


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per item ``[N]``: the real inner product ``Re Σ conj(a)·b``."""
    product = a.conj() * b if a.is_complex() else a * b
    return product.real.flatten(1).sum(dim=1) if product.is_complex() else product.flatten(1).sum(dim=1)


def _per_item(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1, *(1,) * (like.ndim - 1))


def consistent(
    forward_model: LinearForwardModel, x0: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """The refined images ``[N, C, *spatial]`` (not clamped) for reconstructions ``x0`` of measurements ``y``
    with noise levels ``sigma [N]`` (see the module docstring)."""
    with torch.no_grad():
        x0, y = x0.double(), y.to(torch.complex128 if y.is_complex() else torch.float64)
        offset = forward_model(torch.zeros_like(x0))

        def linear(v: torch.Tensor) -> torch.Tensor:
            return forward_model(v) - offset

        measured = forward_model.measured(y.shape, y.device)
        count = (
            (torch.ones_like(y.real) if measured is None else measured.expand(y.shape)).flatten(1).sum(dim=1)
        )
        if y.is_complex():
            count = 2 * count  # real and imaginary parts
        residual = y - forward_model(x0)
        power = _dot(residual, residual)
        back = forward_model.adjoint(residual)
        gain = _dot(back, back) / power.clamp_min(torch.finfo(power.dtype).tiny)  # ⟨r, A Aᴴ r⟩ / ⟨r, r⟩
        sigma2 = sigma.to(power.dtype).square()
        tau2 = (power / count - sigma2).clamp_min(0) / gain.clamp_min(torch.finfo(power.dtype).tiny)
        ratio = torch.where(tau2 > 0, sigma2 / tau2.clamp_min(torch.finfo(power.dtype).tiny), torch.inf)
        correction = _conjugate_gradients(lambda v: forward_model.adjoint(linear(v)), back, ratio)
        return (x0 + correction).to(torch.float32)


def _conjugate_gradients(
    gram: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, ratio: torch.Tensor
) -> torch.Tensor:
    """Solve ``(gram + ratio·I) u = b`` per item (``gram`` symmetric positive semi-definite; ``ratio [N]``,
    ``inf`` gives ``u = 0``) by conjugate gradients from zero."""
    finite = torch.isfinite(ratio)
    damping = _per_item(torch.where(finite, ratio, 0.0), b)
    rhs = torch.where(_per_item(finite, b), b, torch.zeros_like(b))

    def apply(u: torch.Tensor) -> torch.Tensor:
        return gram(u) + damping * u

    u = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = _dot(r, r)
    stop = CG_TOLERANCE**2 * rr
    for _ in range(CG_ITERATIONS):
        if bool((rr <= stop).all()):
            break
        ap = apply(p)
        alpha = torch.where(rr > stop, rr / _dot(p, ap).clamp_min(torch.finfo(rr.dtype).tiny), 0.0)
        u = u + _per_item(alpha, u) * p
        r = r - _per_item(alpha, r) * ap
        rr_next = _dot(r, r)
        beta = rr_next / rr.clamp_min(torch.finfo(rr.dtype).tiny)
        p = r + _per_item(beta, p) * p
        rr = rr_next
    return u
