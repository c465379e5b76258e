"""Image-quality metrics on batches of images or volumes ``[N, C, *spatial]`` (2D or 3D), one value per item.

Arguments are ``(pred, target)``: the reconstruction, then the ground truth, both real intensity tensors of the
same shape, in [0, 1] by brgm's convention. Each function returns a tensor ``[N]`` on the inputs' device: float64
(computed in float64) except :func:`lpips` (float32). ``data_range`` is the span of possible intensities (1.0 for [0, 1];
pass 255 for 8-bit images), a float or a per-item tensor ``[N]``.

- :func:`psnr`, :func:`ssim`, :func:`rmse`, :func:`nmse`: whole-item definitions with an explicit range.
- :func:`fastmri_psnr`, :func:`fastmri_ssim`: fastMRI's ``evaluate.py`` definitions (the range is the
  target's maximum over the item, and SSIM is averaged over 2D slices); :func:`nmse` is already fastMRI's.
- :func:`lpips`: the LPIPS distance, with the backbone rules of the ``perceptual`` likelihood.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from brgm.core.errors import ShapeError
from brgm.core.lpips import lpips_distance, lpips_network

__all__ = ["fastmri_psnr", "fastmri_ssim", "lpips", "nmse", "psnr", "rmse", "ssim"]

Range = float | torch.Tensor


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ``(pred, target)`` pair and return both as float64."""
    if pred.shape != target.shape:
        raise ShapeError(f"pred {list(pred.shape)} and target {list(target.shape)} must have the same shape")
    if pred.ndim not in (4, 5):
        raise ShapeError(
            f"metrics take images [N, C, H, W] or volumes [N, C, D, H, W], got shape {list(pred.shape)}"
        )
    if pred.is_complex() or target.is_complex():
        raise ShapeError("metrics take real images; take the magnitude (.abs()) of complex ones first")
    return pred.double(), target.double()


def _per_item(value: Range, n: int, like: torch.Tensor) -> torch.Tensor:
    """A float or ``[N]`` tensor as a float64 ``[N]`` tensor on ``like``'s device."""
    out = torch.as_tensor(value, dtype=torch.float64, device=like.device)
    return out.expand(n) if out.ndim == 0 else out.reshape(n)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).square().flatten(1).mean(dim=1)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: Range = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10·log10(data_range² / MSE)`` over each item -> ``[N]`` (+inf when
    equal). Matches ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=data_range)``."""
    pred, target = _pair(pred, target)
    peak = _per_item(data_range, pred.shape[0], pred)
    return 10 * torch.log10(peak.square() / _mse(pred, target))


def rmse(pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Root-mean-square error over each item, times ``scale`` -> ``[N]``, ≥ 0. ``scale=255`` gives BRGM's
    tables' 0–255 units for [0, 1] images."""
    pred, target = _pair(pred, target)
    return _mse(pred, target).sqrt() * scale


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalised MSE ``‖pred − target‖² / ‖target‖²`` over each item (fastMRI's ``nmse`` of a volume) ->
    ``[N]``, ≥ 0 (nan for an all-zero target)."""
    pred, target = _pair(pred, target)
    return (pred - target).square().flatten(1).sum(dim=1) / target.square().flatten(1).sum(dim=1)


def _ssim(
    pred: torch.Tensor, target: torch.Tensor, peak: torch.Tensor, win_size: int, k1: float, k2: float
) -> torch.Tensor:
    """Mean SSIM of ``[B, 1, *spatial]`` float64 pairs with ranges ``peak [B]``: scikit-image's definition with a
    uniform ``win_size`` window over every spatial axis, sample covariances, and the mean taken over the
    positions where the window fits (skimage's cropped border)."""
    dims = pred.ndim - 2
    if min(pred.shape[2:]) < win_size:
        raise ShapeError(
            f"SSIM with win_size={win_size} needs every spatial side ≥ {win_size}, got {list(pred.shape[2:])}"
        )
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d

    def mean(t: torch.Tensor) -> torch.Tensor:
        return pool(t, kernel_size=win_size, stride=1)

    n = win_size**dims
    mu_x, mu_y = mean(pred), mean(target)
    var_x = (mean(pred * pred) - mu_x * mu_x) * n / (n - 1)
    var_y = (mean(target * target) - mu_y * mu_y) * n / (n - 1)
    cov = (mean(pred * target) - mu_x * mu_y) * n / (n - 1)
    shape = (-1, *[1] * (dims + 1))
    c1 = (k1 * peak).square().reshape(shape)
    c2 = (k2 * peak).square().reshape(shape)
    s = (
        (2 * mu_x * mu_y + c1)
        * (2 * cov + c2)
        / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    )
    return s.flatten(1).mean(dim=1)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: Range = 1.0,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity of each item -> ``[N]``, in [-1, 1] (1 when equal).

    scikit-image's ``structural_similarity`` defaults: a uniform ``win_size``-wide window over every spatial
    axis (7×7 for images, 7×7×7 for volumes), K1 0.01, K2 0.03, sample covariances; channels are compared
    separately and averaged (``channel_axis``). Every spatial side must be at least ``win_size``."""
    pred, target = _pair(pred, target)
    n, c = pred.shape[:2]
    peak = _per_item(data_range, n, pred).repeat_interleave(c)
    flat = (t.reshape(n * c, 1, *t.shape[2:]) for t in (pred, target))
    return _ssim(*flat, peak, win_size, k1, k2).reshape(n, c).mean(dim=1)


def _target_max(target: torch.Tensor, data_range: Range | None) -> Range:
    return target.flatten(1).amax(dim=1) if data_range is None else data_range


def fastmri_psnr(pred: torch.Tensor, target: torch.Tensor, data_range: Range | None = None) -> torch.Tensor:
    """fastMRI's PSNR of each item (a volume) -> ``[N]`` dB: :func:`psnr` with ``data_range`` defaulting to the
    target's maximum over the item (``gt.max()``; the maximum, not max − min)."""
    return psnr(pred, target, data_range=_target_max(target, data_range))


def fastmri_ssim(
    pred: torch.Tensor, target: torch.Tensor, data_range: Range | None = None, win_size: int = 7
) -> torch.Tensor:
    """fastMRI's SSIM of each item -> ``[N]``: 2D SSIM (skimage defaults, 7×7 window) of every ``H × W`` slice
    of the item (all channels, and all depths of a volume), averaged over the slices, with one ``data_range``
    per item defaulting to the target's maximum over the whole item. To score a stack of 2D images as one
    volume, pass it as ``[1, 1, S, H, W]``."""
    pred, target = _pair(pred, target)
    n = pred.shape[0]
    peak = _per_item(_target_max(target, data_range), n, pred)
    slices = pred[0, ..., 0, 0].numel()
    flat = (t.reshape(n * slices, 1, *t.shape[-2:]) for t in (pred, target))
    return _ssim(*flat, peak.repeat_interleave(slices), win_size, 0.01, 0.03).reshape(n, slices).mean(dim=1)


def lpips(
    pred: torch.Tensor, target: torch.Tensor, net: str = "vgg", random_backbone_seed: int | None = None
) -> torch.Tensor:
    """LPIPS v0.1 distance of each image ``[N, 1|3, H, W]`` in [0, 1] at its native size -> ``[N]``, ≥ 0 (0 when
    equal), in float32. Grayscale is repeated to three channels. The backbone (``"vgg"`` by default, like the
    perceptual likelihood, or ``"alex"``) comes from the torch hub cache and is never downloaded; a missing
    file raises :class:`~brgm.core.errors.WeightsNotFoundError`. ``random_backbone_seed`` uses a seeded random
    backbone instead (tests only: not perceptually calibrated)."""
    if pred.shape != target.shape:
        raise ShapeError(f"pred {list(pred.shape)} and target {list(target.shape)} must have the same shape")
    with torch.no_grad():
        return lpips_distance(lpips_network(net, random_backbone_seed), pred, target)
