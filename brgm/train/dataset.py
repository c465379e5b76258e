"""Training images: a ``.npz`` file (or a directory holding ``train.npz``) with ``images [N, C, H, W]`` in [0, 1]."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from brgm.core.errors import ConfigError, ShapeError

# what reading a damaged or pickled .npz member raises: a bad CRC or stream, a truncated array, object arrays
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_images(path: Path) -> np.ndarray:
    """The ``images`` array of the ``.npz`` at ``path`` as float32, never unpickling anything."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"training data {path} is not a .npz file (a zip archive), or it was cut short")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f:
                raise ConfigError(
                    f"{path} holds no 'images' array (found: {', '.join(f.files) or 'nothing'})"
                )
            return np.asarray(f["images"], dtype=np.float32)
    except _UNREADABLE as err:
        reason = " ".join(str(err).split())  # one line
        raise ConfigError(f"cannot read training data {path} as a .npz of numbers: {reason}") from None


def load_images(source: Path, resolution: int | None = None) -> torch.Tensor:
    """``images`` of ``source`` (a ``.npz`` file, or a directory with ``train.npz``) as float32 ``[N, C, H, W]``
    in [-1, 1], the generator's range. ``resolution`` (if given) must equal ``H`` and ``W``. Every value must be
    finite and in [0, 1]."""
    path = source / "train.npz" if source.is_dir() else source
    if not path.is_file():
        raise ConfigError(f"training data {path} does not exist (make it with scripts/make_demo_data.py)")
    images = _read_images(path)
    if images.ndim != 4 or images.shape[2] != images.shape[3] or len(images) == 0:
        raise ShapeError(
            f"{path}: images must be [N, C, H, W] with square H = W and N > 0, got {images.shape}"
        )
    if resolution is not None and images.shape[2] != resolution:
        raise ShapeError(
            f"{path}: images are {images.shape[2]}×{images.shape[3]}, not {resolution}×{resolution}"
        )
    bad = images.size - np.count_nonzero(np.isfinite(images))
    if bad:
        raise ShapeError(f"{path}: {bad} of {images.size} image values are not finite (NaN or ±inf)")
    if images.min() < 0 or images.max() > 1:
        raise ShapeError(f"{path}: intensities must lie in [0, 1], got [{images.min():g}, {images.max():g}]")
    return torch.from_numpy(images) * 2 - 1
