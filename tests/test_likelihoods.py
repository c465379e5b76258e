"""Likelihoods: pixel and k-space L2 against hand values, LPIPS against the lpips package, backbone rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import brgm
from brgm.core.errors import CheckpointError, ConfigError, ShapeError, WeightsNotFoundError
from brgm.core.generator import Generator
from brgm.core.lpips import build_lpips, feature_length, lpips_network
from brgm.core.operators import ForwardModel
from brgm.core.plugins import registry
from brgm.plugins.likelihoods.kspace import KSpaceLikelihood
from brgm.plugins.likelihoods.perceptual import PerceptualLikelihood, lpips_size
from brgm.plugins.likelihoods.pixel import PixelLikelihood


class ShapeOnlyGenerator(Generator):
    """Declares an output shape; ``bind`` needs nothing else."""

    def __init__(self, channels: int = 1, shape: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.z_dim = self.w_dim = 4
        self.num_ws, self.img_channels, self.img_shape = 2, channels, shape


class Identity(ForwardModel):
    name = "identity"


class Fourier(ForwardModel):
    """Orthonormal 2D FFT; the naive inverse is the real part of the inverse FFT."""

    name = "fourier"
    complex_output = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(y, norm="ortho").real


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- pixel --------------------------------------------------------------------------------------------------


def test_pixel_hand_values() -> None:
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # [1, 2, 2, 2]
    pred = torch.zeros_like(target)
    mean = PixelLikelihood(reduction="mean")
    assert mean.energy(pred, target, Identity()).item() == 30 / 8  # mean over C·H·W
    half = torch.tensor([0.5])
    assert PixelLikelihood().energy(pred, target, Identity(), half).item() == 30 / (2 * 0.25)
    cplx = torch.tensor([[1 + 1j, 0j, 3j, 0j]])
    assert mean.energy(cplx, torch.zeros_like(cplx), Identity()).item() == (2 + 9) / 4
    # the negative log-likelihood counts real and imaginary parts, each of variance sigma²
    assert PixelLikelihood().energy(cplx, torch.zeros_like(cplx), Identity(), half).item() == 11 / (2 * 0.25)


def test_pixel_nll_sums_only_the_measured_entries() -> None:
    f = brgm.forward_model("mask", missing="right", fill=0.7)
    target = f(rand(2, 1, 4, 4, seed=3))
    pred = f(rand(2, 1, 4, 4, seed=4))
    sigma = torch.tensor([0.1, 0.2])
    observed = f.measured(target.shape).expand(target.shape)
    expected = ((pred - target) ** 2 * observed).flatten(1).sum(dim=1) / (2 * sigma**2)
    torch.testing.assert_close(PixelLikelihood().energy(pred, target, f, sigma), expected, rtol=1e-6, atol=0)


def test_pixel_matches_numpy_per_sample_and_gradcheck() -> None:
    pred, target = (
        rand(3, 2, 5, 7, seed=1, dtype=torch.float64),
        rand(3, 2, 5, 7, seed=2, dtype=torch.float64),
    )
    expected = ((pred.numpy() - target.numpy()) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(
        PixelLikelihood(reduction="mean").energy(pred, target, Identity()).numpy(), expected, rtol=1e-12
    )
    pred.requires_grad_(True)
    sigma = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    for like in (PixelLikelihood(reduction="mean"), PixelLikelihood()):
        assert torch.autograd.gradcheck(
            lambda p, like=like: like.energy(p, target, Identity(), sigma), (pred,)
        )


def test_pixel_validation() -> None:
    with pytest.raises(ConfigError, match=r"reduction must be one of 'nll', 'mean', got 'sum'"):
        PixelLikelihood(reduction="sum")
    with pytest.raises(ConfigError, match="needs the measurement's noise level sigma"):
        PixelLikelihood().energy(torch.zeros(1, 4), torch.zeros(1, 4), Identity())
    with pytest.raises(ShapeError, match=r"prediction \[1, 4\] and measurement \[1, 5\]"):
        PixelLikelihood().energy(torch.zeros(1, 4), torch.zeros(1, 5), Identity())


# --- kspace -------------------------------------------------------------------------------------------------


class MaskedFourier(Fourier):
    """Declares entries 1 and 3 of a length-4 measurement as the sampled ones."""

    def measured(self, shape, device="cpu"):
        return torch.tensor([False, True, False, True], device=device)


def test_kspace_averages_over_the_operators_sampled_entries_only() -> None:
    target = torch.tensor([[0j, 1 + 1j, 0j, 2 + 0j], [7j, 0j, 0j, 0j]])
    pred = torch.tensor([[5 + 0j, 0j, 5j, 2 + 0j], [1 + 0j, 0j, 0j, 3 + 0j]])
    # sample 0: sampled entries 1 and 3 give |−1 − i|² = 2 and 0; sample 1: entry 0 (7j) is not sampled, the
    # sampled entries 1 (an exact zero) and 3 give 0 and 9
    assert KSpaceLikelihood().energy(pred, target, MaskedFourier()).tolist() == [1.0, 4.5]
    # an operator that samples everything: the mean over all entries
    assert KSpaceLikelihood().energy(pred, target, Fourier()).tolist() == [(25 + 2 + 25) / 4, (50 + 9) / 4]


def test_kspace_with_full_sampling_is_the_pixel_term() -> None:
    x1, x2 = rand(2, 1, 8, 6, seed=3, dtype=torch.float64), rand(2, 1, 8, 6, seed=4, dtype=torch.float64)
    fwd = Fourier()
    got = KSpaceLikelihood().energy(fwd(x1), fwd(x2), fwd)
    assert torch.allclose(got, PixelLikelihood(reduction="mean").energy(x1, x2, Identity()), rtol=1e-12)


def test_kspace_sampled_entries_are_those_of_the_kspace_operator() -> None:
    fwd = brgm.forward_model("kspace+gaussian_noise", kspace__acceleration=4, gaussian_noise__sigma=0.01)
    x, x2 = rand(2, 1, 32, 32, seed=13, dtype=torch.float64), rand(2, 1, 32, 32, seed=14, dtype=torch.float64)
    y = fwd.simulate(x, torch.Generator().manual_seed(0))
    sampled = fwd(x) != 0  # the noiseless k-space of a random image is zero exactly where unsampled
    assert 0 < sampled.double().mean() < 0.5
    assert torch.equal(fwd.measured(y.shape).expand(y.shape), sampled)
    first = tuple(sampled.nonzero()[0])
    y[first] = 0  # a sampled entry that is exactly zero (real k-space has them) still counts
    expected = ((fwd(x2) - y).abs().square() * sampled).flatten(1).sum(1) / sampled.flatten(1).sum(1)
    assert torch.allclose(KSpaceLikelihood().energy(fwd(x2), y, fwd), expected, rtol=1e-12)
    assert KSpaceLikelihood().energy(fwd(x), fwd(x), fwd).tolist() == [0.0, 0.0]


def test_kspace_rejects_real_measurements() -> None:
    KSpaceLikelihood().bind(ShapeOnlyGenerator(), Fourier())
    with pytest.raises(ConfigError, match="fwd=identity produces real images; use like=pixel"):
        KSpaceLikelihood().bind(ShapeOnlyGenerator(), Identity())


# --- perceptual: backbone rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "filename"), [("vgg", "vgg16-397923af.pth"), ("alex", "alexnet-owt-7be5be79.pth")]
)
def test_missing_backbone_names_file_and_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, net: str, filename: str
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        PerceptualLikelihood(net=net).bind(ShapeOnlyGenerator(), Identity())
    message = str(err.value)
    assert filename in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "random_backbone_seed" in message


def test_backbone_file_is_loaded_into_the_trunk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import lpips
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(11)
    features = torchvision.models.alexnet().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save(state, folder / "alexnet-owt-7be5be79.pth")
    net = lpips_network("alex")
    assert torch.equal(net.net.slice1[0].weight, features[0].weight)
    assert torch.equal(getattr(net.net.slice5, "10").bias, features[10].bias)
    heads = torch.load(
        Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    assert torch.equal(net.lin4.model[1].weight, heads["lin4.model.1.weight"])
    assert not any(p.requires_grad for p in net.parameters())

    del state["features.8.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial\.pth is not torchvision's alex checkpoint"):
        build_lpips("alex", backbone=tmp_path / "partial.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read the weights .*broken\.pth"):
        build_lpips("alex", backbone=tmp_path / "broken.pth")


def test_random_backbone_is_seeded_and_keeps_the_global_rng() -> None:
    before = torch.get_rng_state()
    a, c = (build_lpips("alex", random_backbone_seed=s) for s in (0, 2))
    b = lpips_network("alex", 0)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.net.slice1[0].weight, c.net.slice1[0].weight)
    assert torch.equal(a.lin0.model[1].weight, c.lin0.model[1].weight)  # the shipped heads, not random


# --- perceptual: the energy ---------------------------------------------------------------------------------


def bound(generator: Generator, fwd: ForwardModel, **fields: object) -> PerceptualLikelihood:
    like = PerceptualLikelihood(net="alex", random_backbone_seed=0, **fields)
    like.bind(generator, fwd)
    return like


def test_perceptual_is_lpips_of_the_package_and_differentiable() -> None:
    like = bound(ShapeOnlyGenerator(1, (48, 40)), Identity())
    pred, target = rand(2, 1, 48, 40, seed=5).requires_grad_(True), rand(2, 1, 48, 40, seed=6)
    energy = like.energy(pred, target, Identity())
    network = lpips_network("alex", 0)
    reference = network(pred.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1), normalize=True).flatten()
    assert energy.shape == (2,)
    assert torch.allclose(energy, reference, rtol=1e-6, atol=0)
    assert torch.equal(like.energy(target, target, Identity()), torch.zeros(2))
    (grad,) = torch.autograd.grad(energy.sum(), pred)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    rgb = bound(ShapeOnlyGenerator(3, (48, 40)), Identity())
    gray_as_rgb = rgb.energy(pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1), Identity())
    assert torch.allclose(gray_as_rgb, energy, rtol=1e-6)


def test_lpips_sizes_of_each_reference() -> None:
    assert lpips_size(1024, 1024, "tf") == (256, 256)
    assert lpips_size(512, 384, "tf") == (256, 192)
    assert lpips_size(300, 300, "tf") == (300, 300)  # factor 300 // 256 = 1
    assert lpips_size(16, 16, "tf") == (16, 16)
    assert lpips_size(16, 16, "pt") == lpips_size(1024, 1024, "pt") == (256, 256)


def test_tf_resize_box_downsamples_large_images() -> None:
    like = bound(ShapeOnlyGenerator(1, (512, 512)), Identity(), resize="tf")
    pred, target = rand(1, 1, 512, 512, seed=7), rand(1, 1, 512, 512, seed=8)
    box = [t.reshape(1, 1, 256, 2, 256, 2).mean(dim=(3, 5)).repeat(1, 3, 1, 1) for t in (pred, target)]
    reference = lpips_network("alex", 0)(*box, normalize=True).flatten()
    assert torch.allclose(like.energy(pred, target, Identity()), reference, rtol=1e-5)


def test_pt_resize_and_mean_reduction() -> None:
    like = bound(ShapeOnlyGenerator(1, (64, 64)), Identity(), resize="pt", reduction="mean")
    pred, target = rand(2, 1, 64, 64, seed=9), rand(2, 1, 64, 64, seed=10)
    up = [
        t.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3).repeat(1, 3, 1, 1) for t in (pred, target)
    ]
    lpips_value = lpips_network("alex", 0)(*up, normalize=True).flatten()
    # AlexNet taps at 256²: conv1 (11×11, stride 4, pad 2) 64·63², then 3×3 stride-2 pools: 192·31², 3 × 15²
    length = 64 * 63**2 + 192 * 31**2 + (384 + 256 + 256) * 15**2
    assert length == 640128
    assert torch.allclose(like.energy(pred, target, Identity()) * length, lpips_value, rtol=1e-5)


def test_vgg_feature_vector_length_at_256_is_the_research_estimate() -> None:
    """brgm.md §3.2: 64·256² + 128·128² + 256·64² + 512·32² + 512·16² ≈ 8.0e6 activations, so 1e7/D ≈ 1.25."""
    network = lpips_network("vgg", 0)
    assert feature_length(network, 256, 256) == 7_995_392
    assert feature_length(network, 16, 16) == 64 * 256 + 128 * 64 + 256 * 16 + 512 * 4 + 512 * 1


def test_kspace_measurements_compare_naive_inverses() -> None:
    fwd = Fourier()
    like = bound(ShapeOnlyGenerator(1, (40, 40)), fwd)
    x1, x2 = rand(2, 1, 40, 40, seed=11), rand(2, 1, 40, 40, seed=12)
    image_space = bound(ShapeOnlyGenerator(1, (40, 40)), Identity()).energy(x1, x2, Identity())
    assert torch.allclose(like.energy(fwd(x1), fwd(x2), fwd), image_space, atol=1e-5)


def test_perceptual_errors() -> None:
    with pytest.raises(ShapeError, match=r"compares 2D images.*3D volumes of shape \[8, 8, 8\]"):
        bound(ShapeOnlyGenerator(1, (8, 8, 8)), Identity())
    with pytest.raises(ShapeError, match=r"grayscale or RGB.*shape \[1, 2, 64, 64\]"):
        bound(ShapeOnlyGenerator(2), Identity())
    with pytest.raises(ShapeError, match="16×16 are too small for LPIPS"):
        bound(ShapeOnlyGenerator(1, (16, 16)), Identity())
    with pytest.raises(ConfigError, match="not bound"):
        PerceptualLikelihood().energy(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), Identity())
    with pytest.raises(ConfigError, match="resize must be one of 'tf', 'pt', got 'bilinear'"):
        PerceptualLikelihood(resize="bilinear")
    with pytest.raises(ConfigError, match="net must be one of 'vgg', 'alex', got 'squeeze'"):
        PerceptualLikelihood(net="squeeze")
    with pytest.raises(ConfigError, match="reduction must be one of 'lpips', 'mean'"):
        PerceptualLikelihood(reduction="sum")
    with pytest.raises(ConfigError, match="random_backbone_seed must be in"):
        PerceptualLikelihood(random_backbone_seed=-1)


def test_likelihoods_are_registered_through_the_hook() -> None:
    reg = registry()
    for name, cls in {
        "pixel": PixelLikelihood,
        "perceptual": PerceptualLikelihood,
        "kspace": KSpaceLikelihood,
    }.items():
        component = reg.get("likelihood", name)
        assert component.obj is cls and component.plugin == "brgm.plugins.likelihoods"
