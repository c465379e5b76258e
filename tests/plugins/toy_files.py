"""A plugin the file-plugin tests register: a toy image format (``.toy``: rows of numbers) and a toy checkpoint
reader (``TOYGEN`` and the seed of a small random StyleGAN2), neither known to brgm itself."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np

from brgm import hookimpl
from brgm.core.checkpoints import Checkpoint, CheckpointReader
from brgm.core.errors import ImageFileError
from brgm.core.io.formats import FileFormat
from brgm.core.io.formats.meta import AS_STORED, Meta
from brgm.plugins.generators.sources import RandomStyleGAN2

__version__ = "0.0.7"

MAGIC = b"TOYGEN "


@attrs.frozen(kw_only=True)
class ToyFormat(FileFormat):
    """A gray image as text: one row of intensities per line."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        try:
            rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
        except ValueError as err:
            raise ImageFileError(f"{path}: not a toy image ({err})") from None
        meta = Meta(
            path=path,
            format=self.name,
            original_shape=rows.shape,
            dtype="float32",
            spatial_shape=rows.shape,
            intensity=AS_STORED,
        )
        return rows[None], meta

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        np.savetxt(path, x[0], fmt="%.6f")


@attrs.frozen(kw_only=True)
class ToyReader(CheckpointReader):
    """``TOYGEN <seed>``: the 8² random StyleGAN2 of that seed."""

    def recognises(self, path: Path, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def read(self, path: Path) -> Checkpoint:
        source = toy_source(int(path.read_bytes()[len(MAGIC) :]))
        return Checkpoint(
            source=str(path),
            format=self.name,
            architecture="stylegan2",
            init_kwargs=source.init_kwargs(),
            state_dict=source.load().state_dict(),
        )


def toy_source(seed: int) -> RandomStyleGAN2:
    return RandomStyleGAN2(resolution=8, channels=1, seed=seed)


TOY = ToyFormat(name="toy", label="toy text (.toy)", description="toy text images (.toy)", suffixes=(".toy",))
TOYGEN = ToyReader(name="toygen", description="toy generator files (TOYGEN and a seed)")


@hookimpl
def register_formats() -> list[FileFormat]:
    return [TOY]


@hookimpl
def register_checkpoint_readers() -> list[CheckpointReader]:
    return [TOYGEN]
