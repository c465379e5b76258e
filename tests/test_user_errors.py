"""Inputs a new user tries (issue 31): each ends in a clear one-line error (exit status 2 on the command line, a
:class:`~brgm.core.errors.BrgmError` from the Python API) naming the parameter or the file and what is
accepted, or in a result; no input is solved and then fails on writing, and the run's counts equal its files."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from brgm.cli.app import app
from brgm.core import io
from brgm.core.errors import ConfigError, ImageFileError, ShapeError, WeightsNotFoundError
from brgm.core.noise_level import ABSOLUTE_SIGMA_FLOOR, floored

runner = CliRunner()
TINY = ["gen=tiny", "fwd=test_scale", "like=test_sse", "prior=none", "solver.steps=3"]


def compose(*args: str):
    return runner.invoke(app, ["compose", *args])


def png(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def said(result) -> str:
    """What a command printed, its lines (wrapped by the console) joined."""
    return " ".join(result.output.split())


def record(out: Path, key: str) -> dict:
    return json.loads((out / "records" / f"{key}.json").read_text())


# --- files ----------------------------------------------------------------------------------------------------


def test_a_colour_dicom_is_reconstructed_in_gray_and_written_as_monochrome(tmp_path) -> None:
    source = get_testdata_file("SC_rgb_small_odd.dcm")
    result = compose(*TINY, "-i", source, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "failed.json").read_text()) == {}
    assert "converted RGB to grayscale (luminance)" in " ".join(record(tmp_path, "SC_rgb_small_odd")["notes"])
    for name in ("recon", "baseline"):
        written = pydicom.dcmread(tmp_path / f"SC_rgb_small_odd_{name}.dcm")
        assert (written.PhotometricInterpretation, written.SamplesPerPixel) == ("MONOCHROME2", 1)
        assert written.pixel_array.shape == (8, 8)


def test_an_input_whose_outputs_cannot_be_written_is_refused_before_the_solve(tmp_path) -> None:
    source = get_testdata_file("rtdose_1frame.dcm")  # 32-bit pixel data, which brgm does not write
    result = compose(
        *TINY, "-i", source, "-i", str(png(tmp_path / "fine.png")), "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 1, result.output
    failed = record(tmp_path / "out", "rtdose_1frame")
    assert failed["stage"] == "prepare"
    assert failed["error"] == (
        f"{source}: its reconstruction cannot be written in its format (dicom): writing 32-bit DICOM pixel "
        "data is not supported (8 or 16 bits)"
    )
    assert json.loads((tmp_path / "out" / "failed.json").read_text()) == {source: failed["error"]}
    assert "wrote 1 reconstruction(s)" in said(result)


def test_a_write_error_names_the_output_not_its_temporary_file(tmp_path) -> None:
    loaded = io.load(get_testdata_file("CT_small.dcm"))  # one sample per pixel
    dest = tmp_path / "colour.dcm"
    with pytest.raises(ImageFileError) as refused:
        io.save(dest, torch.zeros(3, 128, 128), loaded.meta)
    assert str(refused.value) == (
        f"{dest}: the DICOM template has 1 sample(s) per pixel, the image has 3 channel(s)"
    )
    assert list(tmp_path.iterdir()) == []


# --- counts ---------------------------------------------------------------------------------------------------


def test_the_run_summary_counts_equal_the_files_on_disk(tmp_path) -> None:
    np.save(tmp_path / "huge.npy", np.full((1, 8, 8), 1e30, np.float32))  # its energy overflows in the solve
    good = [png(tmp_path / f"fine{k}.png", k) for k in range(2)]
    inputs = [arg for path in (tmp_path / "huge.npy", *good) for arg in ("-i", str(path))]
    out = tmp_path / "out"
    result = compose(*TINY, "solver.batch_size=1", *inputs, "--out", str(out))
    assert result.exit_code == 1, result.output
    assert record(out, "huge")["stage"] == "solve"
    assert "wrote 2 reconstruction(s)" in said(result) and "1 input(s) failed" in said(result)
    assert sorted(p.name for p in out.glob("*_recon.*")) == ["fine0_recon.png", "fine1_recon.png"]
    assert sorted(json.loads((out / "metrics.json").read_text())) == ["fine0", "fine1"]
    assert list(json.loads((out / "failed.json").read_text())) == [str(tmp_path / "huge.npy")]


def test_a_measurement_of_zeros_gets_the_absolute_sigma_floor_and_is_reconstructed(tmp_path) -> None:
    y = torch.zeros(2, 1, 4, 4)
    y[1] = 0.5
    assert floored(torch.zeros(2), y).tolist() == pytest.approx([ABSOLUTE_SIGMA_FLOOR, 0.5e-3])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), tmp_path / "zeros.nii.gz")
    args = ["gen=tiny", "gen.depth=8", "fwd=test_scale", "prior=none", "solver.steps=3"]
    result = compose(*args, "-i", str(tmp_path / "zeros.nii.gz"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    noise = json.loads((tmp_path / "out" / "metrics.json").read_text())["zeros"]["noise"]
    assert noise["sigma"] == 0 and noise["energy_sigma"] == pytest.approx(ABSOLUTE_SIGMA_FLOOR)
    assert (tmp_path / "out" / "zeros_recon.nii.gz").is_file()


# --- sampler settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["solver=langevin", "solver.samples=100", "solver.chains=2", "--steps", "8"],
            "solver: samples=100 over chains=2 keeps 50 draws per chain, which needs as many sampling steps after "
            "warm-up; steps=8 with warmup=0.45 leaves 5: accepted samples up to 10, or more steps",
        ),
        (["solver=vi", "solver.rank=4096", "--steps", "8"], "solver: rank must be in [0, 64], got 4096"),
    ],
)
def test_sampler_settings_that_cannot_work_exit_2_with_the_accepted_range(settings, message) -> None:
    result = compose("gen=tiny", "fwd=test_scale", *settings, "--dry-run")
    assert result.exit_code == 2, result.output
    assert message in said(result)


def test_langevin_takes_as_many_draws_per_chain_as_sampling_steps() -> None:
    from brgm.plugins.solvers.langevin import LangevinSolver

    solver = LangevinSolver(steps=8, chains=2, samples=10)
    assert solver.keep_steps == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match=r"steps=9 with warmup=0\.45 leaves 5: accepted samples up to 10,"):
        LangevinSolver(steps=9, chains=2, samples=12)


# --- the Python API -------------------------------------------------------------------------------------------

FWD = "fwd: expected a forward model name, 'a+b', a ForwardModel or a list of them"
PRIOR = "prior: expected prior names ('gaussian'), 'a+b', 'none', Prior instances or a list of them"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"gen": 5}, "gen: expected a generator name, a checkpoint path or a Generator, got int 5"),
        ({"fwd": ["test_scale", 3]}, f"{FWD}, got int 3"),
        ({"priors": 7}, f"{PRIOR}, got int 7"),
        ({"priors": [None]}, f"{PRIOR}, got NoneType None"),
        (
            {"likelihoods": [3.5]},
            "like: expected likelihood names ('pixel'), 'a+b', Likelihood instances or a list of them, got "
            "float 3.5",
        ),
        ({"solver": object}, "solver: expected a solver name ('map') or a Solver, got type <class 'object'>"),
    ],
)
def test_compose_names_the_argument_and_what_it_accepts(arguments, message) -> None:
    import brgm

    settings = {"gen": "tiny", "fwd": "test_scale", **arguments}
    if isinstance(settings["fwd"], list):
        settings["fwd"] = [brgm.forward_model(settings["fwd"][0]), settings["fwd"][1]]
    with pytest.raises(ConfigError) as refused:
        brgm.compose(**settings, device="cpu")
    assert str(refused.value) == message


def test_compose_takes_a_path_object_and_empty_lists_for_none(tmp_path) -> None:
    import brgm

    problem = brgm.compose(gen="tiny", fwd="test_scale", priors=[], likelihoods=["test_sse"], device="cpu")
    assert problem.priors == [] and [like.name for like in problem.likelihoods] == ["test_sse"]
    with pytest.raises(WeightsNotFoundError) as missing:  # the path is read as a path, not as an instance
        brgm.compose(gen=tmp_path / "missing.pkl", fwd="test_scale", device="cpu")
    assert str(missing.value) == f"checkpoint file {str(tmp_path / 'missing.pkl')!r} does not exist"


def test_forward_model_and_load_generator_refuse_what_is_not_a_name() -> None:
    import brgm

    with pytest.raises(ConfigError) as refused:
        brgm.forward_model(3)
    assert str(refused.value) == (
        "forward_model: expected a registered name such as 'kspace' or 'blur+downsample', got int 3"
    )
    with pytest.raises(ConfigError) as refused:
        brgm.load_generator(3)
    assert str(refused.value) == (
        "load_generator: expected a generator name such as 'demo-brain64' or a checkpoint path, got int 3"
    )


def test_a_measurement_that_requires_grad_is_reconstructed_as_if_detached() -> None:
    import brgm

    problem = brgm.compose(gen="tiny", fwd="test_scale", priors=[], device="cpu")
    y = torch.rand(2, *problem.measurement_shape, generator=torch.Generator().manual_seed(1))
    expected = brgm.reconstruct(problem, y, steps=3, seed=0).image
    got = brgm.reconstruct(problem, y.clone().requires_grad_(True), steps=3, seed=0).image
    assert torch.equal(got, expected)


def test_a_measurement_on_the_meta_device_is_a_shape_error() -> None:
    import brgm

    problem = brgm.compose(gen="tiny", fwd="test_scale", priors=[], device="cpu")
    with pytest.raises(ShapeError) as refused:
        brgm.reconstruct(problem, torch.zeros(1, *problem.measurement_shape, device="meta"), steps=3)
    assert str(refused.value) == (
        "the measurement is on device 'meta' (a meta tensor holds no values); give it on cpu or cuda"
    )
