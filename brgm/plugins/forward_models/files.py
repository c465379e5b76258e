"""Arrays read from ``.npy`` files and images (kernels, inpainting masks, coil sensitivity maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brgm.core.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_array(path: Path, *, channels: bool = False) -> np.ndarray:
    """The array stored in ``path``: ``.npy`` as saved, images as float64 ``[H, W]`` (``[H, W, C]`` with
    ``channels``) in their stored units (0..255 for 8-bit images)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image if channels else image.convert("F"), dtype=np.float64)
        return array
    raise ConfigError(
        f"cannot read {str(path)!r}: expected a .npy file or an image ({', '.join(IMAGE_SUFFIXES)})"
    )
