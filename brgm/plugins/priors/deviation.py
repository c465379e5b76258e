"""Leaving the generator's range: an image-space deviation with a total-variation prior.

With the generator's image ``g`` fixed, the deviation's part of the calibrated energy,

    E(d) = ‖A(g + d) − y‖² / (2σ²) + β·[(1 − s)·TV(d) + s·TV(g + d)],

is convex for a linear forward model ``A``. The prior splits β between the total variation of the deviation
(``s = 0``: where the data are silent, the reconstruction keeps the generator's image) and that of the
reconstruction ``x = g + d`` itself (``s = 1``: a classical TV reconstruction, whatever the generator says), as
prior-image constrained compressed sensing (PICCS; Chen, Tang and Leng 2008) does with a prior image.
:meth:`DeviationPrior.minimise_deviation` solves it, multiplied by σ² (``½‖A_lin d − r‖² + βσ²·[…]`` with
``r = y − A(g)``), by the primal-dual algorithm of Chambolle and Pock (2011) over ``K = [∇; ∇; A_lin]``: each
TV term ``‖∇d‖_{2,1}``, ``‖∇d + ∇g‖_{2,1}`` (the forward differences of :func:`total_variation`) and the data
term through their duals (projections onto balls of radius ``(1 − s)βσ²`` and ``sβσ²``, and the closed-form
proximal step of ``½‖· − r‖²``'s conjugate). The steps ``τ = 1`` and ``s = 1/(τ‖K‖²)``, with ``‖K‖² ≤ 4·dims
per TV term + ‖A‖²`` (``‖A‖²`` by power iteration), satisfy its convergence condition ``τ·s·‖K‖² ≤ 1``.
Where the generator fits, ``d`` stays near 0; where it cannot (anatomy it never saw), the reconstruction
falls back toward TV's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs
import torch

from brgm.core.errors import ConfigError
from brgm.core.operators import ForwardModel, is_linear
from brgm.core.params import interval
from brgm.core.terms import Latents, Prior

#: iterations of the power method estimating ‖A‖²
POWER_ITERATIONS = 20
#: the primal step τ of the deviation solve (the dual step is 1/(τ·‖K‖²)); τ = 1 converged fastest on masks,
#: k-space and blur at the scale σ² puts the data term in
PRIMAL_STEP = 1.0
#: iterations between the deviation solve's convergence checks (each one synchronises with the device)
CHECK_EVERY = 100


def gradient(x: torch.Tensor) -> torch.Tensor:
    """``x [N, C, *spatial]`` -> ``[dims, N, C, *spatial]``: forward differences along each spatial axis, 0 at
    the last entry (a replicated border)."""
    return torch.stack(
        [torch.diff(x, dim=axis, append=x.narrow(axis, x.shape[axis] - 1, 1)) for axis in range(2, x.ndim)]
    )


def gradient_adjoint(p: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`gradient` (minus the divergence): ``[dims, N, C, *spatial]`` -> ``[N, C, *spatial]``."""
    out = torch.zeros_like(p[0])
    for i, axis in enumerate(range(2, out.ndim)):
        n = out.shape[axis]
        q = p[i].narrow(axis, 0, n - 1)  # the last difference is 0 and takes no part
        out.narrow(axis, 0, n - 1).sub_(q)
        out.narrow(axis, 1, n - 1).add_(q)
    return out


def total_variation(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``x [N, C, *spatial]`` (2D or 3D) -> ``[N]``: the isotropic total variation ``Σ √(|∇x|² + ε²) − ε`` with
    :func:`gradient`'s forward differences, smoothed by ``ε`` so that it is differentiable everywhere."""
    squared = gradient(x).square().sum(dim=0)
    return ((squared + eps**2).sqrt() - eps).flatten(1).sum(dim=1)


@attrs.define(kw_only=True, eq=False)
class DeviationPrior(Prior):
    """An image-space deviation ``d`` added to the generator's image, with the prior
    ``β·[(1 − s)·TV(d) + s·TV(x)]``.

    Selecting it makes the reconstruction ``x = (G(w) + 1)/2 + d``: the solver optimises ``d [N, C, *spatial]``
    (intensity units, starting at 0) with the latents. Where the generator cannot produce what the data
    demand (anatomy it never saw, a lesion), ``d`` supplies it, and the TV prior keeps ``d`` piecewise smooth,
    so the reconstruction falls back toward a total-variation solution rather than toward the generator's
    nearest image. In natural units, ``p(d | w) ∝ exp(−β·[(1 − s)·TV(d) + s·TV(x)])``: ``weight`` is β per unit
    of intensity variation, ``image_share`` is s, the part of β on the reconstruction's own variation (0: all on
    the deviation's, 1: a classical TV reconstruction); ``eps`` smooths TV's corner at 0.
    """

    name: ClassVar[str] = "deviation"
    needs_deviation: ClassVar[bool] = True
    uses_image: ClassVar[bool] = True
    #: β; the defaults of β and s were chosen together on training slices (``docs/defaults.md``)
    weight: float = attrs.field(default=10.0, converter=float, validator=interval(0.0))
    #: s, the share of β on TV of the reconstruction. Below ½ the prior prefers the generator's image ``g`` to
    #: any scaled ``t·g`` (0 ≤ t < 1) where the data are silent; at ½ all of them cost the same, and above ½ the
    #: flat image wins (on the training slices s = 0.6 lost 3 to 9 dB on inpainting a half or on ×8
    #: super-resolution). The default 0.4 (with β = 10) gained 0.3 dB on average over the seven tasks against
    #: s = 0, the previous default, and lost on none (``docs/defaults.md``)
    image_share: float = attrs.field(default=0.4, converter=float, validator=interval(0.0, 1.0))
    eps: float = attrs.field(default=1e-3, converter=float, validator=interval(0.0, open_lo=True))
    #: iterations of the exact deviation solve that ends a MAP reconstruction (0: none, keep the solver's); on
    #: noiseless blur, the slowest case, the default 5000 ends 0.1 dB short of 20 000 and 500 ended 0.8 dB short
    #: (``docs/defaults.md``)
    iterations: int = attrs.field(default=5000, converter=int, validator=interval(0, 100_000))
    #: an item's solve stops once one iteration changes its deviation by less than this fraction of its norm
    #: (checked every :data:`CHECK_EVERY` iterations; 0: always run ``iterations``); 1e-5 ended the k-space solves
    #: of the demo slices after 1300–1400 iterations, their reconstructions within 0.01 dB (``docs/defaults.md``)
    tolerance: float = attrs.field(default=1e-5, converter=float, validator=interval(0.0, 1.0))

    def energy(self, latents: Latents, image: torch.Tensor) -> torch.Tensor:
        """Latents with ``deviation [N, C, *spatial]`` and the reconstruction ``image`` (the generator's image
        plus the deviation) -> ``[N]``, non-negative."""
        if latents.deviation is None:
            raise ConfigError(
                "prior deviation needs the image-space deviation in the latents, which have none"
            )
        share = self.image_share
        return (1 - share) * total_variation(latents.deviation, self.eps) + share * total_variation(
            image, self.eps
        )

    def minimise_deviation(
        self,
        forward_model: ForwardModel,
        base: torch.Tensor,
        y: torch.Tensor,
        sigma: torch.Tensor,
        deviation: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The deviation minimising ``‖f(base + d) − y‖²/(2σ²) + weight·[(1 − s)·TV(d) + s·TV(base + d)]`` (see
        the module docstring), from ``deviation``; None for a nonlinear forward model or ``iterations=0``.
        ``keep`` (0/1, broadcastable to ``y``) restricts the data term to the entries it marks."""
        if self.iterations == 0 or not is_linear(forward_model):
            return None
        with torch.no_grad():
            offset = forward_model(torch.zeros_like(base))

            def linear(v: torch.Tensor) -> torch.Tensor:
                return forward_model(v) - offset

            residual = y - forward_model(base)  # the data term is ½‖A_lin d − residual‖²
            # the TV terms with a share of β, as (share, the gradient they add to ∇d): TV(d), TV(base + d)
            zero = torch.zeros((), dtype=base.dtype, device=base.device)
            terms = [
                (s, g) for s, g in ((1 - self.image_share, zero), (self.image_share, gradient(base))) if s > 0
            ]
            norm2 = 4 * (base.ndim - 2) * len(terms) + 1.05 * _largest_eigenvalue(
                lambda v: forward_model.adjoint(linear(v)), base
            )
            step = 1 / (PRIMAL_STEP * norm2)
            scale = (self.weight * sigma.to(base.dtype).square()).reshape(-1, *(1,) * (base.ndim - 1))
            d = deviation.detach().clone()
            extrapolated = d
            tv_duals = [
                torch.zeros(base.ndim - 2, *base.shape, dtype=base.dtype, device=base.device) for _ in terms
            ]
            data_dual = torch.zeros_like(residual)
            # items whose solve goes on: a converged item keeps its deviation, so each item's answer is the one
            # it gets alone, whatever else is in the batch
            active = torch.ones(base.shape[0], dtype=torch.bool, device=base.device)
            for iteration in range(1, self.iterations + 1):
                grad = gradient(extrapolated)
                for i, (share, shift) in enumerate(terms):
                    dual = tv_duals[i] + step * (grad + shift)
                    norm = dual.square().sum(dim=0).sqrt().clamp_min(torch.finfo(base.dtype).tiny)
                    tv_duals[i] = dual * (share * scale / norm).clamp_max(
                        1.0
                    )  # onto the ball of radius share·βσ²
                data_dual = (data_dual + step * (linear(extrapolated) - residual)) / (1 + step)
                if keep is not None:  # the conjugate of a term that ignores an entry is 0 there
                    data_dual = data_dual * keep
                updated = d - PRIMAL_STEP * (
                    gradient_adjoint(sum(tv_duals)) + forward_model.adjoint(data_dual)
                )
                updated = torch.where(active.reshape(-1, *(1,) * (base.ndim - 1)), updated, d)
                extrapolated = 2 * updated - d
                if self.tolerance > 0 and iteration % CHECK_EVERY == 0:
                    change = (updated - d).flatten(1).norm(dim=1)
                    active &= change >= self.tolerance * updated.flatten(1).norm(dim=1)
                    if not active.any():
                        return updated
                d = updated
        return d


def _largest_eigenvalue(normal: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The largest eigenvalue of the positive semi-definite ``normal`` over images like ``like`` (one bound for
    the batch), by :data:`POWER_ITERATIONS` power iterations from a seeded start."""
    v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0)).to(like)
    value = torch.ones(())
    for _ in range(POWER_ITERATIONS):
        v = v / v.norm()
        w = normal(v)
        value = (v * w).sum()
        v = w
    return value.clamp_min(torch.finfo(like.dtype).tiny)
