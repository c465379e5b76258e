"""Metrics: PSNR and SSIM against scikit-image, fastMRI's definitions, hand-computed cases, properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from brgm import metrics
from brgm.core.errors import ShapeError, WeightsNotFoundError
from tests.conftest import DEVICES


def pair(shape: tuple[int, ...], seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A target in [0, 1] and a noisy prediction clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    return np.clip(target + noise * rng.standard_normal(shape), 0, 1), target


def t(a: np.ndarray, device: str = "cpu") -> torch.Tensor:
    return torch.tensor(a, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_psnr_and_ssim_match_skimage_on_images(device: str) -> None:
    pred, target = pair((3, 3, 21, 17))
    for data_range in (1.0, 255.0):
        p, g = pred * data_range, target * data_range
        got_psnr = metrics.psnr(t(p, device), t(g, device), data_range=data_range).cpu().numpy()
        got_ssim = metrics.ssim(t(p, device), t(g, device), data_range=data_range).cpu().numpy()
        want_psnr = [peak_signal_noise_ratio(g[i], p[i], data_range=data_range) for i in range(3)]
        want_ssim = [
            structural_similarity(g[i], p[i], data_range=data_range, channel_axis=0) for i in range(3)
        ]
        np.testing.assert_allclose(got_psnr, want_psnr, rtol=1e-12)
        np.testing.assert_allclose(got_ssim, want_ssim, rtol=1e-10)


def test_ssim_matches_skimage_on_volumes_and_other_windows() -> None:
    pred, target = pair((2, 1, 9, 12, 10), seed=1, noise=0.05)
    want = [structural_similarity(target[i, 0], pred[i, 0], data_range=1.0) for i in range(2)]
    np.testing.assert_allclose(metrics.ssim(t(pred), t(target)).numpy(), want, rtol=1e-10)
    pred, target = pair((1, 1, 15, 11), seed=2)
    want = structural_similarity(target[0, 0], pred[0, 0], data_range=1.0, win_size=5)
    np.testing.assert_allclose(metrics.ssim(t(pred), t(target), win_size=5).numpy(), [want], rtol=1e-10)


def test_hand_computed_values() -> None:
    target = torch.full((2, 1, 8, 8), 0.5)
    pred = target + torch.tensor([0.1, -0.2]).view(2, 1, 1, 1)
    np.testing.assert_allclose(metrics.psnr(pred, target).numpy(), [20.0, 10 * np.log10(25)], rtol=1e-6)
    np.testing.assert_allclose(metrics.rmse(pred, target).numpy(), [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(metrics.rmse(pred, target, scale=255).numpy(), [25.5, 51.0], rtol=1e-6)
    np.testing.assert_allclose(metrics.nmse(pred, target).numpy(), [0.04, 0.16], rtol=1e-6)
    # constant images have no variance: SSIM = (2ab + C1) / (a² + b² + C1) with C1 = 0.01²
    a, b, c1 = 0.6, 0.5, 1e-4
    np.testing.assert_allclose(
        metrics.ssim(pred[:1], target[:1]).item(), (2 * a * b + c1) / (a * a + b * b + c1)
    )
    assert metrics.psnr(target, target).tolist() == [float("inf")] * 2
    assert metrics.ssim(pred, pred).tolist() == [1.0, 1.0]
    assert metrics.psnr(pred.float(), target.float()).dtype == torch.float64


def test_fastmri_definitions_use_the_volume_maximum() -> None:
    pred, target = pair((2, 1, 4, 16, 18), seed=3)
    target *= np.array([0.8, 0.3]).reshape(2, 1, 1, 1, 1)
    pred *= np.array([0.8, 0.3]).reshape(2, 1, 1, 1, 1)
    for i in range(2):
        gt, rec = target[i, 0], pred[i, 0]  # fastMRI's (slices, H, W) volume
        maxval = gt.max()
        want_psnr = peak_signal_noise_ratio(gt, rec, data_range=maxval)
        want_ssim = np.mean([structural_similarity(gt[s], rec[s], data_range=maxval) for s in range(4)])
        want_nmse = np.linalg.norm(gt - rec) ** 2 / np.linalg.norm(gt) ** 2
        assert metrics.fastmri_psnr(t(pred), t(target))[i].item() == pytest.approx(want_psnr, rel=1e-12)
        assert metrics.fastmri_ssim(t(pred), t(target))[i].item() == pytest.approx(want_ssim, rel=1e-10)
        assert metrics.nmse(t(pred), t(target))[i].item() == pytest.approx(want_nmse, rel=1e-12)
    # a 2D image's slices are its channels; an explicit range overrides the maximum
    image_pred, image_target = pair((1, 2, 12, 12), seed=4)
    want = np.mean(
        [structural_similarity(image_target[0, c], image_pred[0, c], data_range=1.0) for c in range(2)]
    )
    got = metrics.fastmri_ssim(t(image_pred), t(image_target), data_range=1.0).item()
    assert got == pytest.approx(want, rel=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), noise=st.floats(0.01, 0.5))
def test_symmetry_and_bounds(seed: int, noise: float) -> None:
    pred, target = (t(a) for a in pair((2, 1, 9, 9), seed, noise))
    assert torch.equal(metrics.psnr(pred, target), metrics.psnr(target, pred))
    assert torch.allclose(metrics.ssim(pred, target), metrics.ssim(target, pred), rtol=1e-12)
    assert (metrics.ssim(pred, target) <= 1).all() and (metrics.ssim(pred, target) >= -1).all()
    assert torch.allclose(
        metrics.rmse(pred, target) ** 2, metrics.nmse(pred, target) * target.square().mean((1, 2, 3))
    )


def test_errors_name_the_problem() -> None:
    with pytest.raises(ShapeError, match=r"pred \[1, 1, 8, 8\] and target \[1, 1, 8, 9\]"):
        metrics.psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ShapeError, match=r"\[N, C, H, W\] or volumes \[N, C, D, H, W\], got shape \[8, 8\]"):
        metrics.rmse(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ShapeError, match=r"win_size=7 needs every spatial side ≥ 7, got \[6, 9\]"):
        metrics.ssim(torch.zeros(1, 1, 6, 9), torch.zeros(1, 1, 6, 9))
    with pytest.raises(ShapeError, match="magnitude"):
        metrics.nmse(
            torch.zeros(1, 1, 8, 8, dtype=torch.complex64), torch.ones(1, 1, 8, 8, dtype=torch.complex64)
        )


def test_lpips_follows_the_perceptual_backbone_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pred, target = (torch.tensor(a, dtype=torch.float32) for a in pair((2, 1, 40, 40), seed=5))
    got = metrics.lpips(pred, target, net="alex", random_backbone_seed=0)
    from brgm.core.lpips import lpips_network

    want = lpips_network("alex", 0)(pred.repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1), normalize=True)
    assert torch.allclose(got, want.flatten(), rtol=1e-6)
    assert metrics.lpips(target, target, net="alex", random_backbone_seed=0).tolist() == [0.0, 0.0]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"vgg16-397923af\.pth"):
        metrics.lpips(pred, target)
    with pytest.raises(ShapeError, match="LPIPS compares 2D images"):
        metrics.lpips(
            torch.zeros(1, 1, 4, 32, 32), torch.zeros(1, 1, 4, 32, 32), net="alex", random_backbone_seed=0
        )
