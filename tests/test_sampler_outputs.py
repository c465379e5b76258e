"""A sampler's outputs: mean, std and samples in the input's format and as arrays in intensity units, the
uncertainty figure and metrics, for images and volumes; the uncertainty statistics themselves."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import brgm
from brgm.core import io
from brgm.core.diagnostics import coverage, expected_spearman, ranks, sparsification_error, spearman
from brgm.core.io.outputs import write_outputs
from tests.test_outputs import png_size, smooth_images

TERMS = {"likelihoods": ["pixel"], "priors": ["gaussian"], "device": "cpu"}
FAST = {"solver": "langevin", "map_steps": 3, "steps": 8, "chains": 2, "samples": 4}


def test_png_input_gives_mean_std_samples_figure_and_metrics(tmp_path) -> None:
    problem = brgm.compose(gen="tiny", fwd="kspace", **TERMS, **{"gen.size": 16})
    truth = smooth_images(1, 16, 16)
    truth[..., :4] = 0  # a background, outside the foreground
    Image.fromarray((truth[0, 0].numpy() * 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    meta = io.load(tmp_path / "in.png").meta
    y = problem.forward_model(truth)
    result = brgm.reconstruct(problem, y, seed=0, **FAST)
    written = write_outputs(
        tmp_path / "out",
        name="a",
        problem=problem,
        measurement=y,
        result=result,
        index=0,
        meta=meta,
        truth=truth,
    )
    out = tmp_path / "out"
    names = {p.name for p in written.files}
    assert {
        "a_mean.png",
        "a_std.png",
        "a_mean.npy",
        "a_std.npy",
        "a_samples.npy",
        "a_uncertainty.png",
    } <= names
    # arrays in the PNG's units (0..255), float32
    mean, std, samples = (np.load(out / f"a_{k}.npy") for k in ("mean", "std", "samples"))
    assert mean.dtype == std.dtype == samples.dtype == np.float32
    np.testing.assert_allclose(mean, 255 * result.image[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(std, 255 * result.std[0].numpy(), rtol=1e-6)
    assert samples.shape == (4, 1, 16, 16)
    np.testing.assert_allclose(samples, 255 * result.samples[:, 0].numpy(), rtol=1e-6)
    assert (
        float(np.abs(io.load(out / "a_std.png").data[0].numpy() - result.std[0].numpy()).max())
        <= 0.5 / 255 + 1e-7
    )
    # the files agree: the mean written is the mean of the samples written (k-space refines every draw)
    np.testing.assert_allclose(mean, samples.mean(axis=0), atol=1e-4, rtol=0)
    # mean, std, error, don't-trust mask, 3 samples; title
    assert png_size(out / "a_uncertainty.png") == (7 * 260, 260 + 40)
    u = written.metrics["uncertainty"]
    assert u["samples"] == 4 and u["mean_std"] == pytest.approx(float(result.std.mean()))
    brain = truth[0] > 0.02
    assert 0 < brain.float().mean() < 1
    assert u["foreground"]["pixels"] == pytest.approx(float(brain.float().mean()))
    assert u["foreground"]["coverage90"] == pytest.approx(
        coverage(result.image[0][brain], result.std[0][brain], truth[0][brain], 0.9)
    )
    assert u["all"]["coverage90"] == pytest.approx(coverage(result.image[0], result.std[0], truth[0], 0.9))
    assert u["all"]["pixels"] == 1.0
    for region in ("foreground", "all"):
        assert u[region]["coverage50"] <= u[region]["coverage90"]
        assert "spearman" in u[region]
    assert {"rhat", "ess"} <= set(u) and u["collapsed"] is False
    json.dumps(written.metrics)  # plain floats


def test_volume_std_overlays_the_input_in_nifti(tmp_path) -> None:
    problem = brgm.compose(gen="tiny", fwd="kspace", **TERMS, **{"gen.size": 8, "gen.depth": 8})
    affine = np.array([[-2.0, 0, 0, 20], [0, 2.0, 0, -4], [0, 0, 2.0, 7], [0, 0, 0, 1]])
    volume = (smooth_images(1, 8, 8, 8)[0, 0].numpy() * 1000 + 200).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "t1.nii.gz")
    loaded = io.load(tmp_path / "t1.nii.gz")
    y = problem.forward_model(loaded.data)
    result = brgm.reconstruct(problem, y, seed=0, solver="vi", map_steps=3, steps=4, samples=4)
    written = write_outputs(
        tmp_path, name="t1", problem=problem, measurement=y, result=result, index=0, meta=loaded.meta
    )
    assert "uncertainty" in written.metrics and "elbo" in written.metrics["uncertainty"]
    std_file = nib.load(tmp_path / "t1_std.nii.gz")
    np.testing.assert_array_equal(std_file.affine, affine)
    span = loaded.meta.intensity.span
    # the file is in the input's orientation: compare the values, in the window's units without its offset
    np.testing.assert_allclose(
        np.sort(np.asarray(std_file.dataobj), axis=None),
        np.sort(span * result.std[0, 0].numpy(), axis=None),
        rtol=1e-4,
    )
    np.testing.assert_allclose(np.load(tmp_path / "t1_std.npy"), span * result.std[0].numpy(), rtol=1e-5)
    mean = np.asarray(nib.load(tmp_path / "t1_mean.nii.gz").dataobj)
    expected = loaded.meta.intensity.from_unit(result.image[0, 0].numpy())
    np.testing.assert_allclose(np.sort(mean, axis=None), np.sort(expected, axis=None), rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=3, max_size=30))
def test_ranks_average_ties_and_spearman_is_one_for_monotone_maps(values: list[int]) -> None:
    x = torch.tensor(values, dtype=torch.float64)
    r = ranks(x)
    assert float(r.sum()) == pytest.approx(len(values) * (len(values) + 1) / 2)
    for v in set(values):  # tied entries share one rank
        assert len(set(r[x == v].tolist())) == 1
    if len(set(values)) > 1:
        assert spearman(x, x.exp()) == pytest.approx(1.0)
        assert spearman(x, -x) == pytest.approx(-1.0)


def test_expected_spearman_is_what_a_truth_drawn_from_the_posterior_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(16, 4000, generator=gen, dtype=torch.float64)  # one std everywhere: no ranking to find
    assert abs(expected_spearman(flat)) < 0.05
    scale = torch.logspace(-2, 1, 4000, dtype=torch.float64)
    varied = scale * torch.randn(16, 4000, generator=gen, dtype=torch.float64)
    # a truth drawn from that posterior, scored against the draws' mean and std, ranks as the std does
    truth = scale * torch.randn(4000, generator=gen, dtype=torch.float64)
    scored = spearman(varied.std(dim=0), (varied.mean(dim=0) - truth).abs())
    assert expected_spearman(varied) == pytest.approx(scored, abs=0.05)
    assert expected_spearman(varied) > 0.5
    three = varied[:3]  # each draw against the other two, by hand: std |a − b|/√2, mean (a + b)/2
    by_hand = [
        spearman((three[i] - three[j]).abs(), (three[k] - (three[i] + three[j]) / 2).abs())
        for k, i, j in ((0, 1, 2), (1, 0, 2), (2, 0, 1))
    ]
    assert expected_spearman(three) == pytest.approx(sum(by_hand) / 3, abs=1e-12)
    with pytest.raises(ValueError, match="S >= 3"):
        expected_spearman(varied[:2])


@settings(max_examples=20, deadline=None)
@given(st.floats(0.01, 100), st.floats(-10, 10), st.integers(0, 2**16))
def test_expected_spearman_is_invariant_to_the_intensity_scale(a: float, b: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    draws = torch.rand(300, generator=gen, dtype=torch.float64) * torch.randn(6, 300, generator=gen)
    assert expected_spearman(a * draws + b) == pytest.approx(expected_spearman(draws), abs=1e-9)


def test_coverage_of_exact_gaussian_errors_and_sparsification() -> None:
    gen = torch.Generator().manual_seed(0)
    std = torch.rand(200_000, generator=gen, dtype=torch.float64) + 0.1
    truth = std * torch.randn(200_000, generator=gen, dtype=torch.float64)
    mean = torch.zeros_like(truth)
    assert coverage(mean, std, truth, 0.9) == pytest.approx(0.9, abs=0.003)
    assert coverage(mean, std, truth, 0.5) == pytest.approx(0.5, abs=0.003)
    error = (truth - mean).abs()
    assert sparsification_error(error, error) == 0.0  # the std ranks pixels as the errors do: the oracle
    assert sparsification_error(std, error) < sparsification_error(-std, error)


def test_the_command_line_writes_a_samplers_files_and_metrics(tmp_path) -> None:
    from typer.testing import CliRunner

    from brgm.cli.app import app

    Image.fromarray((smooth_images(1, 8, 8)[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "s.png")
    args = ["compose", "gen=tiny", "fwd=mask", "solver=langevin", "solver.map_steps=3", "solver.steps=8"]
    args += [
        "solver.chains=2",
        "solver.samples=4",
        "--input",
        str(tmp_path / "s.png"),
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "o"
    for suffix in (
        "mean.png",
        "std.png",
        "mean.npy",
        "std.npy",
        "samples.npy",
        "uncertainty.png",
        "energy.png",
    ):
        assert (out / f"s_{suffix}").is_file(), suffix
    assert np.load(out / "s_samples.npy").shape == (4, 1, 8, 8)
    metrics = json.loads((out / "metrics.json").read_text())["s"]
    assert {"foreground", "all", "rhat", "ess", "mean_std", "collapsed"} <= set(metrics["uncertainty"])
    assert {"coverage90", "coverage50", "spearman", "spearman_expected", "pixels"} <= set(
        metrics["uncertainty"]["foreground"]
    )
