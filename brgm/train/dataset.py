"""Training images: a ``.npz`` file (or a directory holding ``train.npz``) with ``images [N, C, H, W]`` in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brgm.core.errors import ConfigError, ShapeError


def load_images(source: Path, resolution: int | None = None) -> torch.Tensor:
    """``images`` of ``source`` (a ``.npz`` file, or a directory with ``train.npz``) as float32 ``[N, C, H, W]``
    in [-1, 1], the generator's range. ``resolution`` (if given) must equal ``H`` and ``W``."""
    path = source / "train.npz" if source.is_dir() else source
    if not path.is_file():
        raise ConfigError(f"training data {path} does not exist (make it with scripts/make_demo_data.py)")
    with np.load(path, allow_pickle=False) as f:
        if "images" not in f:
            raise ConfigError(f"{path} holds no 'images' array (found: {', '.join(f.files) or 'nothing'})")
        images = np.asarray(f["images"], dtype=np.float32)
    if images.ndim != 4 or images.shape[2] != images.shape[3] or len(images) == 0:
        raise ShapeError(
            f"{path}: images must be [N, C, H, W] with square H = W and N > 0, got {images.shape}"
        )
    if resolution is not None and images.shape[2] != resolution:
        raise ShapeError(
            f"{path}: images are {images.shape[2]}×{images.shape[3]}, not {resolution}×{resolution}"
        )
    if images.min() < 0 or images.max() > 1:
        raise ShapeError(f"{path}: intensities must lie in [0, 1], got [{images.min():g}, {images.max():g}]")
    return torch.from_numpy(images) * 2 - 1
