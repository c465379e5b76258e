"""Generator checkpoints: safe readers for NVIDIA, TensorFlow and rosinality StyleGAN2 files, and brgm's own
``.safetensors`` format. Nothing in a checkpoint is ever executed."""

from brgm.plugins.generators.checkpoints.checkpoint import (
    ARCHITECTURES,
    READERS,
    Checkpoint,
    CheckpointReader,
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
    "Checkpoint",
    "CheckpointReader",
    "build_generator",
    "load_checkpoint",
    "network_class",
    "read_checkpoint",
    "save_generator",
    "to_rosinality",
]
