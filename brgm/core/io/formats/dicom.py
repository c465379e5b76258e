"""DICOM through pydicom: one file (a radiograph or a single slice) or a series (a directory of slices).

Reading applies *Rescale Slope*/*Intercept* (so CT is in HU) and maps the result to [0, 1] by the data's
min–max (or a percentile window), inverted for MONOCHROME1 so that dense tissue is bright. A file that brgm wrote
carries its window in a private element (group 0x0071, creator ``brgm``), so a measurement or reconstruction
re-reads on the same scale as the input it came from.

A series is the slices of one *Series Instance UID*, sorted by *Image Position (Patient)* along the slice
normal; it must have one orientation and size and evenly spaced slices. It becomes a volume with a voxel-to-RAS
affine (DICOM's LPS converted), reoriented like NIfTI volumes (see :mod:`brgm.core.io.formats.nifti`).

Writing copies the template (the input's dataset, or the series' slice datasets), replaces the pixel data,
updates geometry (size, spacing, position), gives every file a new *SOP Instance UID* and each written image or
series a new *Series Instance UID*, and stores uncompressed little-endian data. A colour (RGB or YBR) input that
was converted to gray for a one-channel generator is written as MONOCHROME2.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import attrs
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from brgm.core.errors import ImageFileError
from brgm.core.io.formats import FileFormat, nifti
from brgm.core.io.formats.meta import Intensity, Meta, data_window, dtype_window

#: where brgm stores the intensity window of the files it writes
WINDOW_GROUP, WINDOW_CREATOR, WINDOW_ELEMENT = 0x0071, "brgm", 0x01
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
_SLICE_NAME = re.compile(r"\d{4}\.dcm")


def _read_dataset(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        raise ImageFileError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except (OSError, ValueError, EOFError) as err:
        raise ImageFileError(f"{path}: not a readable DICOM file ({err})") from None


def _is_image(ds: Dataset) -> bool:
    return "PixelData" in ds


def _pixels(ds: Dataset, path: Path) -> np.ndarray:
    """The stored pixel array ``(rows, cols)`` or ``(rows, cols, samples)``."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageFileError(
            f"{path}: multi-frame DICOM ({frames} frames) is not supported; brgm reads single-frame files "
            "(a radiograph or a slice) and directories of slices (a series)"
        )
    missing = [name for name in ("Rows", "Columns", "BitsAllocated", "BitsStored") if name not in ds]
    if missing:
        raise ImageFileError(
            f"{path}: the DICOM image lacks {', '.join(missing)}, so its pixels cannot be read"
        )
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as err:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise ImageFileError(
            f"{path}: cannot decode its pixel data (transfer syntax {syntax}): {err}; installing pylibjpeg "
            "or gdcm adds decoders"
        ) from None


def _rescaled(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float64) * slope + intercept


def _stored_window(ds: Dataset) -> tuple[float, float] | None:
    try:
        element = ds.private_block(WINDOW_GROUP, WINDOW_CREATOR)[WINDOW_ELEMENT]
    except KeyError:
        return None
    value = element.value
    if isinstance(value, bytes):  # read back through an implicit-VR transfer syntax
        value = np.frombuffer(value, "<f8")
    return float(value[0]), float(value[1])


def _intensity(ds: Dataset, values: np.ndarray, percentiles: tuple[float, float] | None) -> Intensity:
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        return dtype_window(np.uint8) if int(ds.BitsStored) <= 8 else data_window(values)
    invert = ds.get("PhotometricInterpretation", "") == "MONOCHROME1"
    window = _stored_window(ds)
    if window is not None and percentiles is None:
        return Intensity(*window, invert=invert, rule="window stored by brgm")
    return data_window(values, invert=invert, percentiles=percentiles)


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm from *Pixel Spacing* or *Imager Pixel Spacing*."""
    for name in ("PixelSpacing", "ImagerPixelSpacing"):
        if ds.get(name):
            return float(ds[name].value[0]), float(ds[name].value[1])
    return None


def _directions(ds: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit vectors (LPS) along a row (column index increasing) and along a column (row index increasing)."""
    if not ds.get("ImageOrientationPatient") or not ds.get("ImagePositionPatient"):
        return None
    cosines = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return cosines[:3], cosines[3:]


def _slice_affine(ds: Dataset) -> np.ndarray | None:
    """RAS affine of a single slice, indexed ``[h, w, 0]`` (row, column)."""
    directions, spacing = _directions(ds), _spacing(ds)
    if directions is None or spacing is None:
        return None
    along_row, along_col = directions
    thickness = float(ds.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = along_col * spacing[0]
    lps[:3, 1] = along_row * spacing[1]
    lps[:3, 2] = np.cross(along_row, along_col) * thickness
    lps[:3, 3] = [float(v) for v in ds.ImagePositionPatient]
    return _LPS_RAS @ lps


def read_file(path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
    """One DICOM image -> ``[C, H, W]`` intensities (rows, columns) and its :class:`Meta`."""
    ds = _read_dataset(path)
    if not _is_image(ds):
        raise ImageFileError(f"{path}: the DICOM file has no pixel data (is it a DICOMDIR or a report?)")
    pixels = _pixels(ds, path)
    values = _rescaled(ds, pixels)
    intensity = _intensity(ds, values, percentiles)
    channels_first = values[None] if values.ndim == 2 else np.moveaxis(values, -1, 0)
    del ds.PixelData
    meta = Meta(
        path=path,
        format="dicom",
        original_shape=tuple(pixels.shape),
        dtype=pixels.dtype.name,
        spatial_shape=tuple(pixels.shape[:2]),
        affine=_slice_affine(ds),
        voxel_sizes=_spacing(ds),
        intensity=intensity,
        dicom=ds,
    )
    return intensity.to_unit(channels_first), meta


def _series_datasets(directory: Path) -> list[Dataset]:
    """The image datasets of the one series in ``directory`` (other files are ignored)."""
    datasets = []
    for file in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(file)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if _is_image(ds):
            ds.filename = str(file)
            datasets.append(ds)
    if not datasets:
        raise ImageFileError(
            f"{directory}: no DICOM images in the directory (a series is a directory of slices)"
        )
    series: dict[str, int] = {}
    for ds in datasets:
        uid = str(ds.get("SeriesInstanceUID", "?"))
        series[uid] = series.get(uid, 0) + 1
    if len(series) > 1:
        ranked = sorted(series.items(), key=lambda item: -item[1])
        listed = ", ".join(f"{uid} ({n} file{'s' if n > 1 else ''})" for uid, n in ranked)
        raise ImageFileError(
            f"{directory}: holds {len(series)} DICOM series; put one series per directory: {listed}"
        )
    return datasets


def _series_geometry(datasets: list[Dataset], directory: Path) -> tuple[list[Dataset], np.ndarray]:
    """The datasets sorted along the slice normal and the RAS affine indexed ``[column, row, slice]``."""
    geometry = [_directions(ds) for ds in datasets]
    spacings = [_spacing(ds) for ds in datasets]
    if any(g is None for g in geometry) or any(s is None for s in spacings):
        raise ImageFileError(
            f"{directory}: every slice of a series needs Image Position/Orientation (Patient) and Pixel Spacing"
        )
    along_row, along_col = geometry[0]
    for (row, col), spacing, ds in zip(geometry, spacings, datasets, strict=True):
        same = np.allclose(row, along_row, atol=1e-4) and np.allclose(col, along_col, atol=1e-4)
        if (
            not same
            or spacing != spacings[0]
            or (ds.Rows, ds.Columns) != (datasets[0].Rows, datasets[0].Columns)
        ):
            raise ImageFileError(
                f"{directory}: slice {Path(ds.filename).name} differs from the others in orientation, pixel "
                "spacing or size; a series must share them"
            )
    normal = np.cross(along_row, along_col)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    datasets, positions = [datasets[i] for i in order], positions[order]
    if len(datasets) > 1:
        if np.min(np.diff(positions @ normal)) < 1e-4:
            raise ImageFileError(
                f"{directory}: two slices share a position; is the series made of several runs?"
            )
        step = (positions[-1] - positions[0]) / (len(datasets) - 1)
        expected = positions[0] + np.arange(len(datasets))[:, None] * step
        error = np.abs(positions - expected).max()
        if error > 0.01 * np.linalg.norm(step) + 1e-3:
            raise ImageFileError(
                f"{directory}: the slices are not evenly spaced (off by up to {error:.3g} mm), so the series "
                "has no single affine; resample it first"
            )
    else:
        ds = datasets[0]
        step = normal * float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    row_spacing, col_spacing = spacings[0]
    lps = np.eye(4)
    lps[:3, 0] = along_row * col_spacing
    lps[:3, 1] = along_col * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return datasets, _LPS_RAS @ lps


def read_series(directory: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
    """A directory of slices -> ``[1, D, H, W]`` intensities (RAS+ reoriented) and its :class:`Meta`."""
    datasets, affine = _series_geometry(_series_datasets(directory), directory)
    slices = []
    for ds in datasets:
        pixels = _pixels(ds, Path(ds.filename))
        if pixels.ndim != 2:
            raise ImageFileError(
                f"{ds.filename}: a series slice must be grayscale, got shape {list(pixels.shape)}"
            )
        slices.append(_rescaled(ds, pixels))
    stacked = np.stack(slices)  # [slice, row, column]
    dtype = pixels.dtype.name
    values, affine, orientation = nifti.to_canonical(stacked.transpose(2, 1, 0), affine)
    intensity = _intensity(datasets[0], values, percentiles)
    for ds in datasets:
        del ds.PixelData
    meta = Meta(
        path=directory,
        format="dicom-series",
        original_shape=tuple(stacked.shape),
        dtype=dtype,
        spatial_shape=tuple(values.shape),
        affine=affine,
        voxel_sizes=nifti.voxel_sizes(affine),
        intensity=intensity,
        dicom=datasets,
        orientation=orientation,
    )
    return intensity.to_unit(values)[None], meta


def _ds_values(values: np.ndarray) -> list[DSfloat]:
    return [DSfloat(float(v), auto_format=True) for v in values]


def _with_pixels(
    template: Dataset, values: np.ndarray, intensity: Intensity, series_uid: str, path: Path
) -> Dataset:
    """A copy of ``template`` holding ``values`` (stored units; ``(rows, cols)`` or ``(rows, cols, samples)``)."""
    ds = copy.deepcopy(template)
    samples = values.shape[2] if values.ndim == 3 else 1
    template_samples = int(ds.get("SamplesPerPixel", 1))
    gray_from_colour = samples == 1 and template_samples == 3  # a colour input reconstructed in gray
    if samples != template_samples and not gray_from_colour:
        raise ImageFileError(
            f"{path}: the DICOM template has {template_samples} sample(s) per pixel, "
            f"the image has {samples} channel(s)"
        )
    bits, stored_bits = int(ds.BitsAllocated), int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16):
        raise ImageFileError(f"{path}: writing {bits}-bit DICOM pixel data is not supported (8 or 16 bits)")
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    lo, hi = (-(2 ** (stored_bits - 1)), 2 ** (stored_bits - 1) - 1) if signed else (0, 2**stored_bits - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    stored = np.clip(np.rint((values - intercept) / slope), lo, hi).astype(dtype)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    photometric = "RGB" if samples == 3 else str(ds.PhotometricInterpretation)
    if gray_from_colour:
        photometric = "MONOCHROME2"
    ds.set_pixel_data(stored, photometric, stored_bits)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    if samples == 1:
        block = ds.private_block(WINDOW_GROUP, WINDOW_CREATOR, create=True)
        block.add_new(WINDOW_ELEMENT, "FD", [intensity.low, intensity.high])
    return ds


def _set_geometry(
    ds: Dataset, template: Dataset, lps: np.ndarray | None, spacing: tuple[float, float] | None
) -> None:
    """Position and orientation from ``lps`` (columns: along a row, along a column, -, origin), pixel spacing
    ``(row, column)`` mm; both scale the template's *Imager Pixel Spacing* too."""
    if lps is not None:
        along_row, along_col = lps[:3, 0], lps[:3, 1]
        spacing = float(np.linalg.norm(along_col)), float(np.linalg.norm(along_row))
        cosines = np.concatenate([along_row / spacing[1], along_col / spacing[0]])
        ds.ImageOrientationPatient = _ds_values(cosines)
        ds.ImagePositionPatient = _ds_values(lps[:3, 3])
    old = _spacing(template)
    if spacing is None or old is None:
        return
    ratio = np.asarray(spacing) / np.asarray(old)
    for name in ("PixelSpacing", "ImagerPixelSpacing"):
        if ds.get(name):
            ds[name].value = _ds_values(np.asarray([float(v) for v in ds[name].value]) * ratio)


def _save(ds: Dataset, path: Path) -> None:
    try:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    except OSError as err:
        raise ImageFileError(f"{path}: cannot write the DICOM file ({err})") from None


def write_file(path: Path, x: np.ndarray, meta: Meta) -> None:
    """Write ``x [C, H, W]`` (intensities) into a copy of the input's dataset."""
    if not isinstance(meta.dicom, Dataset):
        raise ImageFileError(f"{path}: writing a DICOM file needs a DICOM image as input (its template)")
    if x.ndim != 3:
        raise ImageFileError(f"{path}: a DICOM file takes a 2D image [C, H, W], got shape {list(x.shape)}")
    values = meta.intensity.from_unit(x)
    values = values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1)
    ds = _with_pixels(meta.dicom, values, meta.intensity, generate_uid(), path)
    lps = None
    if meta.affine is not None:
        lps = (_LPS_RAS @ meta.affine)[:, [1, 0, 2, 3]]  # [h, w] -> (along a row, along a column)
    _set_geometry(ds, meta.dicom, lps, meta.voxel_sizes)
    _save(ds, path)


def write_series(directory: Path, x: np.ndarray, meta: Meta) -> None:
    """Write ``x [1, D, H, W]`` (a volume on ``meta``'s grid) as a series of slices ``0001.dcm``, ... in
    ``directory``, replacing an earlier series written there."""
    if not isinstance(meta.dicom, list):
        raise ImageFileError(
            f"{directory}: writing a DICOM series needs a DICOM series as input (its template)"
        )
    if x.ndim != 4 or x.shape[0] != 1:
        raise ImageFileError(
            f"{directory}: a DICOM series takes a volume [1, D, H, W], got shape {list(x.shape)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in directory.iterdir() if not _SLICE_NAME.fullmatch(p.name)]
    if others:
        raise ImageFileError(
            f"{directory}: the directory holds other files ({', '.join(sorted(others)[:3])}); "
            "write a DICOM series into a new or empty directory"
        )
    for old in directory.iterdir():
        old.unlink()
    volume, affine = nifti.from_canonical(meta.intensity.from_unit(x[0]), meta.affine, meta.orientation)
    lps = _LPS_RAS @ affine  # indexed [column, row, slice]
    slices = volume.transpose(2, 1, 0)  # [slice, row, column]
    resampled = len(meta.dicom) != len(slices)  # the field of view is kept, so the slice spacing changed
    templates = [meta.dicom[0]] * len(slices) if resampled else meta.dicom
    spacing = DSfloat(float(np.linalg.norm(lps[:3, 2])), auto_format=True)
    series_uid = generate_uid()
    for k, (values, template) in enumerate(zip(slices, templates, strict=True)):
        ds = _with_pixels(template, values, meta.intensity, series_uid, directory)
        origin = lps.copy()
        origin[:3, 3] = lps[:3, 3] + k * lps[:3, 2]
        _set_geometry(ds, template, origin, None)
        ds.InstanceNumber = k + 1
        if ds.get("SpacingBetweenSlices"):
            ds.SpacingBetweenSlices = spacing
        if resampled and ds.get("SliceThickness"):  # a resampled slice is as thick as the spacing
            ds.SliceThickness = spacing
        _save(ds, directory / f"{k + 1:04d}.dcm")


@attrs.frozen(kw_only=True)
class DicomFile(FileFormat):
    """One DICOM image (:func:`read_file`, :func:`write_file`)."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        return read_file(path, percentiles)

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        write_file(path, x, meta)


@attrs.frozen(kw_only=True)
class DicomSeries(FileFormat):
    """A directory of DICOM slices (:func:`read_series`, :func:`write_series`)."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        return read_series(path, percentiles)

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        write_series(path, x, meta)


_LABEL = "DICOM (.dcm, or a directory of slices)"
FORMATS = (
    DicomFile(
        name="dicom",
        label=_LABEL,
        description="DICOM images (.dcm): a radiograph or one slice",
        suffixes=(".dcm",),
    ),
    DicomSeries(
        name="dicom-series",
        label=_LABEL,
        description="DICOM series: a directory of the slices of one series, read as a RAS+ volume",
        directory=True,
    ),
)
