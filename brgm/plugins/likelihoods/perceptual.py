"""Perceptual (LPIPS) data term, resized and reduced the way each BRGM reference does."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator
from brgm.core.lpips import NETS, feature_length, lpips_distance, lpips_network
from brgm.core.operators import ForwardModel
from brgm.core.params import interval, one_of
from brgm.core.terms import Likelihood

#: the side both BRGM references compare LPIPS at
LPIPS_SIZE = 256


def lpips_size(height: int, width: int, mode: str) -> tuple[int, int]:
    """The size a ``height × width`` image is compared at, as a BRGM reference resizes it before LPIPS.

    ``"tf"``: box-downsampled by the integer factor ``max(H, W) // 256`` when ``max(H, W) > 256`` (1024² ->
    256²; rows and columns past a whole box are dropped), else unchanged (16² stays 16²). ``"pt"``: 256×256
    always, by area interpolation (box averaging when larger, nearest-neighbour repetition when smaller).
    """
    if mode == "pt":
        return LPIPS_SIZE, LPIPS_SIZE
    factor = max(1, max(height, width) // LPIPS_SIZE)
    return height // factor, width // factor


def resize_for_lpips(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``x [N, C, H, W]`` resized to :func:`lpips_size` (``mode`` "tf" or "pt")."""
    if mode == "pt":
        return F.interpolate(x, size=(LPIPS_SIZE, LPIPS_SIZE), mode="area")
    factor = max(1, max(x.shape[-2:]) // LPIPS_SIZE)
    return F.avg_pool2d(x, kernel_size=factor) if factor > 1 else x


@attrs.define(kw_only=True, eq=False)
class PerceptualLikelihood(Likelihood):
    """Perceptual LPIPS distance between f(G(w)) and y (VGG by default), as in BRGM-TF or BRGM-PyTorch.

    Both images (intensities in [0, 1]; grayscale repeated to three channels) are resized by ``resize``
    (see :func:`lpips_size`: ``"tf"`` keeps sizes up to 256 and box-downsamples larger ones, ``"pt"``
    area-resizes to 256×256) and compared by LPIPS v0.1 (inputs mapped to [-1, 1]). ``reduction="lpips"``
    (BRGM-TF) returns the LPIPS distance itself, about 0–1. ``reduction="mean"`` (BRGM-PyTorch) returns
    LPIPS divided by the number of trunk activations compared (Σ_l C_l·H_l·W_l; 7,995,392 for VGG16 at
    256²), which is the mean of the squared difference of NVIDIA's flattened LPIPS feature vector that BRGM-PT
    reduces with ``.mean()``; that the TorchScript vector has exactly this length is an unverified assumption.

    For complex measurements (k-space) it compares the forward model's naive inverses (their magnitudes if
    complex). Volumes are rejected. Backbone weights come from the torch hub cache and are never downloaded
    (:mod:`brgm.core.lpips`); ``random_backbone_seed`` builds a seeded random backbone on
    purpose, for tests only.
    """

    name: ClassVar[str] = "perceptual"
    net: str = attrs.field(default="vgg", validator=one_of(NETS))
    resize: str = attrs.field(default="tf", validator=one_of(("tf", "pt")))
    reduction: str = attrs.field(default="lpips", validator=one_of(("lpips", "mean")))
    random_backbone_seed: int | None = attrs.field(
        default=None, converter=attrs.converters.optional(int), validator=interval(0, 2**63 - 1)
    )
    _network: nn.Module | None = attrs.field(default=None, init=False, repr=False)
    _lengths: dict[tuple[int, int], int] = attrs.field(factory=dict, init=False, repr=False)

    def bind(self, generator: Generator, forward_model: ForwardModel) -> None:
        if generator.spatial_dims != 2:
            raise ShapeError(
                f"likelihood perceptual (LPIPS) compares 2D images, but the generator makes "
                f"{generator.spatial_dims}D volumes of shape {list(generator.img_shape)}; use like=pixel or kspace"
            )
        image = (1, generator.img_channels, *generator.img_shape)
        shape = image if forward_model.complex_output else forward_model.output_shape(image)
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise ShapeError(
                f"likelihood perceptual (LPIPS) compares grayscale or RGB images [N, 1 or 3, H, W], but "
                f"fwd={forward_model.name} gives measurements of shape {list(shape)}"
            )
        self._network = lpips_network(self.net, self.random_backbone_seed)
        self._feature_length(self._network, *lpips_size(shape[2], shape[3], self.resize))

    def energy(self, pred: torch.Tensor, target: torch.Tensor, forward_model: ForwardModel) -> torch.Tensor:
        """Measurements ``[N, 1|3, H, W]`` in [0, 1] (or k-space) -> ``[N]``, non-negative."""
        if self._network is None:
            raise ConfigError("likelihood perceptual is not bound: call bind(generator, forward_model) first")
        if pred.is_complex():
            pred, target = (forward_model.naive_inverse(t) for t in (pred, target))
            pred, target = (t.abs() if t.is_complex() else t for t in (pred, target))
        a, b = (resize_for_lpips(t, self.resize) for t in (pred, target))
        distance = lpips_distance(self._network, a, b)
        if self.reduction == "mean":
            distance = distance / self._feature_length(self._network, *a.shape[-2:])
        return distance

    def _feature_length(self, network: nn.Module, height: int, width: int) -> int:
        """Σ_l C_l·H_l·W_l at ``height × width``, cached (and a :class:`ShapeError` for too small images)."""
        key = (height, width)
        if key not in self._lengths:
            self._lengths[key] = feature_length(network, height, width)
        return self._lengths[key]
