"""Reading and writing images, volumes and measurements.

:func:`load` returns a :class:`Loaded`: ``data [1, C, *spatial]`` (float32 intensities in [0, 1], or complex64
k-space) and a :class:`~brgm.core.io.formats.meta.Meta` with the format, the stored shape and type, the geometry
(affine, voxel sizes), the intensity window and what is needed to write outputs back in the input's format.
:func:`save` does the reverse for ``x [C, *spatial]``; :func:`fit_to_grid` and :func:`back_to_input_grid` move
data between the input's grid and a generator's.

=================  ====================================  ==================================================
format             data                                  intensities in [0, 1]
=================  ====================================  ==================================================
PNG, JPEG, TIFF    gray ``[1, 1, H, W]``, RGB ``[1, 3,   8-bit ``v / 255``, 16-bit ``v / 65535`` (exact);
                   H, W]``                               float TIFF as stored
DICOM file         ``[1, C, H, W]`` (rows, columns)      rescale slope/intercept, then min–max;
                                                         MONOCHROME1 inverted
DICOM series dir   ``[1, 1, D, H, W]`` RAS+ (see below)  rescale slope/intercept, then min–max
NIfTI .nii(.gz)    ``[1, 1, D, H, W]`` RAS+ (see below)  ``cal_min``/``cal_max`` when set, else min–max
.npy, .pt          channel-first arrays                  as stored (brgm's units); complex = k-space
=================  ====================================  ==================================================

Volumes are reoriented to RAS+: ``[D, H, W]`` = (x: left → right, y: posterior → anterior, z: inferior →
superior); see :mod:`brgm.core.io.formats.nifti`. ``load(path, percentiles=(0.5, 99.5))`` replaces the min–max
window of DICOM and NIfTI data by a clipped percentile window. The window used is kept in ``meta.intensity``,
and the medical formats brgm writes record it (NIfTI ``cal_min``/``cal_max``, a private DICOM element), so a
measurement or reconstruction re-reads on the scale of the input it came from.

Non-finite values (NaN, ±inf) are missing: windows are computed without them, and they are read as 0
(background) with a warning that counts them; a file without any finite value is refused.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch

from brgm.core.errors import ImageFileError
from brgm.core.io.files import atomic_directory, atomic_path
from brgm.core.io.formats import arrays, dicom, nifti, raster
from brgm.core.io.formats.meta import GridFit, Intensity, Meta, missing_to_background
from brgm.core.io.grid import back_to_input_grid, fit_to_grid, regrid

__all__ = [
    "GridFit",
    "Intensity",
    "Loaded",
    "Meta",
    "back_to_input_grid",
    "detect_format",
    "fit_to_grid",
    "load",
    "output_suffix",
    "save",
    "split_suffix",
]

#: file suffix -> format
SUFFIXES = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".npy": "npy",
    ".pt": "pt",
}
#: format -> the suffix outputs get
OUTPUT_SUFFIXES = {
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "dicom": ".dcm",
    "dicom-series": "",
    "nifti": ".nii.gz",
    "npy": ".npy",
    "pt": ".pt",
}
ACCEPTED = "PNG, JPEG, TIFF, DICOM (.dcm, or a directory of slices), NIfTI (.nii, .nii.gz), .npy, .pt"


@attrs.frozen(eq=False)
class Loaded:
    """A file's content: ``data [1, C, *spatial]`` (float32 intensities, or complex64 k-space) and ``meta``."""

    data: torch.Tensor
    meta: Meta


def split_suffix(path: str | Path) -> tuple[Path, str]:
    """``("scan.nii.gz")`` -> ``(Path("scan"), ".nii.gz")``; the suffix is lower-case ('' for none)."""
    path = Path(path)
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)]), suffix
    return path.with_suffix(""), path.suffix.lower()


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its suffix (a directory is a DICOM series)."""
    path = Path(path)
    if path.is_dir():
        return "dicom-series"
    suffix = split_suffix(path)[1]
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; brgm reads {ACCEPTED}")
    return SUFFIXES[suffix]


def load(path: str | Path, *, percentiles: tuple[float, float] | None = None) -> Loaded:
    """Read an image, volume or measurement (see the module docstring for formats and intensity rules).

    Args:
        path: a file, or a directory holding one DICOM series.
        percentiles: ``(lo, hi)`` to window DICOM and NIfTI intensities at these percentiles (clipped)
            instead of their min–max.
    """
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"{path}: no such file or directory")
    fmt = detect_format(path)
    if fmt in raster.PIL_FORMATS:
        data, meta = raster.read(path, fmt)
    elif fmt == "dicom":
        data, meta = dicom.read_file(path, percentiles)
    elif fmt == "dicom-series":
        data, meta = dicom.read_series(path, percentiles)
    elif fmt == "nifti":
        data, meta = nifti.read(path, percentiles)
    else:
        data, meta = arrays.read(path, fmt)
    data = missing_to_background(data, path)
    return Loaded(torch.from_numpy(np.ascontiguousarray(data))[None], meta)


def output_suffix(meta: Meta, *, is_complex: bool = False) -> str:
    """The suffix an output written with ``meta`` gets: the input's format (``''`` for a DICOM series, which
    is a directory), and ``.npy`` for complex data unless the input was ``.pt``."""
    if is_complex:
        return ".pt" if meta.format == "pt" else ".npy"
    return OUTPUT_SUFFIXES[meta.format]


def save(path: str | Path, x: torch.Tensor | np.ndarray, meta: Meta) -> Path:
    """Write ``x [C, *spatial]`` (intensities in [0, 1], or complex k-space) in the format of ``path``'s suffix,
    in the units, type and geometry of ``meta``'s input; a path without suffix is a DICOM series directory.

    ``x`` may be on another grid than ``meta`` (a downsampled measurement): it is taken to cover the same field
    of view, and the written affine and voxel sizes say so. Complex data goes to ``.npy`` or ``.pt`` only.
    The file (or series directory) appears atomically: it is written under a temporary name beside ``path``
    and renamed, so a failed write (a full disk) leaves no partial file and an earlier file intact.
    Returns the path written.
    """
    path = Path(path)
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim == meta.spatial_dims + 2 and array.shape[0] == 1:
        array = array[0]
    suffix = split_suffix(path)[1]
    fmt = "dicom-series" if suffix == "" and meta.format == "dicom-series" else SUFFIXES.get(suffix)
    if fmt is None:
        raise ImageFileError(
            f"{path}: unknown output type {suffix or '(no suffix)'!r}; brgm writes {ACCEPTED}"
        )
    if np.iscomplexobj(array) and fmt not in ("npy", "pt"):
        raise ImageFileError(f"{path}: complex data (k-space) can only be written to .npy or .pt")
    if fmt not in ("npy", "pt"):
        if meta.intensity is None:
            raise ImageFileError(
                f"{path}: {meta.path} holds complex data; image outputs need an image input's meta"
            )
        if tuple(array.shape[1:]) != meta.spatial_shape and array.ndim - 1 == meta.spatial_dims:
            meta = regrid(meta, array.shape[1:])
    if fmt == "dicom-series":
        with atomic_directory(path) as tmp:
            dicom.write_series(tmp, array, meta)
        return path
    with atomic_path(path, suffix=suffix) as tmp:
        if fmt in ("npy", "pt"):
            arrays.write(tmp, array, fmt)
        elif fmt in raster.PIL_FORMATS:
            raster.write(tmp, array, meta, fmt)
        elif fmt == "dicom":
            dicom.write_file(tmp, array, meta)
        else:
            nifti.write(tmp, array, meta)
    return path
