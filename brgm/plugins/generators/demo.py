"""The bundled ``demo-brain64`` generator: a small 64×64 StyleGAN2 of skull-stripped axial T1 brain slices of one
subject (Colin27), trained with ``brgm train`` (6 minutes on one GPU). Its weights ship inside the package
(brgm/data/demo-brain64/, with MODEL_CARD.md), so it loads offline, without ``brgm weights fetch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import ClassVar

import attrs

from brgm.core.checkpoints import CheckpointReader
from brgm.core.errors import WeightsNotFoundError
from brgm.core.generator import Generator, GeneratorSource
from brgm.plugins.generators.checkpoints import READERS, load_checkpoint

#: the bundled assets, relative to the ``brgm`` package
DEMO_DIR = "data/demo-brain64"
WEIGHTS = "generator.safetensors"
#: split-conformal factors on the samplers' std, fitted on training slices with ``brgm calibrate``
CALIBRATION = "calibration.json"


@attrs.define(kw_only=True, eq=False)
class DemoBrain64(GeneratorSource):
    """Bundled 64×64 StyleGAN2 of axial T1 brain slices (one subject, Colin27), trained by brgm; works offline."""

    name: ClassVar[str] = "demo-brain64"

    def load(self, readers: Sequence[CheckpointReader] = READERS) -> Generator:
        weights = resources.files("brgm").joinpath(DEMO_DIR, WEIGHTS)
        if not weights.is_file():
            raise WeightsNotFoundError(
                f"the bundled demo generator {DEMO_DIR}/{WEIGHTS} is missing from the brgm package "
                f"({weights}); reinstall brgm, whose package data includes brgm/{DEMO_DIR}/"
            )
        with resources.as_file(weights) as path:
            return load_checkpoint(path, readers)

    def calibration_file(self) -> Path | None:
        path = Path(str(resources.files("brgm").joinpath(DEMO_DIR, CALIBRATION)))
        return path if path.is_file() else None
