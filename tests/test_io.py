"""brgm.core.io: reading and writing every format, intensity windows, geometry, and fitting to a grid."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from brgm.core import io
from brgm.core.errors import ImageFileError, ShapeError
from tests.test_hostile_checkpoints import (
    BATCH_SECONDS,
    BYTEARRAY,
    FILE_SECONDS,
    MEMORY_CAP,
    hash_bomb,
    torch_zip,
)

MRICRON = Path("/usr/share/mricron/templates")
ITK_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def real_file(path: Path, package: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: install the Debian package {package} (apt-get install {package})")
    return path


def world_values(values: np.ndarray, affine: np.ndarray) -> dict[tuple[float, ...], float]:
    """Every voxel's value keyed by its world position (mm, rounded): equal maps mean equal images in space."""
    index = np.indices(values.shape[:3]).reshape(3, -1)
    world = (affine[:3, :3] @ index + affine[:3, 3:]).T
    return {tuple(np.round(w, 3)): float(v) for w, v in zip(world, values.reshape(-1), strict=True)}


# --- PNG, JPEG, TIFF ---------------------------------------------------------------------------------------


def test_png_8bit_gray_round_trip(tmp_path):
    stored = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
    Image.fromarray(stored).save(tmp_path / "a.png")
    loaded = io.load(tmp_path / "a.png")
    assert loaded.data.shape == (1, 1, 12, 10) and loaded.data.dtype == torch.float32
    np.testing.assert_array_equal(loaded.data[0, 0].numpy(), (stored / 255.0).astype(np.float32))
    assert (loaded.meta.format, loaded.meta.dtype, loaded.meta.intensity.rule) == (
        "png",
        "uint8",
        "8-bit: v / 255",
    )
    io.save(tmp_path / "b.png", loaded.data[0], loaded.meta)
    with Image.open(tmp_path / "b.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), stored)


def test_png_16bit_is_kept_exact(tmp_path):
    stored = np.random.default_rng(0).integers(0, 65536, (9, 7)).astype(np.uint16)
    stored[0, :4] = [0, 1, 65534, 65535]
    Image.fromarray(stored).save(tmp_path / "a.png")
    loaded = io.load(tmp_path / "a.png")
    assert loaded.meta.dtype == "uint16" and loaded.meta.intensity.high == 65535
    np.testing.assert_array_equal(np.rint(loaded.data[0, 0].double().numpy() * 65535), stored)
    io.save(tmp_path / "b.png", loaded.data[0], loaded.meta)
    with Image.open(tmp_path / "b.png") as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(image), stored)


def test_rgb_png_round_trip_and_alpha_dropped(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (6, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = io.load(tmp_path / "a.png")
    assert loaded.data.shape == (1, 3, 6, 5)
    io.save(tmp_path / "b.png", loaded.data[0], loaded.meta)
    with Image.open(tmp_path / "b.png") as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), rgba[..., :3])


def test_palette_png_gray_palette_is_one_channel(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (8, 8)).astype(np.uint8)
    Image.fromarray(gray).convert("P").save(tmp_path / "gray.png")
    colours = Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8, 3)).astype(np.uint8))
    colours.convert("P").save(tmp_path / "colour.png")
    with Image.open(tmp_path / "gray.png") as image:
        expected = np.asarray(image.convert("L"))
    loaded = io.load(tmp_path / "gray.png")
    assert loaded.data.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(np.rint(loaded.data[0, 0].numpy() * 255), expected)
    assert io.load(tmp_path / "colour.png").data.shape == (1, 3, 8, 8)


def test_jpeg_round_trip_is_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=100)
    loaded = io.load(tmp_path / "a.jpg")
    assert (loaded.meta.format, loaded.data.shape) == ("jpeg", (1, 1, 32, 32))
    io.save(tmp_path / "b.jpg", loaded.data[0], loaded.meta)
    again = io.load(tmp_path / "b.jpg")
    assert float((again.data - loaded.data).abs().mean()) < 2 / 255


def test_tiff_float_is_taken_as_stored_and_16bit_exact(tmp_path):
    values = np.array([[-1.0, 0.25], [0.5, 3.5]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    loaded = io.load(tmp_path / "f.tif")
    np.testing.assert_array_equal(loaded.data[0, 0].numpy(), values)
    io.save(tmp_path / "g.tif", loaded.data[0], loaded.meta)
    with Image.open(tmp_path / "g.tif") as image:
        assert image.mode == "F"
        np.testing.assert_array_equal(np.asarray(image), values)
    stored = np.array([[0, 300], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(stored).save(tmp_path / "u.tif")
    loaded = io.load(tmp_path / "u.tif")
    io.save(tmp_path / "v.tif", loaded.data[0], loaded.meta)
    with Image.open(tmp_path / "v.tif") as image:
        np.testing.assert_array_equal(np.asarray(image), stored)


# --- DICOM -------------------------------------------------------------------------------------------------


def test_dicom_file_round_trip_keeps_pixels_and_renews_uids(tmp_path):
    source = get_testdata_file("MR_small.dcm")
    loaded = io.load(source)
    assert loaded.data.shape == (1, 1, 64, 64)
    assert (loaded.meta.intensity.low, loaded.meta.intensity.high) == (127.0, 2145.0)
    assert loaded.meta.voxel_sizes == (0.3125, 0.3125)
    assert float(loaded.data.min()) == 0.0 and float(loaded.data.max()) == 1.0
    io.save(tmp_path / "out.dcm", loaded.data[0], loaded.meta)
    original, written = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "out.dcm")
    np.testing.assert_array_equal(written.pixel_array, original.pixel_array)
    assert written.SOPInstanceUID != original.SOPInstanceUID
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
    assert written.PatientName == original.PatientName
    assert list(written.ImagePositionPatient) == list(original.ImagePositionPatient)
    again = io.load(tmp_path / "out.dcm")
    assert again.meta.intensity.rule == "window stored by brgm"
    assert torch.equal(again.data, loaded.data)


def test_dicom_rescale_gives_hounsfield_units():
    source = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(source)
    loaded = io.load(source)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert loaded.meta.intensity.low == hu.min() and loaded.meta.intensity.high == hu.max()
    np.testing.assert_allclose(loaded.meta.intensity.from_unit(loaded.data[0, 0].numpy()), hu, atol=1e-3)


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    loaded = io.load(tmp_path / "m1.dcm")
    v = ds.pixel_array.astype(np.float64)
    expected = 1 - (v - v.min()) / (v.max() - v.min())
    np.testing.assert_allclose(loaded.data[0, 0].numpy(), expected, atol=1e-6)
    assert loaded.meta.intensity.invert
    io.save(tmp_path / "out.dcm", loaded.data[0], loaded.meta)
    written = pydicom.dcmread(tmp_path / "out.dcm")
    assert written.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_array_equal(written.pixel_array, ds.pixel_array)


def test_dicom_fitted_slice_gets_new_spacing_and_position(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    loaded = io.load(source)
    x, meta, report = io.fit_to_grid(loaded.data, (64, 64), loaded.meta)
    assert report == "resized 128×128 → 64×64 (Lanczos)"
    io.save(tmp_path / "small.dcm", x[0], meta)
    original, written = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "small.dcm")
    spacing = float(original.PixelSpacing[0])
    assert (written.Rows, written.Columns) == (64, 64)
    np.testing.assert_allclose(
        [float(v) for v in written.PixelSpacing], [2 * spacing, 2 * spacing], rtol=1e-9
    )
    # the first new pixel's centre lies half an old pixel along the row and the column from the old one's
    shift = np.array([0.5 * spacing, 0.5 * spacing, 0.0])
    expected = np.asarray([float(v) for v in original.ImagePositionPatient]) + shift
    np.testing.assert_allclose([float(v) for v in written.ImagePositionPatient], expected, atol=1e-6)


def make_series(directory: Path, hu: np.ndarray, *, angle: float = 0.0, order=None, uid=None) -> np.ndarray:
    """Write ``hu [slices, rows, cols]`` as CT slices (files in a shuffled order); return the LPS positions."""
    directory.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = uid or generate_uid()
    c, s = np.cos(angle), np.sin(angle)
    along_row, along_col = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    positions = np.array([[10.0, 20.0, 30.0 + 2.5 * k] for k in range(len(hu))])
    order = order if order is not None else np.random.default_rng(0).permutation(len(hu))
    for name, k in enumerate(order):
        ds = copy.deepcopy(template)
        ds.set_pixel_data((hu[k] + 1024).astype(np.int16), "MONOCHROME2", 16)
        ds.SeriesInstanceUID = uid
        ds.ImagePositionPatient = list(positions[k])
        ds.ImageOrientationPatient = [*along_row, *along_col]
        ds.PixelSpacing = [0.5, 0.75]
        ds.save_as(directory / f"slice{name}.dcm", enforce_file_format=True)
    return positions


def series_world_values(hu: np.ndarray, positions: np.ndarray, angle: float) -> dict:
    c, s = np.cos(angle), np.sin(angle)
    along_row, along_col = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    out = {}
    for k, r, col in np.ndindex(*hu.shape):
        lps = positions[k] + col * 0.75 * along_row + r * 0.5 * along_col
        out[tuple(np.round(LPS_RAS @ lps, 3))] = float(hu[k, r, col])
    return out


@pytest.mark.parametrize("angle", [0.0, np.pi / 6])
def test_dicom_series_is_sorted_along_the_normal_with_its_affine(tmp_path, angle):
    hu = np.random.default_rng(4).integers(-1000, 2000, (5, 6, 7)).astype(np.float64)
    positions = make_series(tmp_path / "series", hu, angle=angle)
    (tmp_path / "series" / "README").write_text("not DICOM")
    loaded = io.load(tmp_path / "series")
    meta = loaded.meta
    assert meta.format == "dicom-series" and meta.original_shape == (5, 6, 7)
    assert loaded.data.shape == (1, 1, *meta.spatial_shape)
    assert nib.aff2axcodes(meta.affine) == ("R", "A", "S")
    values = meta.intensity.from_unit(loaded.data[0, 0].double().numpy())
    got = world_values(np.rint(values), meta.affine)
    assert got == series_world_values(hu, positions, angle)


def test_dicom_series_round_trip(tmp_path):
    hu = np.random.default_rng(5).integers(-1000, 2000, (4, 5, 6)).astype(np.float64)
    make_series(tmp_path / "series", hu)
    loaded = io.load(tmp_path / "series")
    io.save(tmp_path / "out", loaded.data[0], loaded.meta)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["0001.dcm", "0002.dcm", "0003.dcm", "0004.dcm"]
    written = [pydicom.dcmread(tmp_path / "out" / f) for f in files]
    assert (
        len({ds.SOPInstanceUID for ds in written}) == 4 and len({ds.SeriesInstanceUID for ds in written}) == 1
    )
    np.testing.assert_array_equal(np.stack([ds.pixel_array for ds in written]) - 1024, hu)
    again = io.load(tmp_path / "out")
    assert torch.equal(again.data, loaded.data)
    np.testing.assert_allclose(again.meta.affine, loaded.meta.affine, atol=1e-9)
    io.save(tmp_path / "out", loaded.data[0], loaded.meta)  # replaces its own earlier series
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_dicom_series_on_another_grid_gets_its_slice_thickness(tmp_path):
    hu = np.random.default_rng(6).integers(-1000, 2000, (4, 5, 6)).astype(np.float64)
    make_series(tmp_path / "series", hu)  # slices 2.5 mm apart, the template's thickness 5 mm
    loaded = io.load(tmp_path / "series")
    io.save(tmp_path / "same", loaded.data[0], loaded.meta)
    assert {float(pydicom.dcmread(p).SliceThickness) for p in (tmp_path / "same").iterdir()} == {5.0}
    x, meta, _ = io.fit_to_grid(loaded.data, (6, 5, 7), loaded.meta)  # the slice axis 4 -> 7
    io.save(tmp_path / "fitted", x[0], meta)
    written = [pydicom.dcmread(p) for p in sorted((tmp_path / "fitted").iterdir())]
    assert len(written) == 7
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in written])
    spacing = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    np.testing.assert_allclose(spacing, 2.5 * 4 / 7, rtol=1e-6)
    for ds in written:
        assert float(ds.SliceThickness) == pytest.approx(2.5 * 4 / 7, rel=1e-6)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(2.5 * 4 / 7, rel=1e-6)


def test_dicom_series_errors(tmp_path):
    hu = np.zeros((3, 4, 4))
    make_series(tmp_path / "two", hu, uid="1.2.3")
    make_series(tmp_path / "other", hu, uid="1.2.4")
    (tmp_path / "other" / "slice0.dcm").rename(tmp_path / "two" / "extra.dcm")
    with pytest.raises(
        ImageFileError, match=r"holds 2 DICOM series; put one series per directory: 1\.2\.3 \(3"
    ):
        io.load(tmp_path / "two")
    make_series(tmp_path / "gap", hu, order=[0, 1, 2])
    ds = pydicom.dcmread(tmp_path / "gap" / "slice2.dcm")
    ds.ImagePositionPatient = [10.0, 20.0, 40.0]
    ds.save_as(tmp_path / "gap" / "slice2.dcm")
    with pytest.raises(ImageFileError, match="not evenly spaced"):
        io.load(tmp_path / "gap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFileError, match="no DICOM images in the directory"):
        io.load(tmp_path / "empty")


def test_dicom_file_errors(tmp_path):
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 200)
    with pytest.raises(ImageFileError, match=r"fake\.dcm: not a DICOM file"):
        io.load(tmp_path / "fake.dcm")
    with pytest.raises(ImageFileError, match=r"multi-frame DICOM \(30 frames\) is not supported"):
        io.load(get_testdata_file("examples_ybr_color.dcm"))
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    loaded = io.load(png)
    with pytest.raises(ImageFileError, match="writing a DICOM file needs a DICOM image as input"):
        io.save(tmp_path / "out.dcm", loaded.data[0], loaded.meta)


# --- NIfTI -------------------------------------------------------------------------------------------------


def test_nifti_is_read_in_ras_order_and_written_back_exactly(tmp_path):
    stored = np.random.default_rng(6).integers(-200, 3000, (6, 5, 4)).astype(np.int16)
    affine = np.array([[-2.0, 0, 0, 40], [0, 0, 3.0, -10], [0, -1.5, 0, 25], [0, 0, 0, 1]])  # L, I, A axes
    nib.save(nib.Nifti1Image(stored, affine), tmp_path / "v.nii.gz")
    loaded = io.load(tmp_path / "v.nii.gz")
    meta = loaded.meta
    assert meta.spatial_shape == (6, 4, 5) and nib.aff2axcodes(meta.affine) == ("R", "A", "S")
    assert meta.voxel_sizes == (2.0, 3.0, 1.5)
    assert (meta.intensity.low, meta.intensity.high) == (float(stored.min()), float(stored.max()))
    values = np.rint(meta.intensity.from_unit(loaded.data[0, 0].double().numpy()))
    assert world_values(values, meta.affine) == world_values(stored, affine)
    io.save(tmp_path / "w.nii.gz", loaded.data[0], meta)
    written = nib.load(tmp_path / "w.nii.gz")
    np.testing.assert_array_equal(np.asarray(written.dataobj), stored)
    np.testing.assert_array_equal(written.affine, affine)
    assert written.header.get_zooms() == (2.0, 1.5, 3.0)  # the file's axis order
    assert written.get_data_dtype() == np.int16
    assert (written.header["cal_min"], written.header["cal_max"]) == (stored.min(), stored.max())


def test_nifti_cal_range_is_the_window_and_4d_is_refused(tmp_path):
    image = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
    image.header["cal_min"], image.header["cal_max"] = 0.0, 46.0
    nib.save(image, tmp_path / "cal.nii")
    loaded = io.load(tmp_path / "cal.nii")
    assert loaded.meta.intensity.rule == "NIfTI cal_min/cal_max"
    assert float(loaded.data.max()) == pytest.approx(0.5)
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.int16), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(ImageFileError) as refused:
        io.load(tmp_path / "4d.nii")
    assert str(refused.value) == (  # the file is readable: the message says only what is wrong with it
        f"{tmp_path / '4d.nii'}: brgm reads one 3D volume, this NIfTI has shape [2, 3, 4, 2]; "
        "extract one volume first (e.g. nibabel.funcs.four_to_three)"
    )


def test_percentile_window_clips(tmp_path):
    stored = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    nib.save(nib.Nifti1Image(stored, np.eye(4)), tmp_path / "v.nii")
    loaded = io.load(tmp_path / "v.nii", percentiles=(1.0, 99.0))
    assert loaded.meta.intensity.clip
    assert loaded.meta.intensity.low == pytest.approx(9.99) and loaded.meta.intensity.high == pytest.approx(
        989.01
    )
    assert float(loaded.data.min()) == 0.0 and float(loaded.data.max()) == 1.0
    assert int((loaded.data == 0).sum()) == 10 and int((loaded.data == 1).sum()) == 10


def volume_with_holes(bad: float) -> tuple[np.ndarray, np.ndarray]:
    """A 16³ float volume (4096 voxels) with a 3×3×3 block (27 voxels) set to ``bad``, and the block's mask."""
    stored = np.random.default_rng(8).uniform(100.0, 500.0, (16, 16, 16)).astype(np.float32)
    holes = np.zeros(stored.shape, dtype=bool)
    holes[4:7, 5:8, 6:9] = True
    stored[holes] = bad
    return stored, holes


@pytest.mark.parametrize("percentiles", [None, (1.0, 99.0)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nifti_non_finite_voxels_are_missing(tmp_path, bad, percentiles):
    stored, holes = volume_with_holes(bad)
    nib.save(nib.Nifti1Image(stored, np.eye(4)), tmp_path / "holes.nii.gz")
    with pytest.warns(UserWarning, match=r"holes\.nii\.gz: 27 of 4096 values are not finite"):
        loaded = io.load(tmp_path / "holes.nii.gz", percentiles=percentiles)
    finite = stored[~holes]
    window = (finite.min(), finite.max()) if percentiles is None else np.percentile(finite, percentiles)
    intensity = loaded.meta.intensity
    assert (intensity.low, intensity.high) == pytest.approx(tuple(float(w) for w in window))
    data = loaded.data[0, 0].numpy()
    assert np.isfinite(data).all() and (data[holes] == 0).all()
    np.testing.assert_array_equal(data[~holes], intensity.to_unit(finite))


# --- arrays ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_complex_kspace_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(7)
    kspace = (rng.standard_normal((2, 6, 5)) + 1j * rng.standard_normal((2, 6, 5))).astype(np.complex64)
    path = tmp_path / f"k{suffix}"
    if suffix == ".npy":
        np.save(path, kspace)
    else:
        torch.save(torch.from_numpy(kspace), path)
    loaded = io.load(path)
    assert loaded.data.dtype == torch.complex64 and loaded.data.shape == (1, 2, 6, 5)
    assert loaded.meta.intensity is None
    np.testing.assert_array_equal(loaded.data[0].numpy(), kspace)
    assert io.output_suffix(loaded.meta, is_complex=True) == suffix
    io.save(tmp_path / f"out{suffix}", loaded.data[0], loaded.meta)
    assert torch.equal(io.load(tmp_path / f"out{suffix}").data, loaded.data)
    with pytest.raises(
        ImageFileError, match=r"complex data \(k-space\) can only be written to \.npy or \.pt"
    ):
        io.save(tmp_path / "out.png", loaded.data[0], loaded.meta)


def test_array_layouts_and_values_as_stored(tmp_path):
    np.save(tmp_path / "image.npy", np.array([[0.5, 1.5], [-0.25, 0.0]]))
    loaded = io.load(tmp_path / "image.npy")
    assert loaded.data.shape == (1, 1, 2, 2) and loaded.data.dtype == torch.float32
    assert loaded.data[0, 0].tolist() == [[0.5, 1.5], [-0.25, 0.0]]
    np.save(tmp_path / "volume.npy", np.zeros((1, 3, 4, 5)))
    assert io.load(tmp_path / "volume.npy").data.shape == (1, 1, 3, 4, 5)
    np.save(tmp_path / "bad.npy", np.zeros((2, 1, 3, 4, 5)))
    with pytest.raises(
        ImageFileError, match=r"bad\.npy: an array of shape \[2, 1, 3, 4, 5\] is not an image"
    ):
        io.load(tmp_path / "bad.npy")


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_array_non_finite_values_are_missing_and_all_missing_is_refused(tmp_path, suffix):
    values = np.full((4, 5), 0.5, dtype=np.float32)
    values[0, :3] = [np.nan, np.inf, -np.inf]
    path = tmp_path / f"holes{suffix}"
    save = np.save if suffix == ".npy" else lambda p, a: torch.save(torch.from_numpy(a), p)
    save(path, values)
    with pytest.warns(UserWarning, match=rf"holes\{suffix}: 3 of 20 values are not finite .* set to 0"):
        data = io.load(path).data[0, 0]
    expected = np.full((4, 5), 0.5, dtype=np.float32)
    expected[0, :3] = 0.0
    np.testing.assert_array_equal(data.numpy(), expected)
    save(tmp_path / f"empty{suffix}", np.full((2, 3, 4), np.nan, dtype=np.float32))
    with pytest.raises(ImageFileError, match=rf"empty\{suffix}: all 24 values are not finite"):
        io.load(tmp_path / f"empty{suffix}")


def test_all_non_finite_nifti_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), np.nan, np.float32), np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(ImageFileError, match=r"nan\.nii: all 64 values are not finite"):
        io.load(tmp_path / "nan.nii")


executed = []


class Payload:
    def __reduce__(self):
        return (executed.append, ("ran",))


def test_pickles_are_never_executed(tmp_path):
    np.save(tmp_path / "object.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(ImageFileError, match=r"object\.npy: not a readable \.npy array"):
        io.load(tmp_path / "object.npy")
    torch.save({"x": Payload()}, tmp_path / "code.pt")
    with pytest.raises(ImageFileError, match=r"code\.pt: not a readable \.pt array"):
        io.load(tmp_path / "code.pt")
    assert executed == []
    torch.save({"x": torch.zeros(2, 2)}, tmp_path / "dict.pt")
    with pytest.raises(ImageFileError, match=r"expected one tensor in the \.pt file, got a dict"):
        io.load(tmp_path / "dict.pt")


#: loads each file given with brgm.core.io.load under an address-space cap, printing how it ended and how long it took
HOSTILE_LOADER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from brgm.core import io
from brgm.core.errors import ImageFileError
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        io.load(path)
        outcome = "loaded"
    except ImageFileError:
        outcome = "ImageFileError"
    except BaseException as err:
        outcome = type(err).__name__
    print(outcome, f"{{time.perf_counter() - start:.2f}}", flush=True)
"""


def test_hostile_pt_inputs_are_image_file_errors_within_seconds(tmp_path):
    """A hash bomb, ``bytearray(2**40)`` and a stride-0 view of 4 bytes as 16 GiB end in ImageFileError within
    seconds and bounded memory (torch's weights-only loader alone hangs or allocates on each)."""
    (tmp_path / "hash-bomb.pt").write_bytes(torch_zip(hash_bomb()))
    (tmp_path / "bytearray.pt").write_bytes(torch_zip(BYTEARRAY))
    torch.save(torch.zeros(1).expand(1 << 16, 1 << 16), tmp_path / "view.pt")
    paths = [str(tmp_path / name) for name in ("hash-bomb.pt", "bytearray.pt", "view.pt")]
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE_LOADER.format(cap=MEMORY_CAP), *paths],
        capture_output=True,
        text=True,
        timeout=BATCH_SECONDS,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    outcomes = [line.split() for line in proc.stdout.splitlines()]
    assert len(outcomes) == len(paths), proc.stderr[-2000:]
    for path, (outcome, seconds) in zip(paths, outcomes, strict=True):
        assert outcome == "ImageFileError", Path(path).name
        assert float(seconds) < FILE_SECONDS, Path(path).name


def test_unknown_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ImageFileError, match=r"nope\.png: no such file or directory"):
        io.load(tmp_path / "nope.png")
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(ImageFileError, match=r"unknown file type '\.bmp'; brgm reads PNG, JPEG, TIFF, DICOM"):
        io.load(tmp_path / "a.bmp")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageFileError, match=r"broken\.png: not a readable PNG image"):
        io.load(tmp_path / "broken.png")
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(ImageFileError, match=r"broken\.nii\.gz: not a readable NIfTI file"):
        io.load(tmp_path / "broken.nii.gz")


def test_split_suffix():
    assert io.split_suffix("a/scan.NII.GZ") == (Path("a/scan"), ".nii.gz")
    assert io.split_suffix("y.npy") == (Path("y"), ".npy")
    assert io.split_suffix("runs/out") == (Path("runs/out"), "")


# --- fit_to_grid and back_to_input_grid --------------------------------------------------------------------


def png_meta(tmp_path, array: np.ndarray) -> io.Loaded:
    Image.fromarray(array).save(tmp_path / "in.png")
    return io.load(tmp_path / "in.png")


def test_fit_crops_and_resizes_like_brgm_pytorch(tmp_path):
    rgb = np.random.default_rng(8).integers(0, 256, (300, 256, 3)).astype(np.uint8)
    loaded = png_meta(tmp_path, rgb)
    x, meta, report = io.fit_to_grid(loaded.data, (64, 64), loaded.meta)
    assert report == "centre-cropped 300×256 → 256×256 and resized to 64×64 (Lanczos)"
    assert x.shape == (1, 3, 64, 64) and meta.spatial_shape == (64, 64)
    assert (meta.fit.crop_start, meta.fit.crop_size) == ((22, 0), (256, 256))
    # BRGM-PyTorch: PIL crop to the centred square, then LANCZOS on the 8-bit image
    reference = np.asarray(Image.fromarray(rgb).crop((0, 22, 256, 278)).resize((64, 64), Image.LANCZOS))
    assert np.abs(x[0].permute(1, 2, 0).numpy() * 255 - reference).max() < 1.0


def test_fit_converts_channels_and_reports_it(tmp_path):
    rgb = np.random.default_rng(9).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    loaded = png_meta(tmp_path, rgb)
    gray, meta, report = io.fit_to_grid(loaded.data, (16, 16), loaded.meta, channels=1)
    assert report == "converted RGB to grayscale (luminance)"
    assert np.abs(gray[0, 0].numpy() * 255 - np.asarray(Image.fromarray(rgb).convert("L"))).max() < 1.0
    back, source = io.back_to_input_grid(gray, meta)
    assert back.shape == (1, 3, 16, 16) and source is loaded.meta
    repeated, _, report = io.fit_to_grid(gray, (16, 16), meta, channels=3)
    assert report == "repeated grayscale to 3 channels" and torch.equal(repeated, gray.repeat(1, 3, 1, 1))
    with pytest.raises(ShapeError, match="has 3 channels and 2 are needed"):
        io.fit_to_grid(loaded.data, (16, 16), loaded.meta, channels=2)


def test_fit_is_a_no_op_on_the_right_grid_and_crop_inverts(tmp_path):
    loaded = png_meta(tmp_path, np.random.default_rng(10).integers(0, 256, (70, 64)).astype(np.uint8))
    same, meta, report = io.fit_to_grid(loaded.data, (70, 64), loaded.meta)
    assert report == "" and meta is loaded.meta and same is loaded.data
    x, meta, report = io.fit_to_grid(loaded.data, (64, 64), loaded.meta)
    assert report == "centre-cropped 70×64 → 64×64"
    assert torch.equal(x, loaded.data[..., 3:67, :])
    back, source = io.back_to_input_grid(x, meta)
    assert source is loaded.meta and back.shape == (1, 1, 70, 64)
    assert torch.equal(back[..., 3:67, :], x)
    assert not back[..., :3, :].any() and not back[..., 67:, :].any()


def test_fit_volume_resamples_and_keeps_world_positions(tmp_path):
    d, h, w = np.meshgrid(np.arange(8.0), np.arange(8.0), np.arange(8.0), indexing="ij")
    affine = np.array([[2.0, 0, 0, -7], [0, 1.0, 0, 3], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    ramp = (d + 2 * h + 3 * w).astype(np.float32)  # linear, so trilinear resampling is exact
    nib.save(nib.Nifti1Image(ramp, affine), tmp_path / "ramp.nii")
    loaded = io.load(tmp_path / "ramp.nii")
    x, meta, report = io.fit_to_grid(loaded.data, (4, 4, 4), loaded.meta)
    assert report == "resampled 8×8×8 → 4×4×4 (trilinear), voxels 2×1×3 mm → 4×2×6 mm"
    assert meta.voxel_sizes == (4.0, 2.0, 6.0)
    # every new voxel holds the input's ramp at the new voxel's world position
    index = np.indices((4, 4, 4)).reshape(3, -1)
    old_index = np.linalg.solve(affine, meta.affine @ np.vstack([index, np.ones(64)]))[:3]
    expected = meta.intensity.to_unit(old_index[0] + 2 * old_index[1] + 3 * old_index[2]).reshape(4, 4, 4)
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-6)
    back, source = io.back_to_input_grid(x, meta)
    assert back.shape == (1, 1, 8, 8, 8) and source is loaded.meta


def test_fit_errors(tmp_path):
    loaded = png_meta(tmp_path, np.zeros((8, 8), np.uint8))
    with pytest.raises(
        ShapeError, match=r"in\.png: a 2D input \(8×8\) does not fit a 3D generator \(4×4×4\)"
    ):
        io.fit_to_grid(loaded.data, (4, 4, 4), loaded.meta)
    with pytest.raises(ShapeError, match=r"complex data \(k-space\) cannot be fitted"):
        io.fit_to_grid(loaded.data.to(torch.complex64), (4, 4), loaded.meta)


# --- real data from Debian and pip packages ----------------------------------------------------------------


def test_colin27_t1_volume():
    loaded = io.load(real_file(MRICRON / "ch2.nii.gz", "mricron-data"))
    assert loaded.data.shape == (1, 1, 181, 217, 181)
    assert loaded.meta.voxel_sizes == (1.0, 1.0, 1.0) and nib.aff2axcodes(loaded.meta.affine) == (
        "R",
        "A",
        "S",
    )
    assert (loaded.meta.intensity.low, loaded.meta.intensity.high) == (0.0, 254.0)
    x, _, report = io.fit_to_grid(loaded.data, (32, 32, 32), loaded.meta)
    assert report == "resampled 181×217×181 → 32×32×32 (trilinear), voxels 1×1×1 mm → 5.66×6.78×5.66 mm"
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_itk_t1_head_volume_round_trip(tmp_path):
    path = real_file(ITK_DATA / "KmeansTest_T1UCharRaw.nii.gz", "insighttoolkit5-examples")
    loaded = io.load(path)
    assert loaded.meta.spatial_shape == (128, 62, 128) and loaded.meta.voxel_sizes == (2.0, 3.0, 2.0)
    io.save(tmp_path / "copy.nii.gz", loaded.data[0], loaded.meta)
    original, written = nib.load(path), nib.load(tmp_path / "copy.nii.gz")
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))
    np.testing.assert_array_equal(written.affine, original.affine)
    assert nib.aff2axcodes(written.affine) == ("L", "S", "A")


def test_itk_brainweb_palette_slice():
    loaded = io.load(real_file(ITK_DATA / "BrainProtonDensitySlice.png", "insighttoolkit5-examples"))
    assert loaded.data.shape == (1, 1, 217, 181)
    _, _, report = io.fit_to_grid(loaded.data, (64, 64), loaded.meta)
    assert report == "centre-cropped 217×181 → 181×181 and resized to 64×64 (Lanczos)"


def test_chest_radiograph_from_pydicom_data():
    if importlib.util.find_spec("data_store") is None:
        pytest.skip("pip package pydicom-data (the NEMA chest radiograph RG1_UNCR.dcm) is not installed")
    loaded = io.load(get_testdata_file("RG1_UNCR.dcm"))
    assert loaded.data.shape == (1, 1, 1955, 1841)
    assert loaded.meta.intensity.invert  # MONOCHROME1
