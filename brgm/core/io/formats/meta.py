"""What brgm remembers about a file it read: format, geometry and the intensity window, so that outputs can be
written back in the input's format, units and place in space."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from brgm.core.errors import ImageFileError


@attrs.frozen
class Intensity:
    """The map between stored values ``v`` (after DICOM rescale or NIfTI scaling) and intensities ``x``:
    ``x = (v − low) / (high − low)``, or ``(high − v) / (high − low)`` when ``invert`` (DICOM MONOCHROME1).

    With ``clip`` the intensities are clipped to [0, 1] (a percentile window); otherwise values outside the
    window map outside [0, 1] and come back unchanged. Non-finite values stay non-finite (missing, see
    :func:`missing_to_background`). ``rule`` says how the window was chosen.
    """

    low: float
    high: float
    invert: bool = False
    clip: bool = False
    rule: str = ""

    @property
    def span(self) -> float:
        """``high − low``, or 1 for a constant image (which then maps to 0)."""
        return self.high - self.low if self.high > self.low else 1.0

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Stored values -> float32 intensities."""
        x = (np.asarray(values, dtype=np.float64) - self.low) / self.span
        if self.invert:
            x = 1.0 - x
        if self.clip:
            np.clip(x, 0.0, 1.0, out=x, where=np.isfinite(x))
        return x.astype(np.float32)

    def from_unit(self, x: np.ndarray) -> np.ndarray:
        """Intensities -> stored values (float64; the writer rounds and casts to the file's type)."""
        x = np.asarray(x, dtype=np.float64)
        if self.invert:
            x = 1.0 - x
        return self.low + x * self.span

    def as_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "invert": self.invert,
            "clip": self.clip,
            "rule": self.rule,
        }


#: intensities stored as they are (float images and brgm's own ``.npy``/``.pt`` arrays)
AS_STORED = Intensity(0.0, 1.0, rule="stored values are intensities")


def dtype_window(dtype: np.dtype) -> Intensity:
    """The full range of an unsigned 8- or 16-bit type: ``v / 255`` or ``v / 65535``."""
    top = float(np.iinfo(dtype).max)
    return Intensity(0.0, top, rule=f"{np.dtype(dtype).itemsize * 8}-bit: v / {top:.0f}")


def data_window(
    values: np.ndarray, *, invert: bool = False, percentiles: tuple[float, float] | None = None
) -> Intensity:
    """The data's own range (min–max), or the ``percentiles`` ``(lo, hi)`` with clipping (a robust window), of
    its finite values (NaN and ±inf are missing; data without finite values gets the window [0, 1] and is
    refused by :func:`missing_to_background`)."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return attrs.evolve(AS_STORED, invert=invert, rule="no finite values")
    if percentiles is None:
        return Intensity(float(values.min()), float(values.max()), invert=invert, rule="min–max of the data")
    lo, hi = np.percentile(values, percentiles)
    rule = f"percentiles {percentiles[0]:g}–{percentiles[1]:g} of the data, clipped"
    return Intensity(float(lo), float(hi), invert=invert, clip=True, rule=rule)


def missing_to_background(data: np.ndarray, path: Path) -> np.ndarray:
    """``data`` read from ``path`` with its non-finite values (NaN, ±inf: missing voxels) set to 0, the
    background, with a warning that counts them; an :class:`ImageFileError` when no value is finite."""
    missing = ~np.isfinite(data)
    count = int(missing.sum())
    if count == 0:
        return data
    if count == data.size:
        raise ImageFileError(
            f"{path}: all {count} values are not finite (NaN or ±inf); there is no image to use"
        )
    warnings.warn(
        f"{path}: {count} of {data.size} values are not finite (NaN or ±inf); they are treated as missing "
        "and set to 0 (background)",
        stacklevel=3,
    )
    return np.where(missing, 0, data)


@attrs.frozen(eq=False)
class GridFit:
    """How :func:`brgm.core.io.fit_to_grid` changed an input: the grid before (``source``), the region kept
    (``crop_start``, ``crop_size`` on the source grid) and the source's channel count."""

    source: Meta
    crop_start: tuple[int, ...]
    crop_size: tuple[int, ...]
    channels: int


@attrs.frozen(kw_only=True, eq=False)
class Meta:
    """What was read with the data, and the grid the data is on now.

    Attributes:
        path: the file (or DICOM series directory) read.
        format: ``png``, ``jpeg``, ``tiff``, ``dicom``, ``dicom-series``, ``nifti``, ``npy`` or ``pt``.
        original_shape: the array's shape as stored in the file.
        dtype: the stored type (``uint8``, ``uint16``, ``int16``, ``float32``, ``complex64``, ...).
        spatial_shape: the data's spatial shape now, ``(H, W)`` or ``(D, H, W)``.
        affine: 4×4 map from a voxel index to RAS+ world coordinates in mm: ``[d, h, w, 1]`` for volumes,
            ``[h, w, 0, 1]`` for a DICOM slice; None when the file has no geometry.
        voxel_sizes: mm per spatial axis, or None when unknown.
        intensity: how stored values map to [0, 1]; None for complex data (k-space is kept as it is).
        dicom: the DICOM template: one dataset, or the series' datasets in slice order (pixel data removed).
        nifti_header: the NIfTI header, reused when writing.
        orientation: nibabel orientation of the file's axes relative to RAS+ (volumes are read reoriented).
        fit: what :func:`~brgm.core.io.fit_to_grid` changed, or None.
    """

    path: Path
    format: str
    original_shape: tuple[int, ...]
    dtype: str
    spatial_shape: tuple[int, ...]
    affine: np.ndarray | None = None
    voxel_sizes: tuple[float, ...] | None = None
    intensity: Intensity | None = None
    dicom: Any = None
    nifti_header: Any = None
    orientation: np.ndarray | None = None
    fit: GridFit | None = None

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial_shape)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for configuration files)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "original_shape": list(self.original_shape),
            "dtype": self.dtype,
            "spatial_shape": list(self.spatial_shape),
            "affine": None if self.affine is None else self.affine.tolist(),
            "voxel_sizes": None if self.voxel_sizes is None else list(self.voxel_sizes),
            "intensity": None if self.intensity is None else self.intensity.as_dict(),
        }
