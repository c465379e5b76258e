"""The MAP solver and reconstruct: schedule, determinism, batching, history, the non-finite stop, results."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import pytest
import torch

import brgm
from brgm.core.errors import ConfigError, DivergenceWarning, NonFiniteEnergyError, ShapeError
from brgm.core.execution import Execution
from brgm.core.solver import Result, Solver
from brgm.core.terms import Latents, Prior
from brgm.plugins.solvers.map import MAPSolver
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
    assert MAPSolver(steps=1000, lr=0.1).learning_rate(step) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_constant_schedule() -> None:
    solver = MAPSolver(steps=10, schedule="constant", lr=0.3)
    assert {solver.learning_rate(s) for s in range(10)} == {0.3}


def test_energy_falls_history_is_complete_and_gradients_finite(problem) -> None:
    y = measurement(problem, 3)
    result = brgm.reconstruct(problem, y, steps=40, seed=0, lr=0.1)
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
        NonFiniteEnergyError,
        match=r"non-finite at step [1-9]\d* of 30 \(terms: prior.explodes\); try a smaller solver.lr",
    ):
        brgm.reconstruct(exploding, measurement(problem, 1), steps=30, schedule="constant")


def test_an_overflowing_weight_is_named_at_step_0(problem) -> None:
    heavy = brgm.compose(
        gen=problem.generator,
        fwd="test_scale",
        likelihoods=["test_sse"],
        priors=[],
        device="cpu",
        **{"like.test_sse.weight": 1e300},
    )
    y = measurement(problem, 1) + 0.5  # a non-zero misfit at the start
    with pytest.raises(
        NonFiniteEnergyError, match=r"at step 0 .*like\.test_sse\.weight=1e\+300 times an energy"
    ):
        brgm.reconstruct(heavy, y, steps=5)


def test_a_measurement_too_large_for_float32_is_named_at_step_0(problem) -> None:
    y = measurement(problem, 1) + 1e30
    with pytest.raises(NonFiniteEnergyError, match=r"at step 0 .*largest magnitude is 1e\+30"):
        brgm.reconstruct(problem, y, steps=5)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measurements_are_refused_with_their_count(problem, bad: float) -> None:
    y = measurement(problem, 2)
    y[1, 0, :3, 0] = bad
    with pytest.raises(ShapeError, match=r"has 3 non-finite value\(s\) \(NaN or ±inf\) of 128"):
        brgm.reconstruct(problem, y, steps=2)


def test_empty_batches_and_other_types_are_clear_errors(problem) -> None:
    with pytest.raises(ShapeError, match="batch is empty"):
        brgm.reconstruct(problem, torch.zeros(0, 1, 8, 8), steps=2)
    with pytest.raises(ShapeError, match=r"must be a torch\.Tensor or numpy array, got list"):
        brgm.reconstruct(problem, [[0.0]], steps=2)


def test_a_numpy_measurement_gives_the_tensor_result(problem) -> None:
    y = measurement(problem, 2)
    from_numpy = brgm.reconstruct(problem, y.numpy(), steps=3, seed=4)
    from_tensor = brgm.reconstruct(problem, y, steps=3, seed=4)
    torch.testing.assert_close(from_numpy.image, from_tensor.image, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lrr": 0.1}, "solver.lrr: no such parameter \\(did you mean 'lr'\\?\\)"),
        ({"lr": "fast"}, "solver.lr must be a number, got 'fast'"),
        ({"lr": math.inf}, r"lr must be in \(0, inf\], got inf"),
        ({"lr": "nan"}, r"lr must be in \(0, inf\], got nan"),
        ({"seed": 2**70}, r"seed must be an integer in \[0, 2\*\*63 - 1\], got 1180591620717411303424"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
    ],
)
def test_bad_solver_options_are_config_errors(problem, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        brgm.reconstruct(problem, measurement(problem, 1), steps=2, **options)


def test_a_diverging_solve_is_flagged_and_warned(problem) -> None:
    y = measurement(problem, 2)
    with pytest.warns(
        DivergenceWarning,
        match=r"ended far above where it started \(item 0: .*try a smaller solver.lr \(now 1e\+06\)",
    ):
        result = brgm.reconstruct(problem, y, steps=20, lr=1e6, schedule="constant")
    assert result.diverged.tolist() == [True, True]
    calm = brgm.reconstruct(problem, y, steps=20)
    assert calm.diverged.tolist() == [False, False]


def test_an_item_gives_the_same_result_alone_or_anywhere_in_a_batch(problem) -> None:
    y = measurement(problem, 3)
    seeds = [11, 12, 13]
    batch = brgm.reconstruct(problem, y, steps=8, seeds=seeds, init_jitter=0.5)
    for order in ([2, 0, 1], [1]):
        again = brgm.reconstruct(problem, y[order], steps=8, seeds=[seeds[i] for i in order], init_jitter=0.5)
        torch.testing.assert_close(again.ws, batch.ws[order], rtol=1e-5, atol=1e-6)
    other = brgm.reconstruct(problem, y, steps=8, seeds=[11, 99, 13], init_jitter=0.5)
    assert not torch.allclose(other.ws[1], batch.ws[1]) and torch.allclose(other.ws[0], batch.ws[0])
    with pytest.raises(ShapeError, match=r"got 2 seed\(s\) for a batch of 3"):
        brgm.reconstruct(problem, y, steps=2, seeds=[1, 2])


@attrs.define(kw_only=True, eq=False)
class Sampler(Solver):
    """A sampler stand-in: the mean latent's image with a seeded spread of ``samples`` around it."""

    name: ClassVar[str] = "spread"
    samples: int = 3

    def solve(self, problem, y, *, seeds, progress=None) -> Result:
        G = problem.generator
        ws = G.w_stats()[0].reshape(1, 1, -1).repeat(len(y), G.num_ws, 1)
        image = problem.image(Latents(ws=ws))
        draws = [
            torch.randn(self.samples, *image.shape[1:], generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]
        samples = image + 0.01 * torch.stack(draws, dim=1)
        total = torch.zeros(1, len(y), dtype=torch.float64)
        return Result(
            image=samples.mean(0),
            ws=ws,
            history={"total": total, "steps": torch.zeros(1)},
            diverged=torch.zeros(len(y), dtype=torch.bool),
            std=samples.std(0),
            samples=samples,
        )


def test_a_solver_gives_mean_std_and_samples_and_reconstruct_adds_the_baseline(problem) -> None:
    y = measurement(problem, 3)
    solver = Sampler()
    alone = solver.solve(problem, y, seeds=[1, 2, 3])
    assert alone.baseline is None  # solvers leave the baseline to reconstruct
    result = brgm.reconstruct(problem, y, seeds=[1, 2, 3], solver=solver, batch_size=2, samples=4)
    assert result.image.shape == result.std.shape == (3, 1, 8, 8)
    assert result.samples.shape == (4, 3, 1, 8, 8) and result.history["total"].shape == (1, 3)
    torch.testing.assert_close(result.baseline, y / 0.5)
    single = brgm.reconstruct(problem, y[2:], seeds=[3], solver=solver, samples=4)
    torch.testing.assert_close(single.samples[:, 0], result.samples[:, 2])
    with pytest.raises(ConfigError, match=r"solver.sample: no such parameter \(did you mean 'samples'\?\)"):
        brgm.reconstruct(problem, y, solver=solver, sample=2)
    named = brgm.reconstruct(problem, y, solver="map", steps=3, seed=0)
    torch.testing.assert_close(named.ws, brgm.reconstruct(problem, y, steps=3, seed=0).ws, rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"unknown solver 'mapp' \(did you mean 'map'\?\)"):
        brgm.reconstruct(problem, y, solver="mapp")


def test_solver_selection_and_execution_settings_in_compose(problem) -> None:
    chosen = brgm.compose(
        gen=problem.generator,
        fwd="test_scale",
        likelihoods=["test_sse"],
        solver="map",
        device="cpu",
        **{"solver.steps": "3", "solver.batch_size": "2", "solver.checkpoint": "false"},
    )
    assert isinstance(chosen.solver, MAPSolver) and chosen.solver.steps == 3
    assert chosen.execution == Execution(batch_size=2)
    assert chosen.config["solver"]["name"] == "map" and chosen.config["execution"]["batch_size"] == 2
    with pytest.raises(ConfigError, match=r"unknown solver 'mapp' \(did you mean 'map'\?\)"):
        brgm.compose(gen="tiny", fwd="test_scale", solver="mapp")
    with pytest.raises(
        ConfigError, match=r"solver.batch_sise: no such parameter \(did you mean 'batch_size'\?\)"
    ):
        brgm.compose(gen="tiny", fwd="test_scale", **{"solver.batch_sise": 2})
    with pytest.raises(ConfigError, match="select one solver"):
        brgm.compose(gen="tiny", fwd="test_scale", solver="map+map")
