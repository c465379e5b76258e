"""Posterior samplers against a linear-Gaussian problem whose posterior is known in closed form, and their
contract: shapes, seeds, batches, 2D and 3D, diagnostics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import ClassVar

import attrs
import numpy as np
import pytest
import torch

import brgm
from brgm import hookimpl
from brgm.core.checkpoints import CheckpointReader
from brgm.core.diagnostics import bulk_ess, split_rhat
from brgm.core.errors import CollapseWarning, ConfigError
from brgm.core.generator import Generator, GeneratorSource, NoiseMode
from brgm.core.plugins import pm
from brgm.core.terms import Latents
from brgm.plugins.solvers import posterior
from brgm.plugins.solvers.vi import VISolver

NUM_WS, W_DIM, SIDE = 2, 3, 4
GAIN = 0.1  # the generator's slope: images stay well inside [0, 1], so clamping never bites
FACTOR, SIGMA = 0.5, 0.05  # the forward model y = FACTOR·x + N(0, SIGMA²)


class LinearGenerator(Generator):
    """``G(w) = GAIN · flatten(w) @ B`` (so the image is ``0.5 + GAIN/2 · flatten(w) @ B``) with w_stats (0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.img_channels = W_DIM, W_DIM, NUM_WS, 1
        self.img_shape = (SIDE, SIDE)
        basis = torch.randn(NUM_WS * W_DIM, SIDE * SIDE, generator=torch.Generator().manual_seed(3))
        self.register_buffer("basis", basis)

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None):
        return z.unsqueeze(1).repeat(1, self.num_ws, 1)

    def synthesis(self, ws: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        return (GAIN * ws.flatten(1) @ self.basis).view(ws.shape[0], 1, SIDE, SIDE)

    def w_stats(self, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.w_dim), torch.tensor(1.0)


@attrs.define(kw_only=True, eq=False)
class LinearSource(GeneratorSource):
    """A linear generator with a Gaussian posterior in closed form (tests)."""

    name: ClassVar[str] = "test_linear"

    def load(self, readers: Sequence[CheckpointReader] = ()) -> Generator:
        return LinearGenerator().eval()


class LinearPlugin:
    @hookimpl
    def register_generators(self) -> list[type]:
        return [LinearSource]


@pytest.fixture(scope="module")
def linear():
    """The linear-Gaussian problem, one measurement ``y [1, 1, 4, 4]`` and its exact posterior over the images
    (mean ``[16]``, covariance ``[16, 16]``) and the latents (mean ``[6]``, covariance ``[6, 6]``)."""
    pm.register(LinearPlugin(), name="tests.test_samplers")
    try:
        problem = brgm.compose(
            gen="test_linear",
            fwd="test_scale+gaussian_noise",
            priors=["gaussian"],
            device="cpu",
            **{"fwd.test_scale.factor": FACTOR, "fwd.gaussian_noise.sigma": SIGMA},
        )
        basis = problem.generator.basis.double()
        truth_w = torch.randn(NUM_WS * W_DIM, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        x_true = 0.5 + GAIN / 2 * truth_w @ basis
        noise = SIGMA * torch.randn(
            SIDE * SIDE, generator=torch.Generator().manual_seed(5), dtype=torch.float64
        )
        y = FACTOR * x_true + noise
        # y = FACTOR·(0.5 + J̃ᵀw) + noise, with J = FACTOR·GAIN/2·Bᵀ; prior N(0, I)
        jac = FACTOR * GAIN / 2 * basis.T
        precision = jac.T @ jac / SIGMA**2 + torch.eye(len(truth_w), dtype=torch.float64)
        cov_w = torch.linalg.inv(precision)
        mean_w = cov_w @ jac.T @ (y - FACTOR * 0.5) / SIGMA**2
        image_map = GAIN / 2 * basis.T
        exact = {
            "mean_w": mean_w,
            "cov_w": cov_w,
            "precision_w": precision,
            "mean_x": 0.5 + image_map @ mean_w,
            "cov_x": image_map @ cov_w @ image_map.T,
        }
        yield problem, y.float().reshape(1, 1, SIDE, SIDE), exact
    finally:
        pm.unregister(name="tests.test_samplers")


def test_langevin_matches_the_closed_form_posterior(linear) -> None:
    problem, y, exact = linear
    chains, per_chain = 4, 1500
    result = brgm.reconstruct(
        problem,
        y,
        solver="langevin",
        seed=0,
        chains=chains,
        samples=chains * per_chain,
        steps=3300,
        warmup=0.1,
        map_steps=100,
    )
    draws = (
        result.samples[:, 0].reshape(chains, per_chain, -1).transpose(0, 1).double()
    )  # [draws, chains, 16]
    ess = bulk_ess(draws)
    assert (ess > 1000).all(), ess.min()
    assert (split_rhat(draws) < 1.01).all()
    mean = draws.flatten(0, 1).mean(0)
    standard_error = (exact["cov_x"].diagonal() / ess).sqrt()
    assert ((mean - exact["mean_x"]).abs() < 3 * standard_error).all(), (
        mean - exact["mean_x"]
    ) / standard_error
    variance = draws.flatten(0, 1).var(0)
    assert ((variance / exact["cov_x"].diagonal() - 1).abs() < 0.1).all()
    assert torch.allclose(result.image.flatten().double(), mean, atol=1e-6)
    assert torch.allclose(result.std.flatten().double(), variance.sqrt(), rtol=1e-4)
    assert 0.3 < float(result.history["acceptance"][-1].mean()) < 0.9


def test_laplace_is_the_closed_form_posterior_of_a_linear_generator(linear) -> None:
    """On a linear generator the linearised Laplace posterior is the exact one: independent Gaussian draws with
    the closed-form mean and covariance."""
    problem, y, exact = linear
    draws = 20000
    result = brgm.reconstruct(problem, y, solver="laplace", seed=0, samples=draws, map_steps=300)
    x = result.samples[:, 0].flatten(1).double()
    standard_error = (exact["cov_x"].diagonal() / draws).sqrt()
    assert ((x.mean(0) - exact["mean_x"]).abs() < 4 * standard_error).all()
    covariance = torch.cov(x.T)
    assert ((covariance.diagonal() / exact["cov_x"].diagonal() - 1).abs() < 0.05).all()
    # the off-diagonal structure too, in units of the exact standard deviations
    scale = exact["cov_x"].diagonal().sqrt()
    assert ((covariance - exact["cov_x"]) / torch.outer(scale, scale)).abs().max() < 0.05
    assert torch.allclose(result.image.flatten().double(), x.mean(0), atol=1e-6)


@pytest.mark.parametrize("groups", [1, NUM_WS])
def test_laplace_in_layer_groups_is_the_posterior_restricted_to_their_shifts(linear, groups: int) -> None:
    """``groups=g``: the exact posterior of ``w = w* + δ·B`` with ``B [g·w_dim, P]`` one shift of ``w`` per
    group of layers, centred on the MAP ``w*`` (``groups=num_ws`` is all of W+: the full posterior)."""
    problem, y, exact = linear
    draws = 20000
    result = brgm.reconstruct(
        problem, y, solver="laplace", seed=0, samples=draws, map_steps=300, groups=groups
    )
    eye = torch.eye(W_DIM, dtype=torch.float64)
    basis = eye.repeat(1, NUM_WS) if groups == 1 else torch.eye(NUM_WS * W_DIM, dtype=torch.float64)
    cov_delta = torch.linalg.inv(basis @ exact["precision_w"] @ basis.T)
    image_map = GAIN / 2 * problem.generator.basis.double().T  # [16, P]
    cov_x = image_map @ basis.T @ cov_delta @ basis @ image_map.T
    x = result.samples[:, 0].flatten(1).double()
    scale = cov_x.diagonal().sqrt()
    assert ((x.mean(0) - exact["mean_x"]).abs() < 4 * scale / draws**0.5).all()
    assert ((torch.cov(x.T) - cov_x) / torch.outer(scale, scale)).abs().max() < 0.05
    if groups == 1:  # less spread than the full posterior: the other directions are held
        assert (cov_x.diagonal() < 0.9 * exact["cov_x"].diagonal()).all()


def test_laplace_refuses_a_jacobian_too_large_to_hold(monkeypatch, tiny) -> None:
    from brgm.plugins.solvers import laplace

    monkeypatch.setattr(laplace, "MAX_JACOBIAN", 10)
    y = torch.rand(1, *tiny.measurement_shape, generator=torch.Generator().manual_seed(2)) * 0.5
    with pytest.raises(ConfigError, match=r"solver=laplace holds the generator's Jacobian, \d+ latents"):
        brgm.reconstruct(tiny, y, solver="laplace", seed=0)


@pytest.mark.parametrize("rank", [0, NUM_WS * W_DIM])
def test_vi_equals_the_exact_gaussian_posterior(linear, rank: int) -> None:
    """Full rank: q is the posterior itself. Mean-field: the mean and the variances 1/diag(precision), the
    Gaussian mean-field optimum of a Gaussian posterior."""
    problem, y, exact = linear
    solver = VISolver(steps=1000, rank=rank, draws=2048, lr=0.02, map_steps=100)
    _, q, history = solver.fit(problem, y, seeds=[0])
    expected = exact["cov_w"].diagonal() if rank else 1 / exact["precision_w"].diagonal()
    mean_error = (q.mean[0].double() - exact["mean_w"]).abs() / exact["cov_w"].diagonal().sqrt()
    assert (mean_error < 0.01).all(), mean_error
    assert ((q.variance()[0].double() / expected - 1).abs() < 0.01).all(), q.variance()[0] / expected
    elbo = history["elbo"][:, 0]
    assert elbo[-100:].mean() > elbo[:100].mean()


def test_the_entropy_is_the_gaussian_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    n, size, rank = 2, 5, 3
    q = posterior_q(n, size, rank, gen)
    for i in range(n):
        cov = (
            torch.diag(q.scale[i])
            @ (q.factor[i] @ q.factor[i].T + torch.diag(q.log_s[i].exp().square()))
            @ torch.diag(q.scale[i])
        )
        exact = torch.distributions.MultivariateNormal(torch.zeros(size, dtype=torch.float64), cov).entropy()
        assert float(q.entropy()[i]) + size / 2 * math.log(2 * math.pi * math.e) == pytest.approx(
            float(exact)
        )
        assert torch.allclose(q.variance()[i], cov.diagonal())


def posterior_q(n: int, size: int, rank: int, gen: torch.Generator):
    from brgm.plugins.solvers.vi import VariationalGaussian

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return VariationalGaussian(
        mean=draw(n, size),
        scale=draw(n, size).abs() + 0.1,
        log_s=draw(n, size) * 0.3,
        factor=draw(n, size, rank),
    )


@pytest.fixture(scope="module")
def tiny():
    return brgm.compose(
        gen="tiny",
        fwd="test_scale+gaussian_noise",
        prior="gaussian",  # the deviation is sampled in test_volumes_and_deviation_are_sampled
        device="cpu",
        **{"fwd.gaussian_noise.sigma": 0.05},
    )


FAST = {
    "langevin": {"steps": 12, "chains": 2, "samples": 4},
    "vi": {"steps": 6, "samples": 4},
    "laplace": {"samples": 4},
}


@pytest.mark.parametrize("solver", ["langevin", "vi", "laplace"])
def test_an_item_gives_the_same_samples_alone_or_in_a_batch(tiny, solver: str) -> None:
    y = torch.rand(3, *tiny.measurement_shape, generator=torch.Generator().manual_seed(0)) * 0.5
    options = {"solver": solver, "map_steps": 5, **FAST[solver]}
    batch = brgm.reconstruct(tiny, y, seeds=[7, 8, 9], batch_size=2, **options)
    alone = brgm.reconstruct(tiny, y[1:2], seeds=[8], **options)
    again = brgm.reconstruct(tiny, y[1:2], seeds=[8], **options)
    other = brgm.reconstruct(tiny, y[1:2], seeds=[10], **options)
    assert batch.samples.shape == (4, 3, *tiny.image_shape)
    assert batch.std.shape == batch.image.shape == (3, *tiny.image_shape)
    torch.testing.assert_close(alone.samples[:, 0], batch.samples[:, 1], atol=1e-5, rtol=0)
    assert torch.equal(alone.samples, again.samples)
    assert not torch.allclose(alone.samples, other.samples)
    assert (batch.std > 0).all()
    torch.testing.assert_close(batch.image, batch.samples.mean(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("solver", ["langevin", "vi", "laplace"])
def test_volumes_and_deviation_are_sampled(solver: str) -> None:
    problem = brgm.compose(
        gen="tiny",
        fwd="test_scale+gaussian_noise",
        priors=["gaussian", "deviation"],
        device="cpu",
        **{"gen.depth": 4, "gen.size": 4, "fwd.gaussian_noise.sigma": 0.05},
    )
    y = torch.rand(2, *problem.measurement_shape, generator=torch.Generator().manual_seed(1)) * 0.5
    result = brgm.reconstruct(problem, y, solver=solver, seed=0, map_steps=5, **FAST[solver])
    assert result.samples.shape == (4, 2, 1, 4, 4, 4)
    # pixels clamped at 0 or 1 in every draw have no spread; the others do
    assert torch.isfinite(result.std).all() and (result.std > 0).float().mean() > 0.8
    if solver == "laplace":  # its history is the MAP solve's (the draws are made, not iterated)
        assert result.history["total"].shape == (5, 2)
        return
    assert set(result.history) >= {"like.pixel", "prior.gaussian", "prior.deviation", "total"}
    # every energy spans the MAP start and the sampler; the staged MAP start leaves the deviation prior out (NaN)
    steps = result.history["total"].shape[0]
    assert all(
        result.history[k].shape == (steps, 2) for k in ("like.pixel", "prior.gaussian", "prior.deviation")
    )
    assert result.history["prior.deviation"][:5].isnan().all()
    assert result.history["prior.deviation"][5:].isfinite().all() and result.history["total"].isfinite().all()


def test_langevin_history_and_settings(tiny) -> None:
    y = torch.rand(1, *tiny.measurement_shape, generator=torch.Generator().manual_seed(2)) * 0.5
    result = brgm.reconstruct(tiny, y, solver="langevin", seed=0, map_steps=5, **FAST["langevin"])
    assert result.history["total"].shape == (5 + 12, 1)
    assert result.history["acceptance"].shape == (12, 1)
    assert result.history["rhat"].shape == result.history["ess"].shape == (1, 1)
    with pytest.raises(ConfigError, match="multiple of chains"):
        brgm.reconstruct(tiny, y, solver="langevin", chains=3, samples=4)
    with pytest.raises(ConfigError, match="even"):
        brgm.reconstruct(tiny, y, solver="vi", draws=3)


def test_split_rhat_and_ess_on_known_chains() -> None:
    gen = torch.Generator().manual_seed(0)
    iid = torch.randn(2000, 4, 3, generator=gen, dtype=torch.float64)
    assert (split_rhat(iid) < 1.005).all()
    assert ((bulk_ess(iid) / 8000 - 1).abs() < 0.1).all()
    # one chain of four shifted by 2: the split chains' means have variance 8/7·0.75, so R-hat ≈ √1.86 raw
    shifted = iid + torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=torch.float64)[None, :, None]
    assert (split_rhat(shifted) > 1.2).all()
    # AR(1) with coefficient ρ: ESS = n·M·(1 − ρ)/(1 + ρ)
    rho, ar = 0.8, torch.zeros_like(iid)
    ar[0] = iid[0] / math.sqrt(1 - rho**2)
    for t in range(1, len(iid)):
        ar[t] = rho * ar[t - 1] + iid[t]
    expected = 8000 * (1 - rho) / (1 + rho)
    assert ((bulk_ess(ar) / expected - 1).abs() < 0.25).all(), bulk_ess(ar)


def test_item_generators_are_independent_of_the_batch() -> None:
    a = posterior.randn(posterior.generators([1, 2], torch.device("cpu"), 0), 3, (2,), torch.device("cpu"))
    b = posterior.randn(posterior.generators([2], torch.device("cpu"), 0), 3, (2,), torch.device("cpu"))
    assert torch.equal(a[3:], b)
    c = posterior.randn(posterior.generators([2], torch.device("cpu"), 1), 3, (2,), torch.device("cpu"))
    assert not torch.equal(b, c)
    assert np.isfinite(a.numpy()).all()


def test_constant_chains_have_no_rhat_or_ess() -> None:
    """Chains that never moved are not mixed: ties must not be ranked by their order (which made them look
    perfectly mixed, R-hat ≈ 1, ESS = n·M)."""
    stuck = torch.zeros(40, 4, 3, dtype=torch.float64)
    assert split_rhat(stuck).isnan().all() and bulk_ess(stuck).isnan().all()
    # ties within moving chains are averaged, not broken: the scores of equal draws are equal
    draws = torch.tensor([[1.0, 2.0], [1.0, 3.0], [2.0, 1.0], [3.0, 3.0]], dtype=torch.float64)[:, :, None]
    from brgm.core.diagnostics import rank_normalise

    scores = rank_normalise(draws)[:, :, 0]
    assert scores[0, 0] == scores[1, 0] == scores[2, 1] and scores[1, 1] == scores[3, 0] == scores[3, 1]


def test_the_deviation_prior_does_not_collapse_the_draws() -> None:
    """With ``prior=gaussian+deviation`` on a mask, Langevin sampled the deviation too and rejected every
    proposal: all draws the MAP image, std exactly 0, and no warning. The deviation is held at its MAP value now;
    the unmeasured pixels have spread."""
    problem = brgm.compose(
        gen="tiny", fwd="mask", priors=["gaussian", "deviation"], device="cpu", **{"gen.size": 16}
    )
    truth = torch.rand(1, *problem.image_shape, generator=torch.Generator().manual_seed(4))
    y = problem.forward_model(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        result = brgm.reconstruct(problem, y, solver="langevin", seed=0, map_steps=10, **FAST["langevin"])
    measured = problem.forward_model.measured(y.shape, y.device).expand(y.shape)[0]
    assert result.history["collapsed"].tolist() == [[0.0]]
    assert (result.std[0][~measured] > 0).float().mean() > 0.5
    assert result.history["acceptance"].mean() > 0.1


def test_a_sampler_that_never_moves_warns_and_says_so(tiny) -> None:
    y = torch.rand(2, *tiny.measurement_shape, generator=torch.Generator().manual_seed(5)) * 0.5
    options = {"map_steps": 5, "steps": 12, "chains": 2, "samples": 4, "warmup": 0.0, "step_size": 10.0}
    with pytest.warns(CollapseWarning, match=r"item\(s\) 0, 1 are all the same image"):
        result = brgm.reconstruct(tiny, y, solver="langevin", seeds=[0, 1], **options)
    assert result.history["acceptance"].max() == 0
    assert result.history["collapsed"].tolist() == [[1.0, 1.0]]
    assert result.history["rhat"].isnan().all()
    assert (result.std == 0).all()


def test_laplace_passes_simulation_based_calibration() -> None:
    """Simulation-based calibration (Talts et al. 2018): latents drawn from the prior the solver assumes, images
    measured with the noise it assumes; the truth's rank among an item's 19 draws is then uniform on 0..19 at
    every pixel, and the central intervals cover their share. Spreading the draws 0.7× or 1.4× about their mean
    moves the outer fifths of the rank histogram by 30–60 % on these items (measured): the bounds below fail."""
    problem = brgm.compose(
        gen="tiny", fwd="test_scale+gaussian_noise", prior="gaussian", **{"fwd.gaussian_noise.sigma": 0.05}
    )
    G, items, draws = problem.generator, 40, 19
    mean, std = G.w_stats()
    ws = mean + std * torch.randn(items, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        truth = problem.image(Latents(ws=ws))
        y = problem.forward_model.simulate(truth, torch.Generator().manual_seed(12))
    result = brgm.reconstruct(problem, y, solver="laplace", seeds=list(range(items)), samples=draws)
    ranks = (result.samples < truth[None]).sum(dim=0).flatten()
    fifths = torch.bincount(ranks, minlength=draws + 1).reshape(5, -1).sum(dim=1) / ranks.numel()
    assert ((fifths - 0.2).abs() < 0.05).all(), fifths
    z = (result.image - truth).abs() / result.std
    assert 0.85 < float((z < 1.645).double().mean()) < 0.95
