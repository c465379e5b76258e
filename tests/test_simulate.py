"""``brgm simulate``: every registered forward model on an image and a volume, outputs, seeding, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
import typer
from PIL import Image
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from brgm.cli.simulate import parse_size, simulate
from brgm.core import io
from brgm.core.config import build_forward_model
from brgm.core.plugins import registry

ITK_SLICE = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data/BrainProtonDensitySlice.png")
FORWARD_MODELS = registry().names("forward_model")

app = typer.Typer()
app.command()(simulate)
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def expected_measurement(name: str, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return build_forward_model({"fwd": name}).simulate(x, torch.Generator().manual_seed(seed))[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    yy, xx = np.mgrid[0:32, 0:32]
    image = (128 + 90 * np.sin(xx / 4.0) * np.cos(yy / 6.0)).astype(np.uint8)
    path = tmp_path_factory.mktemp("png") / "slice.png"
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def volume(tmp_path_factory) -> Path:
    d, h, w = np.mgrid[0:16, 0:16, 0:16]
    values = (100 + 50 * np.sin(d / 3.0) * np.cos(h / 4.0) + w).astype(np.float32)
    path = tmp_path_factory.mktemp("nifti") / "head.nii.gz"
    nib.save(nib.Nifti1Image(values, np.diag([1.5, 1.5, 2.0, 1.0])), path)
    return path


@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_every_forward_model_on_a_png(tmp_path, png, name):
    result = run(f"fwd={name}", "--input", png, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    x = io.load(png).data
    expected = expected_measurement(name, x)
    if expected.is_complex():
        np.testing.assert_array_equal(np.load(tmp_path / "slice_measurement.npy"), expected.numpy())
    else:  # an 8-bit PNG like the input: rounded and clipped to [0, 1]
        written = io.load(tmp_path / "slice_measurement.png").data[0]
        assert written.shape == expected.shape
        assert float((written - expected.clamp(0, 1)).abs().max()) <= 0.5 / 255 + 1e-6
    assert (tmp_path / "slice_measurement_view.png").is_file()
    record = json.loads((tmp_path / "slice_measurement.json").read_text())
    assert [op["name"] for op in record["fwd"]] == [name]
    assert record["seed"] == 0 and record["measurement"]["shape"] == list(expected.shape)


@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_every_forward_model_on_a_nifti_volume(tmp_path, volume, name):
    result = run(f"fwd={name}", "--input", volume, "--out", tmp_path)
    if 3 not in registry().get("forward_model", name).obj.supported_dims:
        assert result.exit_code == 2 and f"forward model {name!r} accepts 2D inputs" in result.output
        return
    assert result.exit_code == 0, result.output
    expected = expected_measurement(name, io.load(volume).data)
    if expected.is_complex():
        np.testing.assert_array_equal(np.load(tmp_path / "head_measurement.npy"), expected.numpy())
    else:  # float32 NIfTI with the input's affine, re-read on the input's intensity scale
        written = io.load(tmp_path / "head_measurement.nii.gz")
        assert written.meta.intensity.rule == "NIfTI cal_min/cal_max"
        np.testing.assert_allclose(written.data[0].numpy(), expected.numpy(), atol=1e-5)
        zooms = np.array([1.5, 1.5, 2.0]) * 16 / np.array(expected.shape[1:])
        np.testing.assert_allclose(written.meta.voxel_sizes, zooms)


def test_chain_with_noise_is_seeded_and_fitted_input_is_the_truth(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 36, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    args = [
        "fwd=downsample+gaussian_noise",
        "fwd.factor=2",
        "--input",
        tmp_path / "photo.png",
        "--size",
        "32",
    ]
    first = run(*args, "--channels", "1", "--seed", "3", "--out", tmp_path / "a.npy")
    assert first.exit_code == 0, first.output
    assert (
        "centre-cropped 40×36 → 36×36 and resized to 32×32 (Lanczos); converted RGB to grayscale"
        in first.output
    )
    loaded = io.load(tmp_path / "photo.png")
    truth, _, _ = io.fit_to_grid(loaded.data, (32, 32), loaded.meta, channels=1)
    written_truth = io.load(tmp_path / "a_truth.png").data
    assert float((written_truth - truth).abs().max()) <= 0.5 / 255 + 1e-6
    y = np.load(tmp_path / "a.npy")
    assert y.shape == (1, 16, 16)
    operator = build_forward_model({"fwd": "downsample+gaussian_noise", "fwd.factor": "2"})
    expected = operator.simulate(truth, torch.Generator().manual_seed(3))[0]
    np.testing.assert_array_equal(y, expected.numpy())
    assert run(*args, "--channels", "1", "--seed", "3", "--out", tmp_path / "b.npy").exit_code == 0
    assert run(*args, "--channels", "1", "--seed", "4", "--out", tmp_path / "c.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), y)
    assert not np.array_equal(np.load(tmp_path / "c.npy"), y)


def test_dicom_measurement_keeps_the_input_scale(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    result = run("fwd=blur", "--input", source, "--out", tmp_path / "blurred.dcm")
    assert result.exit_code == 0, result.output
    written = io.load(tmp_path / "blurred.dcm")
    original = io.load(source)
    assert written.meta.intensity.rule == "window stored by brgm"
    assert (written.meta.intensity.low, written.meta.intensity.high) == (
        original.meta.intensity.low,
        original.meta.intensity.high,
    )
    expected = expected_measurement("blur", original.data)
    assert float((written.data[0] - expected).abs().max()) <= 0.5 / original.meta.intensity.span + 1e-6
    assert pydicom.dcmread(tmp_path / "blurred.dcm").SOPInstanceUID != pydicom.dcmread(source).SOPInstanceUID


def test_real_brain_slice_super_resolution(tmp_path):
    if not ITK_SLICE.exists():
        pytest.skip(f"{ITK_SLICE} is absent: install the Debian package insighttoolkit5-examples")
    result = run(
        "fwd=blur+downsample", "fwd.factor=4", "--input", ITK_SLICE, "--size", "64", "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    assert io.load(tmp_path / "BrainProtonDensitySlice_measurement.png").data.shape == (1, 1, 16, 16)
    assert io.load(tmp_path / "BrainProtonDensitySlice_measurement_truth.png").data.shape == (1, 1, 64, 64)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no forward model selected: add fwd=NAME"),
        (["fwd=kspce"], "unknown forward model 'kspce' (did you mean 'kspace'?)"),
        (["fwd=blur", "gen=tiny"], "brgm simulate takes fwd=NAME and fwd.KEY=VALUE settings only, got gen"),
        (["fwd=blur", "fwd.sigmaa=2"], "has no parameter 'sigmaa'"),
        (["fwd", "blur"], "expected KEY=VALUE, got 'fwd'"),
    ],
)
def test_bad_settings_exit_with_status_2(tmp_path, png, args, message):
    result = run(*args, "--input", png, "--out", tmp_path)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_bad_inputs_exit_with_status_2(tmp_path, png):
    result = run("fwd=kspace", "--input", png, "--out", tmp_path / "y.png")
    assert (
        result.exit_code == 2 and "complex data (k-space) can only be written to .npy or .pt" in result.output
    )
    np.save(tmp_path / "k.npy", np.ones((4, 4), np.complex64))
    result = run("fwd=blur", "--input", tmp_path / "k.npy", "--out", tmp_path)
    assert (
        result.exit_code == 2
        and "holds complex data (k-space); simulate takes a clean image" in result.output
    )
    result = run("fwd=blur", "--input", tmp_path / "missing.png", "--out", tmp_path)
    assert result.exit_code == 2 and "missing.png: no such file or directory" in result.output
    result = run("fwd=blur", "--input", png, "--out", tmp_path, "--size", "0x4")
    assert result.exit_code == 2 and "--size must be positive integers" in result.output


def test_parse_size():
    assert parse_size("64", 2) == (64, 64)
    assert parse_size("80x96×112", 3) == (80, 96, 112)
    assert parse_size("8, 8", 2) == (8, 8)
