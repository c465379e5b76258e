"""3D-StyleGAN generators: a seeded random 3D StyleGAN2 and the published 2 mm T1 brain network.

3D-StyleGAN (Hong et al. 2021; research/stylegan.md §3) is StyleGAN2 with 3×3×3 convolutions grown from a
constant of ``base_shape`` voxels, 5×6×7 for brains: blocks b4 … b64 give 80×96×112 volumes (2 mm), b4 … b128
give 160×192×224 (1 mm). Its filter count is constant over the blocks (``fmaps``: 16–128 in the published
configs), its latents are small (96 or 128) and its generator is 'orig' (one ToRGB at the end). Both sources
build :class:`~brgm.plugins.generators.stylegan2.StyleGAN2Generator`, which handles 2D and 3D alike.

Memory options of a reconstruction with either (``solver.checkpoint`` / ``solver.autocast``, applied during the
solve): ``checkpoint`` recomputes each synthesis block's activations in the backward pass instead of storing them;
``autocast`` runs the blocks under ``torch.autocast`` in ``bf16`` or ``fp16`` (3D-StyleGAN trained in fp16). The
last block holds most of the activations (7/8 of them with constant filters), so per-block checkpointing lowers a
step's peak by about a tenth; benchmarks/bench_memory3d.py measures both options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs

from brgm.core.checkpoints import CheckpointReader
from brgm.core.errors import CheckpointError, ConfigError
from brgm.core.generator import Generator, GeneratorSource
from brgm.core.io.weights import WeightsFile, find_weights
from brgm.core.params import interval, one_of, to_tuple
from brgm.plugins.generators.checkpoints import READERS, load_checkpoint, network_class
from brgm.plugins.generators.sources import _power_of_two
from brgm.plugins.generators.stylegan2.generator import resolve_shape

#: 3D-StyleGAN's brain volumes: base 5×6×7, top block b64 (80×96×112 at 2 mm), 96 filters and latents
BRAIN_BASE = (5, 6, 7)
DEFAULT_RESOLUTION = 64
DEFAULT_FMAPS = 96


def _optional_shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else to_tuple(int)(value)


def _three_sides(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[int, ...] | None) -> None:
    if value is not None and (len(value) != 3 or min(value) < 1):
        raise ConfigError(f"{attribute.name} must be three integers >= 1 (D, H, W), got {value!r}")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@attrs.define(kw_only=True, eq=False)
class RandomStyleGAN3D(GeneratorSource):
    """A 3D StyleGAN2 (3D-StyleGAN layout) with NVIDIA's random initialisation, seeded.

    The volume is ``base_shape · resolution / 4`` (``resolution`` a power of two >= 4, the top block's; default
    64, i.e. 80×96×112), or give ``img_shape`` directly. Channels are ``fmaps`` at every block (default 96), or
    NVIDIA's ``min(channel_base // res, channel_max)`` when both of those are given. Up-sampling follows the
    PyTorch 3D ports (FIR [1, 3, 3, 1]³ with DC gain 8), not the TF code's quirks.
    """

    name: ClassVar[str] = "stylegan3d"
    base_shape: tuple[int, ...] = attrs.field(
        default=BRAIN_BASE, converter=to_tuple(int), validator=_three_sides
    )
    resolution: int | None = attrs.field(
        default=None, converter=_optional_int, validator=attrs.validators.optional(_power_of_two)
    )
    img_shape: tuple[int, ...] | None = attrs.field(
        default=None, converter=_optional_shape, validator=_three_sides
    )
    channels: int = attrs.field(default=1, converter=int, validator=interval(1, 64))
    fmaps: int | None = attrs.field(default=None, converter=_optional_int, validator=interval(1, 4096))
    channel_base: int | None = attrs.field(
        default=None, converter=_optional_int, validator=interval(1, 1 << 24)
    )
    channel_max: int | None = attrs.field(default=None, converter=_optional_int, validator=interval(1, 4096))
    z_dim: int = attrs.field(default=96, converter=int, validator=interval(1, 4096))
    w_dim: int = attrs.field(default=96, converter=int, validator=interval(1, 4096))
    mapping_layers: int = attrs.field(default=8, converter=int, validator=interval(1, 16))
    architecture: str = attrs.field(default="orig", validator=one_of(("orig", "skip")))
    seed: int = attrs.field(default=0, converter=int, validator=interval(0, 2**63 - 1))

    def __attrs_post_init__(self) -> None:
        if (self.channel_base is None) != (self.channel_max is None):
            raise ConfigError("channel_base and channel_max go together: give both, or fmaps instead")
        if self.fmaps is not None and self.channel_base is not None:
            raise ConfigError(
                "give either fmaps (constant filters) or channel_base and channel_max, not both"
            )
        self.geometry()

    def geometry(self) -> tuple[tuple[int, ...], int]:
        """``(base_shape, top block resolution)``; a ConfigError when ``img_shape`` and the rest disagree."""
        resolution = self.resolution
        if resolution is None and self.img_shape is None:
            resolution = DEFAULT_RESOLUTION
        return resolve_shape(resolution, self.img_shape, self.base_shape)

    def init_kwargs(self) -> dict[str, Any]:
        """``StyleGAN2Generator`` keyword arguments of this configuration."""
        base, resolution = self.geometry()
        if self.channel_base is None:
            fmaps = self.fmaps or DEFAULT_FMAPS
            channel_base, channel_max = fmaps * resolution, fmaps
        else:
            channel_base, channel_max = self.channel_base, self.channel_max
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "img_resolution": resolution,
            "img_channels": self.channels,
            "base_shape": list(base),
            "mapping_kwargs": {"num_layers": self.mapping_layers},
            "synthesis_kwargs": {
                "channel_base": channel_base,
                "channel_max": channel_max,
                "architecture": self.architecture,
            },
        }

    def load(self, readers: Sequence[CheckpointReader] = ()) -> Generator:
        G = network_class("stylegan2")(**self.init_kwargs(), seed=self.seed)
        return G.eval().requires_grad_(False)


@attrs.define(kw_only=True, eq=False)
class StyleGAN3DBrain2mm(GeneratorSource):
    """3D-StyleGAN's 2 mm T1 brain network (80×96×112, 96 filters, 10 ws; ~12,000 volumes): 2mm_f96.pkl.

    The authors' TensorFlow pickle (research/stylegan.md §3.4), converted on load with the TF code's quirks.
    ``weights=PATH`` may also name its sibling ``2mm_f128.pkl`` (128 filters, same grid). The volume axes are
    those of the training NIfTI files read with nibabel (X, Y, Z as D, H, W): brgm's RAS+ order for volumes
    stored in RAS orientation (MNI space).
    """

    name: ClassVar[str] = "stylegan3d-brain-2mm"
    img_shape: ClassVar[tuple[int, ...]] = (80, 96, 112)
    # research/brgm.md §8.4: released as trained_networks/2mm_f96.pkl of github.com/sh4174/3DStyleGAN, which does
    # not hold it; no public URL, size or checksum is known
    weights_file: ClassVar[WeightsFile] = WeightsFile(
        name=name,
        filename="2mm_f96.pkl",
        description="3D-StyleGAN 2 mm T1 brain 80×96×112, 96 filters (TensorFlow pickle; from the authors)",
    )
    weights: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))

    def load(self, readers: Sequence[CheckpointReader] = READERS) -> Generator:
        path = find_weights(self.weights_file, self.weights)
        G = load_checkpoint(path, readers)
        if (G.img_shape, G.img_channels) != (self.img_shape, 1):
            shape = "×".join(map(str, G.img_shape))
            raise CheckpointError(
                f"{path}: a {shape} generator with {G.img_channels} channel(s), but {self.name!r} makes "
                f"80×96×112 volumes with 1; pass 3D-StyleGAN's 2mm_f96.pkl or 2mm_f128.pkl"
            )
        return G.eval().requires_grad_(False)
