"""Priors: each energy against an independent numpy formula, gradients, errors and registration."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import brgm
from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator
from brgm.core.plugins import registry
from brgm.core.terms import Latents
from brgm.plugins.priors.colinear import ColinearPrior
from brgm.plugins.priors.gaussian import GaussianPrior
from brgm.plugins.priors.l2 import L2Prior
from brgm.plugins.priors.noise_reg import NoiseRegPrior


class StatsGenerator(Generator):
    """A linear stand-in generator whose ``w_stats`` are fixed and whose calls are recorded."""

    def __init__(self, mean: torch.Tensor, std: float, num_ws: int = 3) -> None:
        super().__init__()
        self.w_dim, self.num_ws, self.img_channels, self.img_shape = mean.numel(), num_ws, 1, (4, 4)
        self.z_dim = self.w_dim
        self.mean, self.std, self.calls = mean, std, []
        self.weight = torch.nn.Parameter(torch.ones(num_ws * self.w_dim, 16) / 16)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return (ws.flatten(1) @ self.weight).view(-1, 1, 4, 4)

    def w_stats(self, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append((n, seed))
        return self.mean, torch.tensor(self.std)


def rng_ws(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def bound_gaussian(mean: np.ndarray, std: float, **fields: object) -> tuple[GaussianPrior, StatsGenerator]:
    G = StatsGenerator(torch.tensor(mean, dtype=torch.float32), std)
    prior = GaussianPrior(**fields)
    prior.bind(G, None)  # type: ignore[arg-type]
    return prior, G


# --- gaussian -----------------------------------------------------------------------------------------------


def test_gaussian_matches_formula_and_uses_w_stats_once() -> None:
    mean, std = np.array([0.5, -1.0, 2.0, 0.0]), 1.7
    prior, G = bound_gaussian(mean, std, n_samples=500, seed=7)
    ws = rng_ws((2, 3, 4))
    squares = ((ws - mean) / std) ** 2
    got = prior.energy(Latents(ws=torch.tensor(ws)))
    np.testing.assert_allclose(got.numpy(), 0.5 * squares.sum(axis=(1, 2)), rtol=1e-6)
    as_brgm, _ = bound_gaussian(mean, std, reduction="mean")
    np.testing.assert_allclose(
        as_brgm.energy(Latents(ws=torch.tensor(ws))).numpy(), squares.mean(axis=(1, 2)), rtol=1e-6
    )
    prior.energy(Latents(ws=torch.tensor(ws)))
    assert G.calls == [(500, 7)]


def test_gaussian_hand_values() -> None:
    prior, _ = bound_gaussian(np.array([1.0, 1.0]), 2.0)
    at_mean = torch.ones(1, 2, 2)
    one_sigma = torch.tensor([[[3.0, -1.0], [3.0, 3.0]]])  # every entry 2 = one σ from μ
    half = torch.tensor([[[1.0, 1.0], [1.0, 5.0]]])  # one entry 2σ away of four: 4 / 4
    energies = prior.energy(Latents(ws=torch.cat([at_mean, one_sigma, half])))
    assert energies.tolist() == [0.0, 2.0, 2.0]  # ½·Σ: four entries at 1σ, or one at 2σ


def test_gaussian_defaults_and_gradcheck() -> None:
    prior, G = bound_gaussian(np.array([0.3, -0.2, 0.1]), 0.9)
    assert G.calls == [(10000, 123)]
    ws = torch.tensor(rng_ws((2, 3, 3), 1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: prior.energy(Latents(ws=w)), (ws,))


def test_gaussian_errors() -> None:
    with pytest.raises(ConfigError, match="not bound"):
        GaussianPrior().energy(Latents(ws=torch.zeros(1, 2, 2)))
    G = StatsGenerator(torch.zeros(4), 1.0)
    G.w_dim = 5
    with pytest.raises(ShapeError, match="w_dim = 5"):
        GaussianPrior().bind(G, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="std must be positive"):
        bound_gaussian(np.zeros(2), 0.0)
    with pytest.raises(ConfigError, match=r"n_samples must be in \[2, 10000000\], got 1"):
        GaussianPrior(n_samples=1)


# --- colinear -----------------------------------------------------------------------------------------------


def colinear_reference(ws: np.ndarray, reduction: str) -> np.ndarray:
    unit = ws / np.linalg.norm(ws, axis=-1, keepdims=True)
    cos = np.einsum("nid,njd->nij", unit, unit)
    dist = np.abs(1 - cos)
    return dist.mean(axis=(1, 2)) if reduction == "mean" else dist.sum(axis=(1, 2))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_colinear_matches_formula(reduction: str) -> None:
    ws = rng_ws((3, 5, 6), 2)
    got = ColinearPrior(reduction=reduction).energy(Latents(ws=torch.tensor(ws)))
    np.testing.assert_allclose(got.numpy(), colinear_reference(ws, reduction), rtol=1e-12)


def test_colinear_hand_values() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 2.0]
    ws = torch.tensor([[e1, e1], [e1, e2], [e1, [-3.0, 0.0]]])
    # pairs (1,1) (1,2) (2,1) (2,2): |1 − cos| = 0, 0, 0, 0 | 0, 1, 1, 0 | 0, 2, 2, 0
    assert ColinearPrior(reduction="mean").energy(Latents(ws=ws)).tolist() == [0.0, 0.5, 1.0]
    assert ColinearPrior(reduction="sum").energy(Latents(ws=ws)).tolist() == [0.0, 2.0, 4.0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scales=st.lists(st.floats(0.1, 10.0), min_size=4, max_size=4))
def test_colinear_ignores_layer_norms_and_rotations(seed: int, scales: list[float]) -> None:
    ws = torch.tensor(rng_ws((1, 4, 5), seed))
    rotation, _ = torch.linalg.qr(torch.tensor(rng_ws((5, 5), seed + 1)))
    moved = ws * torch.tensor(scales, dtype=ws.dtype).view(1, 4, 1) @ rotation
    prior = ColinearPrior()
    assert torch.allclose(prior.energy(Latents(ws=moved)), prior.energy(Latents(ws=ws)), atol=1e-12)


def test_colinear_gradcheck_and_validation() -> None:
    ws = torch.tensor(rng_ws((2, 3, 4), 3), requires_grad=True)
    for reduction in ("mean", "sum"):
        prior = ColinearPrior(reduction=reduction)
        assert torch.autograd.gradcheck(lambda w, p=prior: p.energy(Latents(ws=w)), (ws,))
    with pytest.raises(ConfigError, match="reduction must be one of 'mean', 'sum', got 'max'"):
        ColinearPrior(reduction="max")


# --- noise_reg ----------------------------------------------------------------------------------------------


def noise_reg_reference(noise: np.ndarray) -> np.ndarray:
    """Per-sample multi-scale autocorrelation energy of ``[N, 1, *spatial]`` maps, in numpy."""
    total = np.zeros(noise.shape[0])
    while True:
        for axis in range(2, noise.ndim):
            total += (noise * np.roll(noise, 1, axis=axis)).reshape(noise.shape[0], -1).mean(axis=1) ** 2
        if min(noise.shape[2:]) <= 8:
            return total
        blocks = [noise.shape[0], 1]
        for size in noise.shape[2:]:
            blocks += [size // 2, 2]
        noise = noise.reshape(blocks).mean(axis=tuple(range(3, len(blocks), 2)))


def test_noise_reg_matches_formula_2d_and_3d() -> None:
    maps = [rng_ws((2, 1, 32, 32), 4), rng_ws((2, 1, 16, 16), 5), rng_ws((2, 1, 16, 16, 16), 6)]
    latents = Latents(ws=torch.zeros(2, 3, 4, dtype=torch.float64), noises=[torch.tensor(m) for m in maps])
    expected = sum(noise_reg_reference(m) for m in maps)
    np.testing.assert_allclose(NoiseRegPrior().energy(latents).numpy(), expected, rtol=1e-12)


def test_noise_reg_hand_values() -> None:
    ones8, ones16 = torch.ones(1, 1, 8, 8), torch.ones(1, 1, 16, 16)
    checker = (
        (torch.arange(8).view(8, 1) + torch.arange(8)).remainder(2).mul(2).sub(1).view(1, 1, 8, 8).float()
    )
    energy = NoiseRegPrior().energy
    ws = torch.zeros(1, 1, 1)
    assert energy(Latents(ws=ws, noises=[ones8])).item() == 2.0  # one scale, two axes, (mean 1)² each
    assert energy(Latents(ws=ws, noises=[ones16])).item() == 4.0  # scales 16 and 8
    assert energy(Latents(ws=ws, noises=[checker])).item() == 2.0  # (mean −1)² per axis
    assert energy(Latents(ws=ws, noises=[ones8, ones16])).item() == 6.0
    assert NoiseRegPrior().weight == 1e5


def test_noise_reg_gradcheck_and_errors() -> None:
    noise = torch.tensor(rng_ws((1, 1, 12, 12), 7), requires_grad=True)  # scales 12 and 6
    ws = torch.zeros(1, 1, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: NoiseRegPrior().energy(Latents(ws=ws, noises=[v])), (noise,))
    for noises in (None, []):
        with pytest.raises(ConfigError, match="needs the generator's noise maps"):
            NoiseRegPrior().energy(Latents(ws=ws, noises=noises))
    with pytest.raises(ShapeError, match=r"\[N, 1, H, W\].*got \[1, 16, 16\]"):
        NoiseRegPrior().energy(Latents(ws=ws, noises=[torch.zeros(1, 16, 16)]))


# --- l2 and registration ------------------------------------------------------------------------------------


def test_l2_is_the_squared_norm_of_w_plus() -> None:
    ws = rng_ws((2, 3, 4), 8)
    got = L2Prior().energy(Latents(ws=torch.tensor(ws)))
    np.testing.assert_allclose(got.numpy(), (ws**2).sum(axis=(1, 2)), rtol=1e-12)
    assert L2Prior().energy(Latents(ws=torch.tensor([[[3.0, 4.0]]]))).item() == 25.0
    w = torch.tensor(ws, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: L2Prior().energy(Latents(ws=x)), (w,))


def test_priors_are_registered_through_the_hook() -> None:
    reg = registry()
    expected = {
        "gaussian": GaussianPrior,
        "colinear": ColinearPrior,
        "noise_reg": NoiseRegPrior,
        "l2": L2Prior,
    }
    for name, cls in expected.items():
        component = reg.get("prior", name)
        assert component.obj is cls
        assert component.plugin == "brgm.plugins.priors"
        assert component.description and "\n" not in component.description


# --- noise_reg in a reconstruction: the noise inputs are unknowns --------------------------------------------

SMALL = {"resolution": 16, "channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16}


@pytest.mark.parametrize("gen", ["stylegan2", "stylegan3d"])
def test_given_noise_inputs_are_the_constant_ones_and_checked(gen: str) -> None:
    params = (
        SMALL
        if gen == "stylegan2"
        else {"base_shape": (2, 3, 2), "resolution": 8, "fmaps": 8, "z_dim": 8, "w_dim": 8}
    )
    G = brgm.load_generator(gen, **params)
    with torch.no_grad():
        for layer in G.synthesis_network.noise_layers():
            layer.noise_strength.fill_(0.5)  # a random network adds no noise otherwise
        ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)))
        noises = G.noise_inputs(2)
        assert [tuple(n.shape[:2]) for n in noises] == [(2, 1)] * len(noises) and noises
        torch.testing.assert_close(
            G.synthesis(ws, noises=noises), G.synthesis(ws, noise_mode="const"), rtol=0, atol=0
        )
        assert not torch.equal(G.synthesis(ws, noises=[n + 1 for n in noises]), G.synthesis(ws))
        with pytest.raises(ShapeError, match="noises must have shapes"):
            G.synthesis(ws, noises=noises[:-1])


def test_noise_reg_optimises_the_noise_inputs_normalised_and_returns_them() -> None:
    G = brgm.load_generator("stylegan2", **SMALL)
    with torch.no_grad():
        for layer in G.synthesis_network.noise_layers():
            layer.noise_strength.fill_(0.5)
    problem = brgm.compose(
        gen=G, fwd="downsample", priors=["gaussian", "noise_reg"], device="cpu", **{"fwd.factor": 2}
    )
    assert problem.optimises_noise
    with torch.no_grad():
        y = problem.forward_model(problem.image(Latents(ws=G.mapping(torch.randn(1, 16)))))
    result = brgm.reconstruct(problem, y, steps=15, seed=0)
    history = result.history
    assert torch.isfinite(history["total"]).all() and (history["prior.noise_reg"] > 0).all()
    assert history["total"][-1, 0] < history["total"][0, 0]
    plain = brgm.reconstruct(
        brgm.compose(gen=G, fwd="downsample", device="cpu", **{"fwd.factor": 2}), y, steps=15
    )
    assert not torch.equal(result.image, plain.image)  # the noise moved
    for noise in result.noises:
        torch.testing.assert_close(noise.mean(dim=(1, 2, 3)), torch.zeros(1), rtol=0, atol=1e-6)
        torch.testing.assert_close(noise.square().mean(dim=(1, 2, 3)), torch.ones(1), rtol=0, atol=1e-5)
    with torch.no_grad():
        again = problem.image(Latents(ws=result.ws, noises=result.noises)).clamp(0, 1)
    torch.testing.assert_close(again, result.image, rtol=0, atol=1e-6)


def test_noise_reg_needs_a_generator_with_noise_inputs() -> None:
    with pytest.raises(ConfigError, match="generator TinyGenerator has none; remove noise_reg"):
        brgm.compose(gen="tiny", fwd="test_scale", priors=["noise_reg"], device="cpu")


# --- deviation: an image-space deviation with a total-variation prior ----------------------------------------


def test_total_variation_matches_its_formula_2d_and_3d() -> None:
    from brgm.plugins.priors.deviation import total_variation

    rng = np.random.default_rng(3)
    for shape in ((2, 1, 5, 6), (1, 2, 3, 4, 5)):
        x = rng.random(shape)
        squared = np.zeros(shape)
        for axis in range(2, x.ndim):
            squared += np.diff(x, axis=axis, append=np.take(x, [-1], axis=axis)) ** 2
        expected = (np.sqrt(squared + 1e-6) - 1e-3).reshape(shape[0], -1).sum(axis=1)
        got = total_variation(torch.tensor(x), 1e-3)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    step = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    step[..., 2:] = 1.0  # one vertical edge of height 1 over 4 rows: TV 4 (up to the smoothing)
    assert abs(total_variation(step, 1e-9).item() - 4.0) < 1e-6
    d = torch.tensor(rng.random((1, 1, 4, 5)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: total_variation(v, 1e-2), (d,))


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=3), seed=st.integers(0, 2**16))
def test_gradient_adjoint_is_the_adjoint_of_gradient(shape: list[int], seed: int) -> None:
    from brgm.plugins.priors.deviation import gradient, gradient_adjoint

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    p = torch.randn(len(shape), 2, 1, *shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        (gradient(x) * p).sum(), (x * gradient_adjoint(p)).sum(), rtol=1e-12, atol=1e-12
    )


def deviation_energy(f, base, y, sigma, weight, d, share=0.5) -> torch.Tensor:
    """The deviation's part of the calibrated energy, with ``share`` of β on TV of the image ``base + d``."""
    from brgm.plugins.priors.deviation import total_variation

    tv = (1 - share) * total_variation(d) + share * total_variation(base + d)
    return (f(base + d) - y).abs().square().flatten(1).sum(1) / (2 * sigma**2) + weight * tv


def test_the_deviation_energy_splits_beta_between_the_deviation_and_the_image() -> None:
    from brgm.plugins.priors.deviation import DeviationPrior, total_variation

    g = torch.Generator().manual_seed(0)
    d, x = (torch.randn(2, 1, 6, 7, generator=g, dtype=torch.float64) for _ in range(2))
    latents = Latents(ws=torch.zeros(2, 3, 4), deviation=d)
    for share in (0.0, 0.3, 1.0):
        got = DeviationPrior(image_share=share, eps=1e-9).energy(latents, x)
        expected = (1 - share) * total_variation(d, 1e-9) + share * total_variation(x, 1e-9)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    with pytest.raises(ConfigError, match="deviation"):
        DeviationPrior().energy(Latents(ws=torch.zeros(2, 3, 4)), x)


def test_problem_energies_give_the_deviation_prior_the_reconstruction() -> None:
    from brgm.plugins.priors.deviation import total_variation

    problem = brgm.compose(gen="tiny", fwd="mask", priors=["deviation"], device="cpu")
    ws = problem.generator.mapping(
        torch.randn(1, problem.generator.z_dim, generator=torch.Generator().manual_seed(0))
    )
    d = 0.1 * torch.randn(1, *problem.image_shape, generator=torch.Generator().manual_seed(1))
    latents = Latents(ws=ws, deviation=d)
    x, terms = problem.energies(latents, problem.forward_model(problem.image(latents)), weighted=False)
    share = problem.priors[0].image_share
    assert 0 < share < 1
    expected = (1 - share) * total_variation(d, 1e-3) + share * total_variation(x, 1e-3)
    torch.testing.assert_close(terms["prior.deviation"], expected)


def test_with_all_of_beta_on_the_image_the_solve_is_tv_whatever_the_generator_says() -> None:
    """``image_share=1`` is a classical TV reconstruction: the image ``base + d`` does not depend on ``base``;
    with the share on the deviation (``image_share=0``) it does, where k-space was not measured."""
    from brgm.plugins.priors.deviation import DeviationPrior

    f = brgm.forward_model("kspace", seed=0)
    truth = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    truth[..., 4:12, 5:11] = 1.0
    y, sigma = f(truth), torch.tensor([0.05], dtype=torch.float64)
    bases = (
        torch.zeros_like(truth),
        torch.rand(truth.shape, generator=torch.Generator().manual_seed(0)).to(truth),
    )

    def images(share: float) -> list[torch.Tensor]:
        prior = DeviationPrior(weight=30.0, image_share=share, iterations=20000, tolerance=0.0)
        return [base + prior.minimise_deviation(f, base, y, sigma, torch.zeros_like(base)) for base in bases]

    tv = images(1.0)
    torch.testing.assert_close(tv[0], tv[1], rtol=0, atol=1e-6)
    generator_kept = images(0.0)
    assert (generator_kept[0] - generator_kept[1]).abs().max() > 0.1


@pytest.mark.parametrize("share", [0.0, 0.5])
@pytest.mark.parametrize(
    ("fwd", "params"), [("mask", {"missing": "box"}), ("kspace", {"seed": 0}), ("blur", {})]
)
def test_minimise_deviation_reaches_the_convex_minimum(fwd, params, share) -> None:
    from brgm.plugins.priors.deviation import DeviationPrior

    f = brgm.forward_model(fwd, **params)
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    truth[:, :, 4:12, 5:11] = 1.0  # a square the "generator" misses
    base = 0.3 * torch.ones_like(truth)
    y = f(truth)
    y = y + 0.01 * (
        torch.randn(y.shape, generator=g)
        if not y.is_complex()
        else torch.randn(y.shape, generator=g, dtype=y.dtype)
    )
    sigma = torch.tensor([0.01, 0.02], dtype=torch.float64)
    zero = torch.zeros_like(base)

    def energy_after(iterations: int) -> torch.Tensor:
        prior = DeviationPrior(weight=30.0, image_share=share, iterations=iterations, tolerance=0.0)
        d = prior.minimise_deviation(f, base, y, sigma, zero)
        return deviation_energy(f, base, y, sigma, 30.0, d, share)

    default, longer, best = (energy_after(n) for n in (500, 3000, 20000))
    start = deviation_energy(f, base, y, sigma, 30.0, zero, share)
    assert (default < start).all() and (longer <= default * (1 + 1e-9)).all()
    assert ((default - best) / best < 2e-2).all(), (default, best)  # 500 suffice at these noise levels
    assert ((longer - best) / best < 1e-2).all(), (longer, best)
    d = DeviationPrior(weight=30.0, image_share=share).minimise_deviation(f, base, y, sigma, zero)
    # the deviation explains what the generator's image misses: the data misfit falls well below the base's
    assert (f(base + d) - y).abs().square().sum() < 0.1 * (f(base) - y).abs().square().sum()


def test_minimise_deviation_with_keep_fits_only_the_kept_entries() -> None:
    """``keep`` (hold-out validation in benchmarks/defaults.py) leaves entries out of the data term: what was
    measured there cannot matter, all ones is the full solve, and the solve reaches the restricted minimum."""
    from brgm.plugins.priors.deviation import DeviationPrior

    f = brgm.forward_model("kspace", seed=0)
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    truth[:, :, 4:12, 5:11] = 1.0
    base, y = 0.3 * torch.ones_like(truth), f(truth)
    keep = (torch.rand(y.shape, generator=g) > 0.3).to(torch.float64)
    sigma, zero = torch.tensor([0.01, 0.02], dtype=torch.float64), torch.zeros_like(base)
    prior = DeviationPrior(weight=30.0, iterations=3000, tolerance=0.0)
    kept = prior.minimise_deviation(f, base, y, sigma, zero, keep=keep)
    other = y + (1 - keep) * torch.randn(y.shape, generator=g, dtype=y.dtype)  # changed only where left out
    torch.testing.assert_close(prior.minimise_deviation(f, base, other, sigma, zero, keep=keep), kept)
    torch.testing.assert_close(
        prior.minimise_deviation(f, base, y, sigma, zero, keep=torch.ones_like(keep)),
        prior.minimise_deviation(f, base, y, sigma, zero),
    )
    full = prior.minimise_deviation(f, base, y, sigma, zero)
    assert (kept - full).abs().max() > 1e-3  # leaving entries out changes the answer ...

    def restricted(d: torch.Tensor) -> torch.Tensor:  # ... to the minimum of the energy over the kept entries
        return deviation_energy(lambda v: keep * f(v), base, keep * y, sigma, 30.0, d, 0.4)

    assert (restricted(kept) < restricted(full)).all()
    longer = attrs.evolve(prior, iterations=20000).minimise_deviation(f, base, y, sigma, zero, keep=keep)
    assert ((restricted(kept) - restricted(longer)) / restricted(longer) < 1e-2).all()


def test_the_default_deviation_solve_converges_on_noiseless_blur() -> None:
    """At the σ floor (noiseless input) the data term is stiff and blur's small singular values make the
    Chambolle–Pock solve slow: 500 iterations (the earlier default) end 7–9× above the minimum's energy."""
    from brgm.core.noise_level import SIGMA_FLOOR
    from brgm.plugins.priors.deviation import DeviationPrior

    f = brgm.forward_model("blur", sigma=2.0)
    truth = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    truth[:, :, 4:12, 5:11] = 1.0
    truth[1, :, 2:6, 2:6] = 0.5
    base, y = 0.3 * torch.ones_like(truth), f(truth)
    sigma = SIGMA_FLOOR * y.square().flatten(1).mean(1).sqrt()
    zero = torch.zeros_like(base)
    default, best = (
        deviation_energy(f, base, y, sigma, prior.weight, prior.minimise_deviation(f, base, y, sigma, zero))
        for prior in (DeviationPrior(), DeviationPrior(iterations=20000))
    )
    assert ((default - best) / best < 0.3).all(), (default, best)


def test_the_deviation_solve_stops_once_each_item_has_converged(monkeypatch) -> None:
    from brgm.plugins.priors import deviation

    f = brgm.forward_model("kspace", seed=0)
    r = torch.linspace(-1, 1, 16, dtype=torch.float64)
    smooth = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 0.2)[None, None]  # converges in 100 iterations
    square = torch.zeros_like(smooth)
    square[..., 4:12, 5:11] = 1.0  # TV's slow case: still moving after 5000
    truth = torch.cat([smooth, square])
    base, y = 0.8 * truth, f(truth)
    sigma, zero = torch.full((2,), 0.01, dtype=torch.float64), torch.zeros_like(truth)
    calls, gradient = [], deviation.gradient

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return gradient(x)

    monkeypatch.setattr(deviation, "gradient", counted)
    prior = deviation.DeviationPrior(image_share=0.0)  # TV(d) alone: the smooth item converges in 100
    alone = prior.minimise_deviation(f, base[:1], y[:1], sigma[:1], zero[:1])
    assert len(calls) == 1 + deviation.CHECK_EVERY  # the base's gradient, then one per iteration
    calls.clear()
    batch = prior.minimise_deviation(f, base, y, sigma, zero)
    assert len(calls) == 1 + prior.iterations
    full = deviation.DeviationPrior(image_share=0.0, tolerance=0.0).minimise_deviation(
        f, base, y, sigma, zero
    )
    # the converged item is left alone, the other one runs on: each answer is the one it gets alone
    torch.testing.assert_close(batch[:1], alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(batch[1:], full[1:], rtol=0, atol=1e-12)
    early, converged = (deviation_energy(f, base, y, sigma, prior.weight, d, 0.0)[0] for d in (alone, full))
    assert abs(early - converged) / converged < 1e-6, (early, converged)


def test_minimise_deviation_needs_a_linear_model_and_iterations() -> None:
    from brgm.plugins.priors.deviation import DeviationPrior
    from tests.test_likelihoods import Identity  # a ForwardModel without an adjoint

    x = torch.zeros(1, 1, 8, 8)
    nonlinear = Identity()
    assert DeviationPrior().minimise_deviation(nonlinear, x, x, torch.ones(1), x) is None
    assert (
        DeviationPrior(iterations=0).minimise_deviation(brgm.forward_model("mask"), x, x, torch.ones(1), x)
        is None
    )


def test_map_leaves_the_deviation_to_the_exact_solve_unless_asked_to_optimise_it() -> None:
    """``solver.deviation_lr=0`` (the default): Adam fits the latents alone, so the generator's image is the plain
    Gaussian MAP's (the deviation prior's share on the image's TV does not smooth it), and the deviation is the
    exact solve's; ``deviation_lr > 0`` optimises both jointly."""
    from brgm.plugins.priors.deviation import DeviationPrior

    common = {"gen": "tiny", "fwd": "mask", "device": "cpu", "gen.size": 8, "solver.consistency": "off"}
    plain = brgm.compose(priors=["gaussian"], **common)
    with_deviation = brgm.compose(priors=["gaussian", "deviation"], **common)
    assert with_deviation.priors[1].image_share > 0
    x = torch.rand(2, *plain.image_shape, generator=torch.Generator().manual_seed(3))
    y = plain.forward_model(x)

    reference = brgm.reconstruct(plain, y, steps=20, seed=0)
    staged = brgm.reconstruct(with_deviation, y, steps=20, seed=0)
    torch.testing.assert_close(staged.generated, reference.image, atol=1e-6, rtol=0)
    deviation_prior = next(p for p in with_deviation.priors if isinstance(p, DeviationPrior))
    sigma = with_deviation.energy_sigma(y, with_deviation.noise_level(y))
    exact = deviation_prior.minimise_deviation(
        with_deviation.forward_model, staged.generated, y, sigma, torch.zeros_like(staged.generated)
    )
    torch.testing.assert_close(staged.image, (staged.generated + exact).clamp(0, 1), atol=1e-5, rtol=0)

    joint = brgm.reconstruct(with_deviation, y, steps=20, seed=0, deviation_lr=0.05)
    assert (joint.generated - reference.image).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="deviation_lr"):
        brgm.reconstruct(with_deviation, y, steps=2, deviation_lr=-1)
