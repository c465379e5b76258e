"""The StyleGAN2 synthesis network ``ws -> image``: a learned constant grown ×2 per block, 2D or 3D.

Block ``b{res}`` (``res`` = 4, 8, ..., ``img_resolution``) works at spatial size ``base_shape · res / 4``; with
the default ``base_shape`` (4, 4) that is NVIDIA's ``res × res``. 3D-StyleGAN's 80×96×112 volumes are
``base_shape=(5, 6, 7)`` with blocks b4 (5×6×7) ... b64 (80×96×112).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.utils.checkpoint
from torch import nn

from brgm.core.errors import ConfigError, ShapeError
from brgm.core.generator import Generator, NoiseMode
from brgm.plugins.generators.stylegan2.config import SynthesisConfig
from brgm.plugins.generators.stylegan2.layers import SkipLayer, SynthesisLayer, ToRGBLayer
from brgm.plugins.generators.stylegan2.resample import setup_filter, upsample

SQRT_HALF = 0.5**0.5


class SynthesisBlock(nn.Module):
    """One resolution: the constant (first block) or an up-sampling conv, a conv, and the image output.

    ``forward(x [N, in, *shape/2] | None, img [N, img_ch, *shape/2] | None, ws [N, num_conv + num_torgb, w_dim])
    -> (x [N, out, *shape], img [N, img_ch, *shape] | None)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        shape: tuple[int, ...],
        img_channels: int,
        *,
        is_last: bool,
        config: SynthesisConfig,
        up_gain: float,
    ) -> None:
        super().__init__()
        spatial_dims = len(shape)
        self.up_gain = up_gain
        self.register_buffer("resample_filter", setup_filter(config.resample_filter, spatial_dims))
        if in_channels == 0:
            self.const = nn.Parameter(torch.empty(out_channels, *shape))
        layer_kwargs = dict(
            resample_filter=self.resample_filter,
            use_noise=config.use_noise,
            activation=config.activation,
            conv_clamp=config.conv_clamp,
            up_gain=up_gain,
        )
        if in_channels > 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, shape, up=2, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, shape, **layer_kwargs)
        if is_last or config.architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels, img_channels, w_dim, spatial_dims, conv_clamp=config.conv_clamp
            )
        if in_channels > 0 and config.architecture == "resnet":
            self.skip = SkipLayer(
                in_channels,
                out_channels,
                spatial_dims,
                resample_filter=self.resample_filter,
                conv_clamp=config.conv_clamp,
                up_gain=up_gain,
            )
        self.num_conv = len(self.convs)
        self.num_torgb = int(hasattr(self, "torgb"))

    @property
    def convs(self) -> list[SynthesisLayer]:
        """The modulated conv layers, in the order they consume ``ws``."""
        return [self.conv0, self.conv1] if hasattr(self, "conv0") else [self.conv1]

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        if hasattr(self, "const"):
            self.const.copy_(torch.randn(self.const.shape, generator=generator))

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noises: Sequence[torch.Tensor | None],
        *,
        fused: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = ws.unbind(dim=1)
        if x is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], *self.const.shape)
        if hasattr(self, "skip"):
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x, w[0], noises[0], fused=fused)
            x = y.add_(self.conv1(x, w[1], noises[1], fused=fused, gain=SQRT_HALF))
        else:
            for layer, w_layer, noise in zip(self.convs, w, noises, strict=False):
                x = layer(x, w_layer, noise, fused=fused)
        if img is not None:  # only 'skip' carries an image between blocks
            img = upsample(img, self.resample_filter, self.up_gain)
        if self.num_torgb:
            y = self.torgb(x, w[self.num_conv], fused=fused).to(ws.dtype)
            img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim] -> img [N, img_channels, *base_shape · img_resolution / 4]`` (blocks ``b{res}``)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        base_shape: tuple[int, ...],
        config: SynthesisConfig,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, img_resolution.bit_length())]
        up_gain = config.upsample_gain or float(2 ** len(base_shape))
        self.num_ws = 0
        for res in self.block_resolutions:
            if config.channels(res) < 1:
                raise ConfigError(
                    f"channel_base must be at least img_resolution={img_resolution} to give every block a channel, "
                    f"got {config.channel_base}"
                )
            block = SynthesisBlock(
                config.channels(res // 2) if res > 4 else 0,
                config.channels(res),
                w_dim,
                tuple(b * res // 4 for b in base_shape),
                img_channels,
                is_last=res == img_resolution,
                config=config,
                up_gain=up_gain,
            )
            self.add_module(f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += block.num_torgb

    def blocks(self) -> list[SynthesisBlock]:
        return [self._modules[f"b{res}"] for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers that add noise, in the order ``forward`` takes ``noises``."""
        return [layer for block in self.blocks() for layer in block.convs if layer.use_noise]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "const",
        *,
        noises: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        fused: bool = False,
        checkpoint: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Render ``ws`` (cast to the parameters' dtype). ``noise_mode``: the stored ``noise_const`` buffers,
        fresh Gaussian noise (from ``generator``), or none; ``noises`` (one ``[N, 1, *shape]`` map per layer of
        :meth:`noise_layers`) replaces them all. ``checkpoint`` recomputes each block's activations
        during the backward pass instead of storing them; ``autocast_dtype`` (``torch.bfloat16`` or
        ``torch.float16``) runs the blocks under autocast. Returns the image in the parameters' dtype."""
        if noise_mode not in Generator.noise_modes:
            raise ConfigError(
                f"noise_mode must be one of {', '.join(Generator.noise_modes)}, got {noise_mode!r}"
            )
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ShapeError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        dtype = self.b4.conv1.weight.dtype
        ws = ws.to(dtype)
        batch = ws.shape[0]
        given = self._check_noises(noises, batch) if noises is not None else None
        x = img = None
        w_idx = 0
        with torch.autocast(ws.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for block in self.blocks():
                block_noises = [
                    next(given)
                    if given is not None and layer.use_noise
                    else layer.noise_input(noise_mode, batch, generator)
                    for layer in block.convs
                ]
                block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
                if checkpoint and torch.is_grad_enabled():
                    x, img = torch.utils.checkpoint.checkpoint(
                        block,
                        x,
                        img,
                        block_ws,
                        block_noises,
                        fused=fused,
                        use_reentrant=False,
                        preserve_rng_state=False,
                    )
                else:
                    x, img = block(x, img, block_ws, block_noises, fused=fused)
                w_idx += block.num_conv
        return img.to(dtype)

    def _check_noises(self, noises: Sequence[torch.Tensor], batch: int) -> Iterator[torch.Tensor]:
        """An iterator over ``noises`` after checking them against :meth:`noise_layers`' shapes."""
        expected = [(batch, 1, *layer.shape) for layer in self.noise_layers()]
        shapes = [tuple(n.shape) for n in noises]
        if shapes != expected:
            raise ShapeError(f"noises must have shapes {expected}, got {shapes}")
        return iter(noises)
