"""Differentiable augmentation of the discriminator's inputs with an adaptive probability (StyleGAN2-ADA).

Every transformation is applied to each image independently with probability ``p`` and is differentiable with
respect to the image, so the generator is trained through it. When ``p`` stays below about 0.8 the augmentations
do not leak into the generated distribution (Karras et al. 2020). The geometric part is one affine resampling
(bilinear, reflected borders) rather than ADA's wavelet-filtered one: good enough at low resolution.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from brgm.core import params


@attrs.define(kw_only=True, frozen=True)
class AugmentConfig:
    """Strengths of the augmentations; each is applied with probability ``p × its multiplier``."""

    xflip: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    translate: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    scale: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    rotate: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    brightness: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    contrast: float = attrs.field(default=1.0, validator=params.interval(0, 1))
    # fraction of the image size
    translate_max: float = attrs.field(default=0.125, validator=params.interval(0, 0.5))
    # log2 of the scale factor
    scale_std: float = attrs.field(default=0.2, validator=params.interval(0, None))
    rotate_max_deg: float = attrs.field(default=15.0, validator=params.interval(0, 180))
    # additive, in the image range [-1, 1]
    brightness_std: float = attrs.field(default=0.2, validator=params.interval(0, None))
    # log2 of the contrast factor
    contrast_std: float = attrs.field(default=0.5, validator=params.interval(0, None))


class AugmentPipe(nn.Module):
    """``x [N, C, H, W]`` in [-1, 1] -> augmented ``x`` of the same shape.

    The probability ``p`` in [0, 1] is kept twice: as the buffer ``p`` (saved in checkpoints) and as the host
    float ``p_value`` that ``forward`` reads, so that augmenting never waits for the device. Change it with
    :meth:`set_p`; loading a state dict updates both.
    """

    p: torch.Tensor

    def __init__(self, config: AugmentConfig | None = None, p: float = 0.0) -> None:
        super().__init__()
        self.config = config or AugmentConfig()
        self.register_buffer("p", torch.tensor(float(p)))
        self.p_value = float(p)

    def set_p(self, value: float) -> None:
        """Set ``p`` to ``value`` clamped to [0, 1] (rounded to float32, as the buffer holds it)."""
        self.p_value = float(torch.tensor(min(max(float(value), 0.0), 1.0), dtype=torch.float32))
        self.p.fill_(self.p_value)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.p_value = float(self.p)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.p_value <= 0:
            return x
        n, device, dtype, cfg = x.shape[0], x.device, x.dtype, self.config

        def uniform(*shape: int) -> torch.Tensor:  # [N, *shape] in [0, 1)
            return torch.rand((n, *shape), generator=generator, device=device)

        def normal() -> torch.Tensor:  # [N]
            return torch.randn(n, generator=generator, device=device)

        def gate(strength: float) -> torch.Tensor:  # [N] booleans: which images are transformed
            return uniform() < self.p_value * strength

        # Geometric: one affine map, in normalised [-1, 1] coordinates, from output to input positions.
        theta = torch.eye(3, device=device).repeat(n, 1, 1)
        theta[:, 0, 0] = torch.where(gate(cfg.xflip), -1.0, 1.0)
        size = torch.tensor([x.shape[3], x.shape[2]], device=device)
        shift = torch.round((uniform(2) * 2 - 1) * cfg.translate_max * size) / size * 2  # whole pixels
        theta[:, :2, 2] = torch.where(gate(cfg.translate)[:, None], shift, 0.0)
        scale = torch.where(gate(cfg.scale), torch.exp2(normal() * cfg.scale_std), 1.0)
        angle = (uniform() * 2 - 1) * math.radians(cfg.rotate_max_deg)
        angle = torch.where(gate(cfg.rotate), angle, 0.0)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta[:, :2, :2] = theta[:, :2, :2] @ torch.stack([cos, -sin, sin, cos], -1).view(n, 2, 2)
        x = sample_bilinear_reflect(x, F.affine_grid(theta[:, :2], list(x.shape), align_corners=False))

        # Intensity: contrast about 0 (mid-grey), then brightness.
        contrast = torch.where(gate(cfg.contrast), torch.exp2(normal() * cfg.contrast_std), 1.0)
        brightness = torch.where(gate(cfg.brightness), normal() * cfg.brightness_std, 0.0)
        return x * contrast.to(dtype).view(n, 1, 1, 1) + brightness.to(dtype).view(n, 1, 1, 1)


def _reflect(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates reflected into ``[-0.5, size - 0.5]`` (about the outer pixel edges), then clamped to
    ``[0, size - 1]``: ``grid_sample``'s reflection padding with ``align_corners=False``."""
    distance = (coord + 0.5).abs()
    extra, flips = torch.fmod(distance, size), torch.floor(distance / size)
    return (torch.where(flips % 2 == 0, extra, size - extra) - 0.5).clamp(0, size - 1)


def sample_bilinear_reflect(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``F.grid_sample(x, grid, "bilinear", "reflection", align_corners=False)`` written with gathers.

    ``x [N, C, H, W]``, ``grid [N, Ho, Wo, 2]`` (x, y in [-1, 1]) -> ``[N, C, Ho, Wo]``. Linear in ``x`` and twice
    differentiable with respect to it on every device; CUDA has no double backward of ``grid_sample``, which the
    R1 penalty through the augmentation needs. Coordinates are computed in at least float32 whatever ``x``'s dtype.
    """
    n, c, h, w = x.shape
    grid = grid.to(torch.promote_types(grid.dtype, torch.float32))
    ix = _reflect(((grid[..., 0] + 1) * w - 1) / 2, w)
    iy = _reflect(((grid[..., 1] + 1) * h - 1) / 2, h)
    x0, y0 = ix.floor(), iy.floor()
    wx, wy = (ix - x0)[:, None].to(x.dtype), (iy - y0)[:, None].to(x.dtype)  # [N, 1, Ho, Wo]
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)  # a clamped neighbour has weight 0
    flat = x.reshape(n, c, h * w)

    def at(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        index = (row * w + col).reshape(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).reshape(n, c, *row.shape[1:])

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


@attrs.define(kw_only=True, eq=False)
class AdaptiveP:
    """ADA's controller: every ``interval`` steps, move ``p`` by ``batch × interval / (speed_kimg × 1000)``
    towards the value at which ``E[sign(D(real))]`` equals ``target``."""

    target: float = attrs.field(default=0.6, validator=params.interval(0, 1))
    interval: int = attrs.field(default=4, validator=params.interval(1, None))
    speed_kimg: float = attrs.field(default=500.0, validator=params.interval(0, None, open_lo=True))
    signs: float | torch.Tensor = 0.0  # running sum of sign(D(real)) in the current interval (on the device)
    count: int = 0  # logits summed into ``signs``

    def accumulate(self, real_logits: torch.Tensor) -> None:
        self.signs = self.signs + torch.sign(real_logits.detach()).sum()
        self.count += real_logits.numel()

    def update(self, pipe: AugmentPipe, step: int, batch: int) -> float | None:
        """Adjust ``pipe.p`` when ``step`` closes an interval; returns the overfitting heuristic ``r_t`` then."""
        if step % self.interval != 0 or self.count == 0:
            return None
        rt = float(self.signs) / self.count
        adjust = math.copysign(batch * self.interval / (self.speed_kimg * 1000), rt - self.target)
        pipe.set_p(pipe.p_value + adjust)
        self.signs, self.count = 0.0, 0
        return rt
