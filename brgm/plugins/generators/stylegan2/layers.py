"""StyleGAN2 layers with NVIDIA's parameter names, equalised learning rate and initialisation.

Weights are stored unscaled (``randn`` at initialisation) and multiplied by their run-time gain on every call,
as in NVIDIA's ``training/networks.py``; a layer works on 2D or 3D feature maps depending on the rank of its
weights (``spatial_dims`` given at construction).
"""

from __future__ import annotations

import torch
from torch import nn

from brgm.core.generator import NoiseMode
from brgm.plugins.generators.stylegan2.bias_act import bias_act_
from brgm.plugins.generators.stylegan2.config import ACTIVATION_GAINS
from brgm.plugins.generators.stylegan2.modulated_conv import modulated_conv
from brgm.plugins.generators.stylegan2.resample import CONV, upsample


class FullyConnectedLayer(nn.Module):
    """``y = act(x @ (weight · lr_multiplier / sqrt(in))ᵀ + bias · lr_multiplier)``: ``[N, in] -> [N, out]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.bias_init = bias_init
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.weight_gain = lr_multiplier / in_features**0.5
        self.bias_gain = lr_multiplier

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator) / self.lr_multiplier)
        self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act_(x.matmul(w.t()), b, self.activation, gain=ACTIVATION_GAINS[self.activation])


class SynthesisLayer(nn.Module):
    """Modulated 3×3(×3) convolution (optionally up-sampling ×2), noise, bias, activation and clamp.

    ``noise_const`` (``[*shape]``) and ``noise_strength`` (``[]``) exist only with ``use_noise``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        shape: tuple[int, ...],
        *,
        resample_filter: torch.Tensor,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
        up_gain: float = 4.0,
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.act_gain = ACTIVATION_GAINS[activation]
        self.conv_clamp = conv_clamp
        self.up_gain = up_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *[3] * len(self.shape)))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.empty([]))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.register_buffer("resample_filter", resample_filter.clone())
        if use_noise:
            self.register_buffer("noise_const", torch.empty(self.shape))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))
        self.bias.zero_()
        if self.use_noise:
            self.noise_const.copy_(torch.randn(self.shape, generator=generator))
            self.noise_strength.zero_()

    def noise_input(
        self, mode: NoiseMode, batch: int, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The unscaled noise this layer adds: ``noise_const [*shape]``, fresh ``[N, 1, *shape]``, or None.

        Fresh noise is drawn on ``generator``'s device (so a CPU generator gives the same noise everywhere) and
        moved to this layer's device.
        """
        if not self.use_noise or mode == "none":
            return None
        if mode == "const":
            return self.noise_const
        device = generator.device if generator is not None else self.bias.device
        noise = torch.randn(
            (batch, 1, *self.shape), generator=generator, device=device, dtype=self.bias.dtype
        )
        return noise.to(self.bias.device)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise: torch.Tensor | None = None,
        *,
        fused: bool = False,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """``x [N, in, *shape/up]``, ``w [N, w_dim]`` -> ``[N, out, *shape]``."""
        styles = self.affine(w)
        x = modulated_conv(
            x,
            self.weight,
            styles,
            up=self.up,
            resample_filter=self.resample_filter,
            up_gain=self.up_gain,
            fused=fused,
        )
        if noise is not None:
            x = x.add_(noise * self.noise_strength)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act_(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1(×1) convolution to image channels, without demodulation: ``[N, C, *s] -> [N, img_ch, *s]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        spatial_dims: int,
        *,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *[1] * spatial_dims))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.weight_gain = 1 / in_channels**0.5

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))
        self.bias.zero_()

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act_(x, self.bias, clamp=self.conv_clamp)


class SkipLayer(nn.Module):
    """The residual branch of a 'resnet' block: 1×1(×1) convolution, then ×2 FIR up-sampling (no bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int,
        *,
        resample_filter: torch.Tensor,
        conv_clamp: float | None = None,
        up_gain: float = 4.0,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.up_gain = up_gain
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *[1] * spatial_dims))
        self.register_buffer("resample_filter", resample_filter.clone())
        self.weight_gain = 1 / in_channels**0.5

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        self.weight.copy_(torch.randn(self.weight.shape, generator=generator))

    def forward(self, x: torch.Tensor, *, gain: float = 1.0) -> torch.Tensor:
        x = CONV[x.ndim - 2](x, self.weight * self.weight_gain)
        x = upsample(x, self.resample_filter, self.up_gain)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act_(x, None, gain=gain, clamp=clamp)
