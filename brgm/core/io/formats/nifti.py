"""NIfTI-1 and NIfTI-2 volumes (``.nii``, ``.nii.gz``) through nibabel.

Axis order: a volume is reoriented to the closest canonical RAS+ orientation (axes permuted and flipped as
nibabel's ``as_closest_canonical`` does, never resampled), so ``[D, H, W]`` is (x: left → right,
y: posterior → anterior, z: inferior → superior) and ``x[..., d, :, :]`` is a sagittal, ``x[..., :, h, :]`` a
coronal and ``x[..., :, :, w]`` an axial slice. That is the array order 3D-StyleGAN trained on (MNI-space volumes
read with nibabel). The affine is updated with the data, so every voxel keeps its world position; writing undoes
the reorientation, so an output has the input's axis order, affine, voxel sizes and header.

Intensities: the header's ``cal_min``/``cal_max`` display range when it is set (brgm writes it, so that
measurements and reconstructions re-read on their input's scale), else the data's min–max after
``scl_slope``/``scl_inter``, or a percentile window on request.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError as NibabelFileError
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from brgm.core.errors import ImageFileError
from brgm.core.io.formats import FileFormat
from brgm.core.io.formats.meta import AS_STORED, Intensity, Meta, data_window


def to_canonical(values: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` (the first three axes spatial) and ``affine`` in RAS+ order, with the orientation applied."""
    orientation = io_orientation(affine)
    canonical = apply_orientation(values, orientation)
    return canonical, affine @ inv_ornt_aff(orientation, values.shape[:3]), orientation


def from_canonical(
    values: np.ndarray, affine: np.ndarray, orientation: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Undo :func:`to_canonical`: the file's axis order for ``values`` and ``affine`` (unchanged when
    ``orientation`` is None)."""
    if orientation is None:
        return values, affine
    back = ornt_transform(axcodes2ornt("RAS"), orientation)
    return apply_orientation(values, back), affine @ inv_ornt_aff(back, values.shape[:3])


def voxel_sizes(affine: np.ndarray) -> tuple[float, ...]:
    """The length of each index step of ``affine`` in mm."""
    return tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


def read(path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
    """A 3D volume -> ``[1, D, H, W]`` intensities in RAS+ order and its :class:`Meta`."""
    try:
        image = nib.load(path)
    except (NibabelFileError, OSError, EOFError, ValueError) as err:
        raise ImageFileError(f"{path}: not a readable NIfTI file ({err})") from None
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageFileError(
            f"{path}: brgm reads one 3D volume, this NIfTI has shape {list(image.shape)}; "
            "extract one volume first (e.g. nibabel.funcs.four_to_three)"
        )
    try:
        stored = np.asarray(image.dataobj).reshape(shape)
    except (OSError, EOFError, ValueError) as err:
        raise ImageFileError(f"{path}: not a readable NIfTI file ({err})") from None
    values, affine, orientation = to_canonical(stored, image.affine)
    header = image.header.copy()
    cal = float(header["cal_min"]), float(header["cal_max"])
    if cal[1] > cal[0] and percentiles is None:
        intensity = Intensity(*cal, rule="NIfTI cal_min/cal_max")
    else:
        intensity = data_window(values, percentiles=percentiles)
    meta = Meta(
        path=path,
        format="nifti",
        original_shape=tuple(image.shape),
        dtype=stored.dtype.name,
        spatial_shape=tuple(values.shape),
        affine=affine,
        voxel_sizes=voxel_sizes(affine),
        intensity=intensity,
        nifti_header=header,
        orientation=orientation,
    )
    return intensity.to_unit(values)[None], meta


def write(path: Path, x: np.ndarray, meta: Meta) -> None:
    """Write ``x [1, D, H, W]`` (intensities on ``meta``'s grid) in the input's axis order and stored type
    (integers rounded and clipped to the type, otherwise float32)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ImageFileError(
            f"{path}: NIfTI output takes one-channel volumes [1, D, H, W], got {list(x.shape)}"
        )
    intensity = meta.intensity or AS_STORED
    affine = meta.affine
    if affine is None:
        affine = np.diag([*(meta.voxel_sizes or (1.0, 1.0, 1.0)), 1.0])
    values, affine = from_canonical(intensity.from_unit(x[0]), affine, meta.orientation)
    dtype = np.dtype(meta.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        stored = np.clip(np.rint(values), info.min, info.max).astype(dtype.newbyteorder("="))
    else:
        stored = values.astype(np.float32)
    header = meta.nifti_header.copy() if meta.nifti_header is not None else nib.Nifti1Header()
    header.set_data_dtype(stored.dtype)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(stored, affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = intensity.low, intensity.high
    try:
        nib.save(image, path)
    except OSError as err:
        raise ImageFileError(f"{path}: cannot write the NIfTI file ({err})") from None


@attrs.frozen(kw_only=True)
class NiftiFormat(FileFormat):
    """NIfTI-1 and NIfTI-2 volumes (:func:`read`, :func:`write`)."""

    def read(self, path: Path, percentiles: tuple[float, float] | None) -> tuple[np.ndarray, Meta]:
        return read(path, percentiles)

    def write(self, path: Path, x: np.ndarray, meta: Meta) -> None:
        write(path, x, meta)


FORMAT = NiftiFormat(
    name="nifti",
    label="NIfTI (.nii, .nii.gz)",
    description="NIfTI-1/2 volumes (.nii, .nii.gz), read in RAS+ order",
    suffixes=(".nii", ".nii.gz"),
    output_suffix=".nii.gz",
)
