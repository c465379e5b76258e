"""Generator checkpoints: safe readers for NVIDIA, TensorFlow and rosinality StyleGAN2 files, and brgm's own
``.safetensors`` format (their contracts, :class:`~brgm.core.checkpoints.CheckpointReader` and
:class:`~brgm.core.checkpoints.Checkpoint`, are the kernel's). Nothing in a checkpoint is ever executed."""

from brgm.plugins.generators.checkpoints.checkpoint import (
    ARCHITECTURES,
    READERS,
    build_generator,
    load_checkpoint,
    network_class,
    read_checkpoint,
    save_generator,
)
from brgm.plugins.generators.checkpoints.rosinality import to_rosinality

__all__ = [
    "ARCHITECTURES",
    "READERS",
    "build_generator",
    "load_checkpoint",
    "network_class",
    "read_checkpoint",
    "save_generator",
    "to_rosinality",
]
