"""Noise levels: the composed noise model is the single source; otherwise σ is estimated from the measurement
(within 10 % on simulated noise of known σ, 2D and 3D, images and k-space) and floored."""

from __future__ import annotations

import pytest
import torch

import brgm
from brgm.core.errors import ConfigError
from brgm.core.noise_level import SIGMA_FLOOR, floored, image_sigma, kspace_sigma


def phantom(shape: tuple[int, ...], n: int = 3, seed: int = 0) -> torch.Tensor:
    """``[n, 1, *shape]`` smooth images in [0, 1]: a few Gaussian blobs each (an anatomy-like low-pass scene)."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.meshgrid(*[torch.linspace(-1, 1, s, dtype=torch.float64) for s in shape], indexing="ij")
    images = []
    for _ in range(n):
        image = torch.zeros(shape, dtype=torch.float64)
        for _ in range(4):
            centre = torch.rand(len(shape), generator=g) - 0.5
            width = 0.15 + 0.3 * torch.rand(1, generator=g)
            image += torch.exp(-sum((a - c) ** 2 for a, c in zip(axes, centre, strict=True)) / width**2)
        images.append(image / image.max())
    return torch.stack(images)[:, None].float()


def noisy(y: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if y.is_complex():
        return y + sigma * torch.complex(torch.randn(y.shape, generator=g), torch.randn(y.shape, generator=g))
    return y + sigma * torch.randn(y.shape, generator=g)


@pytest.mark.parametrize("shape", [(64, 64), (24, 32, 32)])
@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_image_sigma_is_within_10_percent(shape, sigma) -> None:
    estimate = image_sigma(noisy(phantom(shape), sigma))
    assert ((estimate / sigma - 1).abs() < 0.1).all(), estimate


def test_image_sigma_reads_only_the_measured_pixels() -> None:
    f = brgm.forward_model("mask", missing="right")
    x = phantom((64, 64))
    y = noisy(f(x), 0.02)
    y = torch.where(f.measured(y.shape), y, 0.7)  # whatever fills the missing half must not count
    estimate = f.estimate_sigma(y)
    assert ((estimate / 0.02 - 1).abs() < 0.1).all(), estimate


@pytest.mark.parametrize(("shape", "extra"), [((128, 128), {}), ((16, 32, 32), {"phase_encode_dims": 2})])
@pytest.mark.parametrize("sigma", [0.005, 0.02])
def test_kspace_sigma_is_within_10_percent(shape, extra, sigma) -> None:
    f = brgm.forward_model("kspace", acceleration=4, center_fraction=0.08, seed=0, **extra)
    y = f(phantom(shape))
    y = noisy(y, sigma) * f.measured(y.shape)
    estimate = f.estimate_sigma(y)
    assert ((estimate / sigma - 1).abs() < 0.1).all(), estimate
    assert torch.equal(estimate, kspace_sigma(y, f.measured(y.shape)))


def test_a_noiseless_measurement_gets_the_floor() -> None:
    y = torch.full((2, 1, 8, 8), 0.5)
    assert image_sigma(y).tolist() == [0.0, 0.0]
    assert torch.allclose(floored(image_sigma(y), y), torch.full((2,), SIGMA_FLOOR * 0.5))


def test_the_composed_noise_model_is_the_single_source_of_sigma() -> None:
    assert brgm.forward_model("kspace").noise_sigma is None
    chain = brgm.forward_model("kspace+gaussian_noise", gaussian_noise__sigma=0.03)
    assert chain.noise_sigma == 0.03
    assert brgm.forward_model("blur+poisson_noise").noise_sigma is None
    with pytest.raises(ConfigError, match="composes 2 Gaussian noise models"):
        _ = brgm.forward_model("blur+gaussian_noise+gaussian_noise").noise_sigma
