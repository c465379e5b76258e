"""Facts of NVIDIA's StyleGAN2 state-dict layout that the TensorFlow and rosinality converters share.

Keys are ``synthesis.b{r}.{const, resample_filter, conv0.*, conv1.*, torgb.*, skip.*}`` per block resolution
``r = 4, 8, ..., img_resolution`` and ``mapping.{w_avg, embed.*, fc{i}.*}``; ``b4`` has no ``conv0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from brgm.core.errors import CheckpointError

DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)


def resample_filter(taps: Sequence[float] = DEFAULT_FILTER) -> torch.Tensor:
    """The ``[k, k]`` float32 FIR filter NVIDIA stores as ``resample_filter``: ``outer(taps, taps)``, sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def block_resolutions(img_resolution: int) -> list[int]:
    """``[4, 8, ..., img_resolution]`` (a power of two >= 4)."""
    log2 = int(math.log2(img_resolution)) if img_resolution >= 4 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise CheckpointError(f"image resolution must be a power of two >= 4, got {img_resolution}")
    return [2**k for k in range(2, log2 + 1)]


def filter_keys(img_resolution: int, architecture: str = "skip") -> list[str]:
    """The ``resample_filter`` buffers: one per block, per synthesis layer and per ``resnet`` skip layer."""
    keys = []
    for r in block_resolutions(img_resolution):
        keys.append(f"synthesis.b{r}.resample_filter")
        keys += [
            f"synthesis.b{r}.{layer}.resample_filter"
            for layer in ("conv0", "conv1")
            if r > 4 or layer == "conv1"
        ]
        if architecture == "resnet" and r > 4:
            keys.append(f"synthesis.b{r}.skip.resample_filter")
    return keys


def noise_index(resolution: int, layer: str) -> int:
    """Index of the TF / rosinality noise input ``noise{i}`` of ``b{resolution}.{layer}`` (conv0 or conv1)."""
    k = int(math.log2(resolution))
    return 2 * k - 5 if layer == "conv0" else 2 * k - 4


def channel_config(channels: Mapping[int, int]) -> tuple[int, int]:
    """``(channel_base, channel_max)`` that give ``channels[r] == min(channel_base // r, channel_max)`` for
    every block resolution ``r`` (NVIDIA's rule); a CheckpointError when no pair does."""
    channel_max = max(channels.values())
    channel_base = max(
        c * r for r, c in channels.items()
    )  # the smallest with channel_base // r >= c everywhere
    derived = {r: min(channel_base // r, channel_max) for r in channels}
    if derived != dict(channels):
        raise CheckpointError(
            f"feature channels per resolution {dict(sorted(channels.items()))} do not follow "
            "min(channel_base // r, channel_max)"
        )
    return channel_base, channel_max
