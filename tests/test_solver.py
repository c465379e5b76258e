"""The MAP loop: schedule, determinism, batching, history, and the non-finite stop."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import pytest
import torch

import brgm
from brgm.core.errors import NonFiniteEnergyError
from brgm.core.solver import SolverConfig, learning_rate
from brgm.core.terms import Latents, Prior
from tests.conftest import DEVICES


@pytest.fixture(scope="module")
def problem():
    return brgm.compose(
        gen="tiny", fwd="test_scale", likelihoods=["test_sse"], priors=["test_spread"], device="cpu"
    )


def measurement(problem, n: int, seed: int = 1) -> torch.Tensor:
    G = problem.generator
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return problem.forward_model(problem.image(Latents(ws=G.mapping(z))))


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),  # ramp-up starts at zero
        (25, 0.1 * 0.5),  # halfway through the 5 % ramp-up (t = 0.025)
        (50, 0.1),  # plateau
        (500, 0.1),  # t = 0.5
        (875, 0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.5))),  # halfway through the 25 % ramp-down
        (999, 0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.004))),
    ],
)
def test_brgm_schedule_matches_the_tf_formula(step: int, expected: float) -> None:
    assert learning_rate(step, SolverConfig(steps=1000)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_constant_schedule() -> None:
    cfg = SolverConfig(steps=10, schedule="constant", lr=0.3)
    assert {learning_rate(s, cfg) for s in range(10)} == {0.3}


def test_energy_falls_history_is_complete_and_gradients_finite(problem) -> None:
    y = measurement(problem, 3)
    result = brgm.reconstruct(problem, y, steps=40, seed=0)
    h = result.history
    assert set(h) == {"like.test_sse", "prior.test_spread", "total", "lr"}
    assert h["total"].shape == (40, 3) and h["lr"].shape == (40,)
    torch.testing.assert_close(h["total"], h["like.test_sse"] + h["prior.test_spread"])
    assert (h["total"][-1] < 0.2 * h["total"][1]).all()
    assert result.image.shape == (3, 1, 8, 8) and result.ws.shape == (3, 4, 8)
    assert torch.equal(result.baseline, y / 0.5)
    assert result.image.min() >= 0 and result.image.max() <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_reconstructs_what_the_cpu_does(problem, device: str) -> None:
    on_device = brgm.compose(
        gen="tiny", fwd="test_scale", likelihoods=["test_sse"], priors=["test_spread"], device=device
    )
    y = measurement(problem, 2)
    ours = brgm.reconstruct(on_device, y.to(device), steps=20, seed=0)
    cpu = brgm.reconstruct(problem, y, steps=20, seed=0)
    assert on_device.device.type == torch.device(device).type
    assert ours.image.device.type == "cpu"  # results come back on the CPU
    torch.testing.assert_close(ours.ws.cpu(), cpu.ws, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.history["total"].cpu(), cpu.history["total"], rtol=1e-4, atol=1e-6)


def test_same_seed_same_result_and_seed_matters_with_jitter(problem) -> None:
    y = measurement(problem, 2)
    a = brgm.reconstruct(problem, y, steps=15, seed=3, init_jitter=0.5)
    b = brgm.reconstruct(problem, y, steps=15, seed=3, init_jitter=0.5)
    c = brgm.reconstruct(problem, y, steps=15, seed=4, init_jitter=0.5)
    assert torch.equal(a.ws, b.ws) and torch.equal(a.image, b.image)
    assert not torch.equal(a.ws, c.ws)


def test_batches_are_independent_problems(problem) -> None:
    y = measurement(problem, 3)
    together = brgm.reconstruct(problem, y, steps=20, seed=0, batch_size=3)
    chunked = brgm.reconstruct(problem, y, steps=20, seed=0, batch_size=2)
    alone = brgm.reconstruct(problem, y[2:], steps=20, seed=0)
    torch.testing.assert_close(together.ws, chunked.ws, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together.ws[2:], alone.ws, rtol=1e-5, atol=1e-6)
    assert chunked.history["total"].shape == (20, 3)


def test_unbatched_measurement_is_accepted_and_wrong_shape_rejected(problem) -> None:
    y = measurement(problem, 1)
    assert brgm.reconstruct(problem, y[0], steps=2).image.shape == (1, 1, 8, 8)
    with pytest.raises(brgm.core.errors.ShapeError, match=r"expected \[N, 1, 8, 8\]"):
        brgm.reconstruct(problem, torch.zeros(1, 1, 4, 4), steps=2)


@attrs.define(kw_only=True, eq=False)
class Explodes(Prior):
    """Becomes infinite once the latents move."""

    name: ClassVar[str] = "explodes"

    def energy(self, latents: Latents) -> torch.Tensor:
        spread = latents.ws.std(dim=1).mean(dim=1)
        return torch.where(spread > 1e-3, torch.full_like(spread, math.inf), spread)


def test_non_finite_energy_stops_with_a_clear_error(problem) -> None:
    exploding = brgm.compose(
        gen=problem.generator, fwd="test_scale", likelihoods=["test_sse"], priors=[Explodes()], device="cpu"
    )
    with pytest.raises(
        NonFiniteEnergyError, match=r"non-finite at step \d+ of 30 \(terms: prior.explodes, total\)"
    ):
        brgm.reconstruct(exploding, measurement(problem, 1), steps=30, schedule="constant")
