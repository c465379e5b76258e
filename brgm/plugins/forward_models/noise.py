"""Noise models: identities in :meth:`forward` that draw seeded noise in :meth:`sample`.

Chain them after a measuring operator (``fwd=downsample+gaussian_noise``): the problem fits the deterministic
part, :meth:`~brgm.core.operators.ForwardModel.simulate` adds the noise. Without a ``torch.Generator`` the noise
is drawn from one seeded with ``seed``, so the same seed gives the same measurement.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from brgm.core.operators import LinearForwardModel, check_image_shape, check_real, forward_model
from brgm.core.params import interval
from brgm.plugins.forward_models.params import MAX_SEED, integer


@forward_model
class NoiseModel(LinearForwardModel):
    """Shared by the noise models: the identity operator (its own adjoint and naive inverse) with a seed."""

    is_noise: ClassVar[bool] = True

    seed: int = attrs.field(default=0, validator=integer(0, MAX_SEED))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_shape(self, x.shape)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward(y)

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward(y)

    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_image_shape(self, y.shape)
        if generator is None:
            generator = torch.Generator(device=y.device).manual_seed(self.seed)
        return self.draw(y, generator)

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A noisy version of ``y`` drawn with ``generator`` (which may live on another device than ``y``)."""
        raise NotImplementedError

    def _randn(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Standard normal samples shaped like the real tensor ``y``, on ``y``'s device."""
        noise = torch.randn(y.shape, dtype=y.dtype, device=generator.device, generator=generator)
        return noise.to(y.device)


@forward_model
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise of standard deviation sigma (per real and imaginary part for k-space).

    ``y + σ·ε``, ``ε ~ N(0, 1)``; on complex k-space the real and imaginary parts each get ``σ·N(0, 1)``, so
    the magnitude of zero-filled single-coil data is Rician with the same ``sigma``. ``sigma`` is in intensity
    units of the [0, 1] image (k-space is orthonormal, so image and k-space noise levels agree).
    """

    name: ClassVar[str] = "gaussian_noise"

    sigma: float = attrs.field(default=0.01, converter=float, validator=interval(0.0))

    @property
    def noise_sigma(self) -> float:  # type: ignore[override]
        return self.sigma

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if y.is_complex():
            real = torch.view_as_real(y)
            return torch.view_as_complex((real + self.sigma * self._randn(real, generator)).contiguous())
        return y + self.sigma * self._randn(y, generator)


@forward_model
class PoissonNoise(NoiseModel):
    """Poisson (shot) noise: gain · Poisson(y / gain), so 1/gain photons make up intensity 1.

    The mean is ``y`` and the variance ``gain·y``; negative intensities (ringing of bicubic resampling) count
    as zero. Real measurements only.
    """

    name: ClassVar[str] = "poisson_noise"

    gain: float = attrs.field(default=0.01, converter=float, validator=interval(0.0, open_lo=True))

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_real(self, y, "measurements")
        rate = (y.clamp_min(0.0) / self.gain).to(generator.device)
        return self.gain * torch.poisson(rate, generator=generator).to(y.device)


@forward_model
class RicianNoise(NoiseModel):
    """Rician noise of magnitude MRI: |y + σ·(ε₁ + i·ε₂)| with independent ε₁, ε₂ ~ N(0, 1).

    Real (magnitude) measurements only; ``sigma`` is the standard deviation of each underlying Gaussian.
    """

    name: ClassVar[str] = "rician_noise"

    sigma: float = attrs.field(default=0.01, converter=float, validator=interval(0.0))

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_real(self, y, "measurements (magnitudes)")
        real = y + self.sigma * self._randn(y, generator)
        imaginary = self.sigma * self._randn(y, generator)
        return torch.sqrt(real.square() + imaginary.square())
