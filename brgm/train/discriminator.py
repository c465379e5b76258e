"""StyleGAN2's residual discriminator (NVIDIA's 'resnet' architecture and parameter names), in plain PyTorch.

``D(img [N, C, R, R] in [-1, 1]) -> logits [N, 1]``. Blocks ``b{R} … b8`` halve the resolution with a 3×3
convolution after FIR low-pass filtering, beside a 1×1 residual branch; the epilogue ``b4`` appends the
minibatch standard deviation and ends with two fully connected layers. Weights use the equalised learning rate
of the generator's layers, whose FIR and bias/activation primitives are reused here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from brgm.core.errors import ShapeError
from brgm.plugins.generators.stylegan2.bias_act import bias_act_
from brgm.plugins.generators.stylegan2.config import ACTIVATION_GAINS
from brgm.plugins.generators.stylegan2.layers import FullyConnectedLayer
from brgm.plugins.generators.stylegan2.resample import setup_filter, upfirdn

SQRT_HALF = math.sqrt(0.5)


class Conv2dLayer(nn.Module):
    """``k×k`` convolution with equalised learning rate, optional ×2 FIR down-sampling, bias, activation, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        resample_filter: torch.Tensor,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.act_gain = ACTIVATION_GAINS[activation]
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("resample_filter", resample_filter.clone())

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))
        if self.bias is not None:
            self.bias.zero_()

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``[N, in, H, W] -> [N, out, H/down, W/down]``."""
        w = self.weight * self.weight_gain
        k = self.weight.shape[-1]
        if self.down == 1:
            x = F.conv2d(x, w, padding=k // 2)
        else:  # low-pass at full resolution, then a strided convolution (NVIDIA's conv2d_resample, down=2)
            fw = self.resample_filter.shape[0]
            pad = (k // 2 + (fw - self.down + 1) // 2, k // 2 + (fw - self.down) // 2)
            x = F.conv2d(upfirdn(x, self.resample_filter, padding=pad), w, stride=self.down)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act_(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block at resolution ``r``: ``[N, tmp, r, r] -> [N, out, r/2, r/2]`` (``fromrgb`` in the first)."""

    def __init__(
        self,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        *,
        first: bool,
        resample_filter: torch.Tensor,
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        conv = {"resample_filter": resample_filter, "conv_clamp": conv_clamp}
        if first:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", **conv)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", **conv)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, **conv)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "fromrgb"):
            x = self.fromrgb(x)
        y = self.skip(x, gain=SQRT_HALF)
        x = self.conv1(self.conv0(x), gain=SQRT_HALF)
        return y.add_(x)


def minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append one channel: the standard deviation over groups of ``group_size`` samples, averaged over features
    and pixels. ``[N, C, H, W] -> [N, C + 1, H, W]``; ``N`` must be a multiple of the group size used."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ShapeError(f"batch {n} is not a multiple of the minibatch-std group size {g}")
    y = x.reshape(g, n // g, c, h, w).float()  # sample i*(n/g) + j is member i of group j
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n/g]
    y = y.to(x.dtype).reshape(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """``[N, C, 4, 4] -> logits [N, 1]``: minibatch std, 3×3 conv, then fully connected ``fc`` and ``out``."""

    def __init__(
        self, channels: int, *, mbstd_group_size: int, resample_filter: torch.Tensor, conv_clamp: float | None
    ) -> None:
        super().__init__()
        self.mbstd_group_size = mbstd_group_size
        self.conv = Conv2dLayer(
            channels + 1,
            channels,
            3,
            activation="lrelu",
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(minibatch_std(x, self.mbstd_group_size))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """StyleGAN2 discriminator, 'resnet' architecture: ``img [N, img_channels, R, R]`` -> ``logits [N, 1]``.

    Channels at resolution ``r`` are ``min(channel_base // r, channel_max)``, as in the generator.
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        *,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        conv_clamp: float | None = None,
        resample_filter: tuple[float, ...] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ShapeError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        f = setup_filter(resample_filter, 2)

        def channels(res: int) -> int:
            return min(channel_base // res, channel_max)

        res = img_resolution
        while res > 4:
            block = DiscriminatorBlock(
                channels(res),
                channels(res // 2),
                img_channels,
                first=res == img_resolution,
                resample_filter=f,
                conv_clamp=conv_clamp,
            )
            self.add_module(f"b{res}", block)
            res //= 2
        self.b4 = DiscriminatorEpilogue(
            channels(4), mbstd_group_size=mbstd_group_size, resample_filter=f, conv_clamp=conv_clamp
        )

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """NVIDIA's initialisation: unit normal weights (scaled at run time), zero biases."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters(generator)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ShapeError(
                f"images must have shape [N, {', '.join(map(str, expected))}], got {list(img.shape)}"
            )
        x = img
        for block in self.children():
            x = block(x)
        return x
