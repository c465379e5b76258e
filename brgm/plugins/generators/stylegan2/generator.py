"""StyleGAN2 generator in plain PyTorch with NVIDIA's constructor arguments and state-dict layout, 2D or 3D."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from brgm.core.errors import ConfigError
from brgm.core.generator import Generator, NoiseMode
from brgm.plugins.generators.stylegan2.config import MappingConfig, SynthesisConfig, build, check_int
from brgm.plugins.generators.stylegan2.mapping import MappingNetwork
from brgm.plugins.generators.stylegan2.synthesis import SynthesisNetwork


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def resolve_shape(
    img_resolution: int | None, img_shape: Sequence[int] | None, base_shape: Sequence[int] | None
) -> tuple[tuple[int, ...], int]:
    """``(base_shape, top block resolution)`` from any consistent subset of the three size arguments.

    The output is ``base_shape · resolution / 4`` with ``resolution`` a power of two >= 4. Without ``base_shape``,
    2D NVIDIA networks use (4, 4); from ``img_shape`` alone, the base is the smallest shape with every side >= 4
    that ``img_shape`` is a power-of-two multiple of (e.g. (80, 96, 112) -> (5, 6, 7), resolution 64).
    """
    if img_resolution is not None and not (
        isinstance(img_resolution, int) and img_resolution >= 4 and _is_pow2(img_resolution)
    ):
        raise ConfigError(f"img_resolution must be a power of two >= 4, got {img_resolution!r}")
    base = tuple(check_int("base_shape", b) for b in base_shape) if base_shape is not None else None
    if img_shape is None:
        if img_resolution is None:
            raise ConfigError("give img_resolution (2D, square) or img_shape")
        return base or (4, 4), img_resolution
    shape = tuple(check_int("img_shape", s) for s in img_shape)
    if len(shape) not in (2, 3) or (base is not None and len(base) != len(shape)):
        raise ConfigError(f"img_shape must have 2 or 3 sides (and as many as base_shape), got {list(shape)}")
    if base is None:
        scale = 1
        while all(s % (2 * scale) == 0 for s in shape) and min(shape) // (2 * scale) >= 4:
            scale *= 2
        base = tuple(s // scale for s in shape)
    scales = {s / b for s, b in zip(shape, base, strict=True)}
    scale = scales.pop() if len(scales) == 1 else 0
    if not (scale == int(scale) and _is_pow2(int(scale))):
        raise ConfigError(
            f"img_shape {list(shape)} is not a power-of-two multiple of base_shape {list(base)}"
        )
    resolution = 4 * int(scale)
    if img_resolution is not None and img_resolution != resolution:
        raise ConfigError(
            f"img_resolution {img_resolution} disagrees with img_shape {list(shape)} / base {list(base)}"
        )
    return base, resolution


def _clear_w_stats(module: StyleGAN2Generator, _incompatible: Any) -> None:
    module._w_stats.clear()


class StyleGAN2Generator(Generator):
    """StyleGAN2 in plain PyTorch: NVIDIA stylegan2-ada keys and kwargs, 2D images or 3D volumes.

    ``StyleGAN2Generator(**G_ema._init_kwargs)`` rebuilds an NVIDIA network whose ``state_dict()`` it then loads
    with ``strict=True``: submodules ``synthesis.b{res}.{const, conv0, conv1, torgb, skip}`` and
    ``mapping.{fc{i}, w_avg}``, each layer with NVIDIA's parameter names and shapes. 3D networks add a third
    spatial side everywhere (weights ``[O, I, 3, 3, 3]``, ``noise_const [D, H, W]``, ``resample_filter
    [fw, fw, fw]``, ``const [C, *base_shape]``) and are built from ``img_shape`` (and ``base_shape``).
    3D-StyleGAN's TF networks (stylegan.md §3) are ``architecture='orig'``, ``resample_filter=[1, 3, 3, 3, 1]``,
    ``upsample_gain=4``, constant ``fmap`` channels (``channel_max=fmap``, ``channel_base=fmap·img_resolution``);
    their ``Conv0_up`` weights convert with a flip of the first two spatial axes only.

    Run-time settings (attributes, also constructor keywords): ``fused_modconv`` (False, the default: styles scale
    the activations around one convolution shared by the batch, so back-propagating to ``ws`` needs no gradient
    of a per-sample weight, 1.5-2.7× faster per step in benchmarks/bench_synthesis.py on CPU; True: NVIDIA's inference path, one grouped
    convolution with per-sample weights, which stores fewer activations), ``checkpoint`` (recompute each block's
    activations in the backward pass instead of storing them) and ``autocast_dtype`` (``torch.bfloat16`` /
    ``torch.float16`` autocast of the synthesis blocks). Both paths agree with NVIDIA's outputs to float32
    rounding. The network computes in its parameters' dtype (float32 by default; ``.double()`` works).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int | None = None,
        img_channels: int = 3,
        mapping_kwargs: dict[str, Any] | None = None,
        synthesis_kwargs: dict[str, Any] | None = None,
        *,
        img_shape: Sequence[int] | None = None,
        base_shape: Sequence[int] | None = None,
        fused_modconv: bool = False,
        checkpoint: bool = False,
        autocast_dtype: torch.dtype | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if c_dim != 0:
            raise ConfigError(f"conditional generators are not supported: c_dim must be 0, got {c_dim!r}")
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ConfigError(
                f"autocast_dtype must be None, torch.bfloat16 or torch.float16, got {autocast_dtype}"
            )
        self.z_dim = check_int("z_dim", z_dim)
        self.c_dim = 0
        self.w_dim = check_int("w_dim", w_dim)
        self.img_channels = check_int("img_channels", img_channels)
        mapping_config = build(MappingConfig, mapping_kwargs, "mapping_kwargs")
        synthesis_config = build(SynthesisConfig, synthesis_kwargs, "synthesis_kwargs")
        base, resolution = resolve_shape(img_resolution, img_shape, base_shape)
        self.img_shape = tuple(b * resolution // 4 for b in base)
        # Registered under NVIDIA's names (hence the state-dict keys); the attributes stay the contract's methods.
        self._modules["synthesis"] = SynthesisNetwork(
            self.w_dim, resolution, self.img_channels, base, synthesis_config
        )
        self.num_ws = self.synthesis_network.num_ws
        self._modules["mapping"] = MappingNetwork(self.z_dim, self.w_dim, self.num_ws, mapping_config)
        self.init_kwargs: dict[str, Any] = {
            "z_dim": self.z_dim,
            "c_dim": 0,
            "w_dim": self.w_dim,
            "img_resolution": resolution,
            "img_channels": self.img_channels,
            "mapping_kwargs": attrs.asdict(mapping_config),
            "synthesis_kwargs": attrs.asdict(synthesis_config),
            **({"base_shape": list(base)} if base != (4, 4) else {}),
        }
        self.fused_modconv = fused_modconv
        self.checkpoint = checkpoint
        self.autocast_dtype = autocast_dtype
        self._w_stats: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.register_load_state_dict_post_hook(_clear_w_stats)
        self.reset_parameters(seed)

    @property
    def mapping_network(self) -> MappingNetwork:
        """The ``mapping`` submodule (``G.mapping`` is the contract's method)."""
        return self._modules["mapping"]  # type: ignore[return-value]

    @property
    def synthesis_network(self) -> SynthesisNetwork:
        """The ``synthesis`` submodule (``G.synthesis`` is the contract's method)."""
        return self._modules["synthesis"]  # type: ignore[return-value]

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """NVIDIA's initialisation, drawn from ``torch.Generator().manual_seed(seed)``: weights ``randn``
        (divided by the mapping's lr multiplier), biases 0, style biases 1, noise strengths 0, ``w_avg`` 0."""
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters(generator)
        self._w_stats.clear()

    def mapping(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        return self.mapping_network(z, truncation_psi, truncation_cutoff)

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "const",
        *,
        noises: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.synthesis_network(
            ws,
            noise_mode,
            noises=noises,
            generator=generator,
            fused=self.fused_modconv,
            checkpoint=self.checkpoint,
            autocast_dtype=self.autocast_dtype,
        )

    def noise_inputs(self, n: int) -> list[torch.Tensor]:
        return [
            layer.noise_const.expand(n, 1, *layer.shape).clone()
            for layer in self.synthesis_network.noise_layers()
        ]

    @torch.no_grad()
    def w_stats(self, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [w_dim], std [])`` of ``w`` over ``n`` samples, as BRGM and NVIDIA's projector compute them.

        ``z = RandomState(seed).randn(n, z_dim)`` (float64), mapped without truncation; with ``w`` the first
        row of ws (float32 numpy), ``std = sqrt(sum((w − mean)²) / n)``, the RMS distance of the samples from
        their mean. Cached per ``(n, seed)`` until a state dict is loaded or the parameters are reset.
        """
        key = (n, seed)
        if key not in self._w_stats:
            z = torch.from_numpy(np.random.RandomState(seed).randn(n, self.z_dim)).to(self.device)
            w = self.mapping_network(z)[:, :1, :].float().cpu().numpy()
            mean = np.mean(w, axis=0, keepdims=True)
            std = (np.sum((w - mean) ** 2) / n) ** 0.5
            self._w_stats[key] = torch.from_numpy(mean[0, 0]), torch.tensor(std)
        return self._w_stats[key]
