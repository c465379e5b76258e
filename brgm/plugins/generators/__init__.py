"""Built-in generators and checkpoint readers of brgm, registered through the same hooks as third-party
plugins."""

from __future__ import annotations

from brgm import hookimpl
from brgm.core.checkpoints import CheckpointReader
from brgm.core.generator import GeneratorSource
from brgm.plugins.generators import demo, sources, stylegan3d
from brgm.plugins.generators.checkpoints import READERS


@hookimpl
def register_generators() -> list[type[GeneratorSource]]:
    return [
        sources.CheckpointFile,
        sources.RandomStyleGAN2,
        sources.StyleGAN2FFHQ,
        sources.StyleGAN2XRay,
        sources.StyleGAN2Brains,
        stylegan3d.RandomStyleGAN3D,
        stylegan3d.StyleGAN3DBrain2mm,
        demo.DemoBrain64,
    ]


@hookimpl
def register_checkpoint_readers() -> list[CheckpointReader]:
    return list(READERS)
