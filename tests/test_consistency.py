"""Data consistency: the refined reconstruction equals the measurement where measured (noiseless) and agrees with
it to within the noise (σ > 0), for every forward model that measures a subset, 2D and 3D."""

from __future__ import annotations

import pytest
import torch

import brgm
from brgm.core.consistency import consistent
from tests.test_noise_level import noisy, phantom

SUBSET_MODELS = [
    ("kspace", {"acceleration": 4, "center_fraction": 0.08, "seed": 0}, (64, 64)),
    ("kspace", {"acceleration": 4, "center_fraction": 0.08, "seed": 1, "phase_encode_dims": 2}, (8, 16, 16)),
    ("kspace", {"acceleration": 2, "coils": 4, "seed": 2}, (32, 32)),
    ("mask", {"missing": "box"}, (32, 32)),
    ("mask", {"missing": "pixels", "fill": 0.5}, (6, 16, 16)),
]


def guess(x: torch.Tensor) -> torch.Tensor:
    """A wrong reconstruction: the truth shifted, blurred and dimmed."""
    return 0.8 * torch.roll(x, shifts=2, dims=-1) + 0.05


@pytest.mark.parametrize(("name", "params", "shape"), SUBSET_MODELS, ids=lambda v: str(v))
def test_noiseless_refinement_puts_the_measurement_back(name, params, shape) -> None:
    f = brgm.forward_model(name, **params)
    x = phantom(shape)
    y = f(x)
    refined = consistent(f, guess(x), y, torch.zeros(len(x)))
    measured = f.measured(y.shape)
    measured = torch.ones_like(y, dtype=torch.bool) if measured is None else measured.expand(y.shape)
    error = (f(refined) - y).abs()[measured]
    assert error.max() < 1e-4 * y.abs().max(), error.max()
    assert (refined - x).square().mean() < (guess(x) - x).square().mean()  # closer to the truth
    unmeasured = ~f.measured((1, 1, *shape)).expand(1, 1, *shape) if name == "mask" else None
    if unmeasured is not None:  # the guess is kept where nothing was measured
        assert torch.equal(refined[:, :, unmeasured[0, 0]], guess(x)[:, :, unmeasured[0, 0]])


@pytest.mark.parametrize(("name", "params", "shape"), SUBSET_MODELS[:1] + SUBSET_MODELS[3:4], ids=str)
def test_noisy_refinement_agrees_with_the_measurement_within_the_noise(name, params, shape) -> None:
    f = brgm.forward_model(name, **params)
    x = phantom(shape)
    sigma = 0.02
    y0 = f(x)
    measured = f.measured(y0.shape).expand(y0.shape)
    y = torch.where(measured, noisy(y0, sigma), y0)
    x0 = guess(x)
    refined = consistent(f, x0, y, torch.full((len(x),), sigma))
    misfit = (f(refined) - y).abs()[measured].square().mean().sqrt()
    per_part = misfit / (2**0.5 if y.is_complex() else 1.0)
    assert per_part < sigma, per_part  # within the noise
    before = (f(x0) - y).abs()[measured].square().mean().sqrt()
    assert misfit < before
    # where the reconstruction already explains the data to within the noise, nothing changes
    unchanged = consistent(f, x, y, torch.full((len(x),), 10 * sigma))
    torch.testing.assert_close(unchanged, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fwd", ["kspace", "mask"])
def test_reconstruct_refines_by_default_and_keeps_the_generator_image(fwd) -> None:
    # the Gaussian prior alone, so that the generator's image is the solver's and only the refinement changes it
    problem = brgm.compose(gen="tiny", fwd=fwd, prior="gaussian", device="cpu", **{"gen.size": 16})
    x = phantom((16, 16), n=2)
    y = problem.forward_model(x)
    result = brgm.reconstruct(problem, y, steps=3, seed=0)
    assert result.generated is not None and result.sigma is not None and result.sigma.shape == (2,)
    measured = problem.forward_model.measured(y.shape).expand(y.shape)

    def misfit(image: torch.Tensor) -> torch.Tensor:
        return (problem.forward_model(image) - y).abs()[measured].square().mean()

    assert misfit(result.image) < 0.05 * misfit(result.generated)
    off = brgm.reconstruct(problem, y, steps=3, seed=0, consistency="off")
    assert off.generated is None and torch.equal(off.image, result.generated)
    assert problem.config["execution"]["consistency"] == "auto"


def test_downsampling_is_refined_only_when_asked() -> None:
    problem = brgm.compose(gen="tiny", fwd="downsample", prior="gaussian", device="cpu", **{"gen.size": 16})
    y = problem.forward_model(phantom((16, 16), n=1))
    assert brgm.reconstruct(problem, y, steps=2, seed=0).generated is None
    refined = brgm.reconstruct(problem, y, steps=2, seed=0, consistency="refine")
    assert refined.generated is not None
    before = (problem.forward_model(refined.generated) - y).square().mean()
    assert (problem.forward_model(refined.image) - y).square().mean() < before
