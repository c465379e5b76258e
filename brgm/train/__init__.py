"""Training StyleGAN2 generators for brgm: discriminator, losses, adaptive augmentation, the loop, checkpoints."""

from brgm.train.augment import AdaptiveP, AugmentConfig, AugmentPipe
from brgm.train.dataset import load_images
from brgm.train.discriminator import Discriminator
from brgm.train.loop import TrainConfig, Trainer, TrainingDivergedError, TrainingInterrupted

__all__ = [
    "AdaptiveP",
    "AugmentConfig",
    "AugmentPipe",
    "Discriminator",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "load_images",
]
