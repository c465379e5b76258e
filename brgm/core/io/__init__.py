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

Formats are components (:class:`~brgm.core.io.formats.FileFormat`) registered through the ``register_formats``
hook, those of the table by brgm's default plugin :mod:`brgm.core.io.formats.builtin`; a plugin adds one (its
suffixes, reader and writer) without any change here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import numpy as np
import torch

from brgm.core.errors import ImageFileError, PluginError
from brgm.core.io.files import atomic_directory, atomic_path
from brgm.core.io.formats import FileFormat
from brgm.core.io.formats.meta import GridFit, Intensity, Meta, missing_to_background
from brgm.core.io.grid import back_to_input_grid, fit_to_grid, regrid

if TYPE_CHECKING:
    from brgm.core.registry import Registry

__all__ = [
    "FileFormat",
    "GridFit",
    "Intensity",
    "Loaded",
    "Meta",
    "back_to_input_grid",
    "check_writable",
    "detect_format",
    "fit_to_grid",
    "formats",
    "input_suffixes",
    "load",
    "output_suffix",
    "save",
    "split_suffix",
]


def _registry() -> Registry:
    """The current registry, imported on use: plugins import this package, so it must not load them."""
    from brgm.core.plugins import registry

    return registry()


def formats() -> list[FileFormat]:
    """The registered file formats (the ``register_formats`` hook), brgm's own first."""
    return [c.obj for c in _registry().registered("format")]


def _by_suffix() -> dict[str, FileFormat]:
    """Suffix -> the format that claims it; a :class:`PluginError` when two formats claim one."""
    table: dict[str, FileFormat] = {}
    for component in _registry().registered("format"):
        for suffix in component.obj.suffixes:
            if suffix in table:
                raise PluginError(
                    f"two file formats claim the suffix {suffix!r}: {table[suffix].name!r} and "
                    f"{component.name!r} (plugin {component.plugin!r}); uninstall or disable one of them"
                )
            table[suffix] = component.obj
    return table


def _accepted() -> str:
    """What brgm reads, for messages: the formats' labels, each once."""
    return ", ".join(dict.fromkeys(fmt.label for fmt in formats()))


def input_suffixes() -> tuple[str, ...]:
    """The suffixes of the files the registered formats read (a directory input is expanded to these)."""
    return tuple(_by_suffix())


@attrs.frozen(eq=False)
class Loaded:
    """A file's content: ``data [1, C, *spatial]`` (float32 intensities, or complex64 k-space) and ``meta``."""

    data: torch.Tensor
    meta: Meta


def split_suffix(path: str | Path) -> tuple[Path, str]:
    """``("scan.nii.gz")`` -> ``(Path("scan"), ".nii.gz")``: the longest suffix a registered format claims, else
    the last one; lower-case ('' for none)."""
    path = Path(path)
    name = path.name.lower()
    for suffix in sorted(_by_suffix(), key=len, reverse=True):
        if name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)]), suffix
    return path.with_suffix(""), path.suffix.lower()


def _named(name: str) -> FileFormat:
    """The registered format ``name`` (a :class:`Meta`'s ``format``)."""
    return _registry().get("format", name).obj


def _format_of(path: Path) -> FileFormat:
    """The format that reads ``path``, by its suffix; a directory that no directory format claims by suffix is
    read by the first directory format that claims none (a DICOM series)."""
    suffix = split_suffix(path)[1]
    fmt = _by_suffix().get(suffix)
    if path.is_dir() and (fmt is None or not fmt.directory):
        fmt = next((f for f in formats() if f.directory and not f.suffixes), None)
    if fmt is None:
        raise ImageFileError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; brgm reads {_accepted()}"
        )
    return fmt


def detect_format(path: str | Path) -> str:
    """The name of the format of ``path``, from its suffix (a directory is a DICOM series)."""
    return _format_of(Path(path)).name


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
    data, meta = _format_of(path).read(path, percentiles)
    data = missing_to_background(data, path)
    return Loaded(torch.from_numpy(np.ascontiguousarray(data))[None], meta)


def output_suffix(meta: Meta, *, is_complex: bool = False) -> str:
    """The suffix an output written with ``meta`` gets: the input's format's (``''`` for a DICOM series, which
    is a directory); complex data goes to the first format that holds it (``.npy``) unless the input's does."""
    fmt = _named(meta.format)
    if is_complex and not fmt.complex_data:
        fmt = next(f for f in formats() if f.complex_data)
    return fmt.output_suffix


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
    if suffix:
        fmt = _by_suffix().get(suffix)
    else:  # a directory format without suffixes, when the input was one
        fmt = _named(meta.format)
        fmt = fmt if fmt.directory and not fmt.suffixes else None
    if fmt is None:
        raise ImageFileError(
            f"{path}: unknown output type {suffix or '(no suffix)'!r}; brgm writes {_accepted()}"
        )
    if np.iscomplexobj(array) and not fmt.complex_data:
        holders = " or ".join(f.output_suffix for f in formats() if f.complex_data)
        raise ImageFileError(f"{path}: complex data (k-space) can only be written to {holders}")
    if not fmt.complex_data:
        if meta.intensity is None:
            raise ImageFileError(
                f"{path}: {meta.path} holds complex data; image outputs need an image input's meta"
            )
        if tuple(array.shape[1:]) != meta.spatial_shape and array.ndim - 1 == meta.spatial_dims:
            meta = regrid(meta, array.shape[1:])
    with atomic_directory(path) if fmt.directory else atomic_path(path, suffix=suffix) as tmp:
        try:
            fmt.write(tmp, array, meta)
        except ImageFileError as err:  # name the output, not the temporary file it was being written to
            raise ImageFileError(str(err).replace(str(tmp), str(path))) from None
    return path


def check_writable(meta: Meta, shape: Sequence[int]) -> None:
    """Write an image of zeros ``[C, *spatial]`` (``shape``) as an output with ``meta`` is written, into a
    temporary directory that is then removed: an :class:`ImageFileError` naming ``meta.path`` when outputs in its
    input's format cannot be written (so that a run refuses such an input before solving it)."""
    with tempfile.TemporaryDirectory(prefix="brgm-write-check-") as directory:
        probe = Path(directory) / f"probe{output_suffix(meta)}"
        try:
            save(probe, np.zeros(tuple(shape), np.float32), meta)
        except ImageFileError as err:
            reason = str(err).removeprefix(f"{probe}: ")
            raise ImageFileError(
                f"{meta.path}: its reconstruction cannot be written in its format ({meta.format}): {reason}"
            ) from None
