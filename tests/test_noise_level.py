"""Noise levels: σ given to the data term comes first, then the composed noise model (the single source of its
σ), otherwise σ is estimated from the measurement (within 10 % on simulated noise of known σ, 2D and 3D, images
and k-space) and floored; every item records the σ it used and where it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import brgm
from brgm.cli.app import app
from brgm.core.errors import ConfigError
from brgm.core.noise_level import SIGMA_FLOOR, floored, image_sigma, kspace_sigma
from brgm.core.terms import Latents

runner = CliRunner()


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


def test_a_given_sigma_overrides_the_noise_model_and_the_estimate() -> None:
    y = noisy(phantom((16, 16), n=2), 0.05)
    estimated = brgm.compose(gen="tiny", fwd="blur")
    assert estimated.noise_source == "estimated"
    assert torch.equal(estimated.noise_level(y), image_sigma(y))
    composed = brgm.compose(gen="tiny", fwd="blur+gaussian_noise", **{"fwd.gaussian_noise.sigma": 0.03})
    assert composed.noise_source == "fwd.gaussian_noise.sigma"
    assert composed.noise_level(y).tolist() == pytest.approx([0.03, 0.03])
    given = brgm.compose(
        gen="tiny", fwd="blur+gaussian_noise", **{"fwd.gaussian_noise.sigma": 0.03, "like.pixel.sigma": 0.2}
    )
    assert given.noise_source == "like.pixel.sigma"
    assert given.noise_level(y).tolist() == pytest.approx([0.2, 0.2])
    assert given.config["like"] == [{"name": "pixel", "weight": 1.0, "reduction": "nll", "sigma": 0.2}]


def test_the_data_term_uses_the_given_sigma() -> None:
    problem = brgm.compose(gen="tiny", fwd="blur", prior="none", **{"like.pixel.sigma": 0.1})
    latents = Latents(ws=problem.generator.mapping(torch.randn(2, problem.generator.z_dim)))
    y = noisy(problem.forward_model(problem.image(latents).detach()), 0.3)
    _, terms = problem.energies(latents, y)
    expected = (problem.forward_model(problem.image(latents)) - y).square().flatten(1).sum(1) / (2 * 0.1**2)
    assert torch.allclose(terms["like.pixel"], expected)


@pytest.mark.parametrize("value", ["0", "-0.1", "nan", "inf"])
def test_a_given_sigma_must_be_positive_and_finite(value) -> None:
    with pytest.raises(ConfigError, match=r"like.pixel: sigma must be in \(0, inf\]"):
        brgm.compose(gen="tiny", fwd="blur", **{"like.pixel.sigma": value})


def test_every_item_records_its_noise_level_and_where_it_came_from(tmp_path) -> None:
    clean = phantom((8, 8), n=2)
    for i, item in enumerate(clean):
        np.save(tmp_path / f"s{i}.npy", item[0].numpy())
    common = ["gen=tiny", "fwd=blur+gaussian_noise", "prior=none", "solver.steps=2", "--input", str(tmp_path)]
    for extra, source, level in (
        ([], "fwd.gaussian_noise.sigma", 0.04),
        (["like.pixel.sigma=0.5"], "like.pixel.sigma", 0.5),
    ):
        out = tmp_path / source
        result = runner.invoke(
            app, ["compose", "fwd.gaussian_noise.sigma=0.04", *common, *extra, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics) == {"s0", "s1"}
        for entry in metrics.values():
            assert entry["noise"]["source"] == source
            assert entry["noise"]["sigma"] == pytest.approx(level)
            assert entry["noise"]["energy_sigma"] >= entry["noise"]["sigma"]
