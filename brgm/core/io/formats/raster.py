"""PNG, JPEG and TIFF images through Pillow.

Reading: grayscale gives one channel and colour three (alpha is dropped; a palette image whose palette is gray
gives one channel). 8-bit images map ``v / 255`` and 16-bit ones ``v / 65535`` (so 16-bit PNGs round-trip
exactly), 32-bit integer images their min–max, and float TIFFs are taken as intensities as they are.

Writing: 16-bit where the input was 16-bit (PNG, TIFF; grayscale), float32 TIFF where it was float, else 8-bit;
values are rounded and clipped to the type's range.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
from PIL import Image

from brgm.core.errors import ImageFileError
from brgm.core.io.formats import FileFormat
from brgm.core.io.formats.meta import AS_STORED, Intensity, Meta, data_window, dtype_window

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
_TO_RGB = ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def _gray_or_rgb(image: Image.Image) -> Image.Image:
    """Convert palette, bilevel and alpha modes to L or RGB; keep L, RGB, 16-bit, I and F."""
    if image.mode in ("P", "PA"):
        rgb = np.asarray(image.convert("RGB"))
        gray = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        return image.convert("L") if gray else image.convert("RGB")
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode in _TO_RGB:
        return image.convert("RGB")
    return image


def read(path: Path, fmt: str) -> tuple[np.ndarray, Meta]:
    """``[C, H, W]`` float32 intensities and their :class:`Meta`."""
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise ImageFileError(
                    f"{path}: a multi-page {fmt.upper()} ({image.n_frames} pages) is not supported; "
                    "save one page, or a volume as NIfTI"
                )
            image.load()
            converted = _gray_or_rgb(image)
    except (OSError, SyntaxError) as err:  # Pillow's UnidentifiedImageError is an OSError
        raise ImageFileError(f"{path}: not a readable {fmt.upper()} image ({err})") from None
    stored = np.asarray(converted)
    if converted.mode.startswith("I;16"):
        stored = stored.astype(np.uint16)
    intensity = _intensity(stored)
    channels_first = stored[None] if stored.ndim == 2 else np.moveaxis(stored, -1, 0)
    meta = Meta(
        path=path,
        format=fmt,
        original_shape=tuple(stored.shape),
        dtype=stored.dtype.name,
        spatial_shape=tuple(stored.shape[:2]),
        intensity=intensity,
    )
    return intensity.to_unit(channels_first), meta


def _intensity(stored: np.ndarray) -> Intensity:
    if stored.dtype in (np.uint8, np.uint16):
        return dtype_window(stored.dtype)
    if stored.dtype.kind == "f":
        return AS_STORED
    return data_window(stored)


def write(path: Path, x: np.ndarray, meta: Meta, fmt: str) -> None:
    """Write ``x [C, H, W]`` (intensities) as ``fmt``, in the input's bit depth where the format allows it."""
    channels = x.shape[0]
    if x.ndim != 3 or channels not in (1, 3):
        raise ImageFileError(
            f"{path}: {fmt.upper()} takes 2D images with 1 or 3 channels [C, H, W], got shape {list(x.shape)}"
        )
    dtype = np.dtype(np.uint8)
    if channels == 1 and fmt in ("png", "tiff") and meta.dtype == "uint16":
        dtype = np.dtype(np.uint16)
    elif channels == 1 and fmt == "tiff" and meta.dtype.startswith("float"):
        dtype = np.dtype(np.float32)
    same_units = meta.intensity is not None and meta.dtype == dtype.name
    if dtype.kind == "f":
        stored = (meta.intensity if same_units else AS_STORED).from_unit(x).astype(np.float32)
    else:
        values = (meta.intensity if same_units else dtype_window(dtype)).from_unit(x)
        stored = np.clip(np.rint(values), 0, np.iinfo(dtype).max).astype(dtype)
    image = Image.fromarray(stored[0] if channels == 1 else np.ascontiguousarray(np.moveaxis(stored, 0, -1)))
    options = {"quality": 95} if fmt == "jpeg" else {}
    image.save(path, format=PIL_FORMATS[fmt], **options)


@attrs.frozen(kw_only=True)
class RasterFormat(FileFormat):
    """An image format Pillow reads and writes; its name is the ``fmt`` of :func:`read` and :func:`write`."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        return read(path, self.name)

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        write(path, x, meta, self.name)


FORMATS = (
    RasterFormat(
        name="png",
        label="PNG",
        description="PNG images (.png): 8- or 16-bit, gray or RGB",
        suffixes=(".png",),
    ),
    RasterFormat(
        name="jpeg",
        label="JPEG",
        description="JPEG images (.jpg, .jpeg), written 8-bit",
        suffixes=(".jpg", ".jpeg"),
    ),
    RasterFormat(
        name="tiff",
        label="TIFF",
        description="TIFF images (.tif, .tiff): 8- or 16-bit or float, one page",
        suffixes=(".tif", ".tiff"),
    ),
)
