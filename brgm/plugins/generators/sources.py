"""Generator sources: a checkpoint file, a seeded random StyleGAN2, and the StyleGAN2 networks BRGM published.

The presets name their published file (BRGM's TensorFlow StyleGAN2 pickles, research/brgm.md §5.1; all three
are StyleGAN2 config-e, converted on load) and look it up with :func:`brgm.core.io.weights.find_weights`:
``weights=PATH``, then ``$BRGM_HOME/weights/``. ``brgm weights fetch NAME`` downloads it.
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
from brgm.core.params import interval, one_of
from brgm.plugins.generators.checkpoints import READERS, load_checkpoint, network_class


def _path(_instance: Any, attribute: attrs.Attribute[Any], value: Path | None) -> None:
    if value is not None and str(value) in ("", "."):
        raise ConfigError(f"{attribute.name} must be the path of a checkpoint file, got {str(value)!r}")


def _power_of_two(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not (4 <= value <= 4096 and value & (value - 1) == 0):
        raise ConfigError(f"{attribute.name} must be a power of two in [4, 4096], got {value!r}")


@attrs.define(kw_only=True, eq=False)
class CheckpointFile(GeneratorSource):
    """A generator from a checkpoint: NVIDIA or TensorFlow StyleGAN2 pickle, rosinality .pt, brgm .safetensors."""

    name: ClassVar[str] = "file"
    path: Path = attrs.field(converter=Path, validator=_path)

    def load(self, readers: Sequence[CheckpointReader] = READERS) -> Generator:
        return load_checkpoint(self.path, readers)


@attrs.define(kw_only=True, eq=False)
class RandomStyleGAN2(GeneratorSource):
    """A StyleGAN2 with NVIDIA's random initialisation, seeded (small ones for tests and benchmarks)."""

    name: ClassVar[str] = "stylegan2"
    resolution: int = attrs.field(default=32, converter=int, validator=_power_of_two)
    channels: int = attrs.field(default=1, converter=int, validator=interval(1, 64))
    z_dim: int = attrs.field(default=64, converter=int, validator=interval(1, 4096))
    w_dim: int = attrs.field(default=64, converter=int, validator=interval(1, 4096))
    mapping_layers: int = attrs.field(default=2, converter=int, validator=interval(1, 16))
    channel_base: int = attrs.field(default=2048, converter=int, validator=interval(1, 1 << 20))
    channel_max: int = attrs.field(default=64, converter=int, validator=interval(1, 4096))
    architecture: str = attrs.field(default="skip", validator=one_of(("orig", "skip", "resnet")))
    conv_clamp: float | None = attrs.field(default=None, validator=interval(0, open_lo=True))
    seed: int = attrs.field(default=0, converter=int, validator=interval(0, 2**63 - 1))

    def init_kwargs(self) -> dict[str, Any]:
        """NVIDIA ``Generator`` keyword arguments of this configuration."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "img_resolution": self.resolution,
            "img_channels": self.channels,
            "mapping_kwargs": {"num_layers": self.mapping_layers},
            "synthesis_kwargs": {
                "channel_base": self.channel_base,
                "channel_max": self.channel_max,
                "architecture": self.architecture,
                "conv_clamp": self.conv_clamp,
            },
        }

    def load(self, readers: Sequence[CheckpointReader] = ()) -> Generator:
        G = network_class("stylegan2")(**self.init_kwargs(), seed=self.seed)
        return G.eval().requires_grad_(False)


@attrs.define(kw_only=True, eq=False)
class PublishedStyleGAN2(GeneratorSource):
    """A StyleGAN2 with published weights: ``weights=PATH``, else ``$BRGM_HOME/weights/FILE``."""

    weights_file: ClassVar[WeightsFile]
    resolution: ClassVar[int]
    channels: ClassVar[int]
    weights: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path), validator=_path
    )

    def load(self, readers: Sequence[CheckpointReader] = READERS) -> Generator:
        path = find_weights(self.weights_file, self.weights)
        G = load_checkpoint(path, readers)
        if (G.img_resolution, G.img_channels) != (self.resolution, self.channels):
            raise CheckpointError(
                f"{path}: a {G.img_resolution}² generator with {G.img_channels} channel(s), but {self.name!r} is "
                f"{self.resolution}² with {self.channels}; pass the {self.weights_file.filename} of {self.name}"
            )
        return G


def _brgm_weights(name: str, filename: str, dropbox_id: str, description: str) -> WeightsFile:
    # research/brgm.md §5.1: the BRGM Makefile's `downloadNets` URLs; no published sizes or checksums
    url = f"https://dl.dropboxusercontent.com/s/{dropbox_id}/{filename}"
    return WeightsFile(name=name, filename=filename, url=url, description=description)


@attrs.define(kw_only=True, eq=False)
class StyleGAN2FFHQ(PublishedStyleGAN2):
    """BRGM's FFHQ faces StyleGAN2 (1024², RGB, 18 ws; trained on 90% of FFHQ): ffhq.pkl."""

    name: ClassVar[str] = "stylegan2-ffhq"
    resolution: ClassVar[int] = 1024
    channels: ClassVar[int] = 3
    weights_file: ClassVar[WeightsFile] = _brgm_weights(
        name, "ffhq.pkl", "jlgybz6nfhmpv54", "BRGM StyleGAN2 config-e, FFHQ 1024² RGB (TensorFlow pickle)"
    )


@attrs.define(kw_only=True, eq=False)
class StyleGAN2XRay(PublishedStyleGAN2):
    """BRGM's chest X-ray StyleGAN2 (1024², grayscale, 18 ws; MIMIC-CXR frontal views): xray.pkl."""

    name: ClassVar[str] = "stylegan2-xray"
    resolution: ClassVar[int] = 1024
    channels: ClassVar[int] = 1
    weights_file: ClassVar[WeightsFile] = _brgm_weights(
        name,
        "xray.pkl",
        "gphxjioth6dn5kb",
        "BRGM StyleGAN2 config-e, chest X-ray 1024² gray (TensorFlow pickle)",
    )


@attrs.define(kw_only=True, eq=False)
class StyleGAN2Brains(PublishedStyleGAN2):
    """BRGM's brain MRI StyleGAN2 (256², grayscale, 14 ws; 7,329 T1 slices from 8 cohorts): brains.pkl."""

    name: ClassVar[str] = "stylegan2-brains"
    resolution: ClassVar[int] = 256
    channels: ClassVar[int] = 1
    weights_file: ClassVar[WeightsFile] = _brgm_weights(
        name,
        "brains.pkl",
        "p9vgdcn5q3wpcuo",
        "BRGM StyleGAN2 config-e, brain MRI 256² gray (TensorFlow pickle)",
    )
