"""brgm.core.io.outputs and brgm.core.io.figures: the files a run writes per item, their content and the metrics."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import brgm
from brgm.core import io
from brgm.core.io import figures
from brgm.core.io.outputs import item_metrics, observed_mask, write_outputs

TERMS = {"likelihoods": ["pixel"], "priors": ["test_spread"], "device": "cpu"}


def smooth_images(n: int, *spatial: int, seed: int = 0) -> torch.Tensor:
    """``[n, 1, *spatial]`` smooth random images in [0, 1]."""
    coarse = torch.rand(
        n, 1, *(max(2, s // 4) for s in spatial), generator=torch.Generator().manual_seed(seed)
    )
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=spatial, mode=mode, align_corners=False)


@pytest.fixture(scope="module")
def inpainting():
    problem = brgm.compose(gen="tiny", fwd="mask", **TERMS, **{"gen.size": 16})
    truth = smooth_images(2, 16, 16)
    y = problem.forward_model(truth)
    return problem, truth, y, brgm.reconstruct(problem, y, steps=3, seed=0)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_outputs_of_one_item_are_exact_in_npy(tmp_path, inpainting):
    problem, truth, y, result = inpainting
    np.save(tmp_path / "in.npy", truth[1].numpy())
    meta = io.load(tmp_path / "in.npy").meta
    written = write_outputs(
        tmp_path / "out",
        name="b",
        problem=problem,
        measurement=y,
        result=result,
        index=1,
        meta=meta,
        truth=truth,
    )
    metrics = written.metrics
    out = tmp_path / "out"
    assert (
        sorted(p.name for p in out.iterdir())
        == sorted(p.name for p in written.files)
        == [
            "b_baseline.npy",
            "b_comparison.png",
            "b_energy.png",
            "b_generator.npy",
            "b_latents.safetensors",
            "b_measurement.npy",
            "b_merged.npy",
            "b_recon.npy",
        ]
    )
    recon = result.image[1]
    np.testing.assert_array_equal(np.load(out / "b_recon.npy"), recon.numpy())
    np.testing.assert_array_equal(np.load(out / "b_baseline.npy"), result.baseline[1].clamp(0, 1).numpy())
    np.testing.assert_array_equal(np.load(out / "b_measurement.npy"), y[1].numpy())
    observed = problem.forward_model.observed((1, 1, 16, 16))[0].numpy()  # default: the right half is missing
    assert observed[:, :, :8].all() and not observed[:, :, 8:].any()
    merged = np.load(out / "b_merged.npy")
    np.testing.assert_array_equal(merged[:, :, :8], y[1, :, :, :8].numpy())
    np.testing.assert_array_equal(merged[:, :, 8:], recon[:, :, 8:].numpy())
    assert torch.equal(load_file(out / "b_latents.safetensors")["ws"], result.ws[1:2])
    # a mask measures a subset: the recon is the data-consistent image, the generator's own is marked as such
    assert problem.execution.consistency == "auto" and result.generated is not None
    np.testing.assert_array_equal(np.load(out / "b_generator.npy"), result.generated[1].clamp(0, 1).numpy())
    assert not np.array_equal(np.load(out / "b_generator.npy"), recon.numpy())
    assert set(metrics) == {"recon", "baseline", "generator"}
    assert metrics["generator"]["psnr"] == pytest.approx(
        float(brgm.metrics.psnr(result.generated[1:2].clamp(0, 1), truth[1:2])[0])
    )
    assert metrics["recon"]["psnr"] == pytest.approx(float(brgm.metrics.psnr(recon[None], truth[1:2])[0]))
    assert metrics["baseline"]["ssim"] == pytest.approx(
        float(brgm.metrics.ssim(result.baseline[1:2].clamp(0, 1), truth[1:2])[0])
    )
    assert metrics["recon"]["rmse"] == pytest.approx(float((recon - truth[1]).square().mean().sqrt()))
    assert png_size(out / "b_comparison.png") == (5 * 260, 260 + 40)  # 5 columns of 2.6 in at 100 dpi, title
    assert png_size(out / "b_energy.png") == (640, 400)


def test_outputs_in_png_without_truth(tmp_path, inpainting):
    problem, truth, y, result = inpainting
    Image.fromarray((truth[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "in.png")
    meta = io.load(tmp_path / "in.png").meta
    written = write_outputs(
        tmp_path, name="a", problem=problem, measurement=y[0], result=result, index=0, meta=meta
    )
    metrics = written.metrics
    assert metrics == {}
    recon = io.load(tmp_path / "a_recon.png").data[0]
    assert float((recon - result.image[0]).abs().max()) <= 0.5 / 255 + 1e-7
    assert png_size(tmp_path / "a_comparison.png") == (3 * 260, 300)


def test_volume_outputs_are_written_on_both_grids(tmp_path):
    problem = brgm.compose(gen="tiny", fwd="kspace", **TERMS, **{"gen.size": 8, "gen.depth": 8})
    affine = np.array([[-1.5, 0, 0, 20], [0, 1.5, 0, -4], [0, 0, 1.5, 7], [0, 0, 0, 1]])
    volume = (smooth_images(1, 16, 16, 16)[0, 0].numpy() * 1000).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "t1.nii.gz")
    loaded = io.load(tmp_path / "t1.nii.gz")
    truth, meta, report = io.fit_to_grid(loaded.data, (8, 8, 8), loaded.meta)
    assert report.startswith("resampled 16×16×16 → 8×8×8 (trilinear)")
    y = problem.forward_model(truth)
    result = brgm.reconstruct(problem, y, steps=2, seed=0)
    written = write_outputs(
        tmp_path / "out",
        name="t1",
        problem=problem,
        measurement=y[0],
        result=result,
        index=0,
        meta=meta,
        truth=truth,
    )
    metrics = written.metrics
    out = tmp_path / "out"
    assert {"t1_recon.nii.gz", "t1_recon_input_grid.nii.gz", "t1_measurement.npy"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / "t1_merged.nii.gz").exists()
    np.testing.assert_array_equal(np.load(out / "t1_measurement.npy"), y[0].numpy())
    on_generator_grid = nib.load(out / "t1_recon.nii.gz")
    assert on_generator_grid.shape == (8, 8, 8) and on_generator_grid.header.get_zooms() == (3.0, 3.0, 3.0)
    on_input_grid = nib.load(out / "t1_recon_input_grid.nii.gz")
    assert on_input_grid.shape == (16, 16, 16)
    np.testing.assert_array_equal(on_input_grid.affine, affine)
    # both grids cover the same field of view: their corners' outer edges coincide
    np.testing.assert_allclose(
        on_generator_grid.affine @ [-0.5, -0.5, -0.5, 1], affine @ [-0.5, -0.5, -0.5, 1], atol=1e-9
    )
    assert metrics["recon"]["psnr"] == pytest.approx(float(brgm.metrics.psnr(result.image[:1], truth)[0]))
    assert png_size(out / "t1_comparison.png") == (5 * 260, 3 * 260 + 40)  # axial, coronal, sagittal rows


def test_observed_mask_only_for_inpainting_alone_or_with_noise():
    shape = (1, 1, 8, 8)
    mask = brgm.forward_model("mask", missing="left")
    assert observed_mask(mask, shape).shape == (1, 1, 8, 8)
    noisy = brgm.forward_model("mask+gaussian_noise", mask__missing="left")
    assert torch.equal(observed_mask(noisy, shape), mask.observed(shape))
    assert observed_mask(brgm.forward_model("blur+mask"), shape) is None
    assert observed_mask(brgm.forward_model("kspace"), shape) is None


def test_item_metrics_of_a_perfect_reconstruction():
    truth = smooth_images(1, 8, 8)[0]
    metrics = item_metrics(truth, truth)
    assert metrics["psnr"] == float("inf")
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["rmse"] == 0.0 and metrics["nmse"] == 0.0


def test_kspace_is_shown_as_log_magnitude_over_coils():
    kspace = torch.zeros(2, 4, 4, dtype=torch.complex64)
    kspace[0, 1, 2], kspace[1, 1, 2] = 3.0, 4.0j
    shown, is_kspace = figures._displayable(kspace.numpy())
    assert is_kspace and shown.shape == (4, 4)
    assert shown[1, 2] == pytest.approx(np.log10(5.0))  # root-sum-of-squares of 3 and 4
    assert shown[0, 0] == pytest.approx(np.log10(5e-9))  # empty entries at the floor, 9 decades down


def test_picture_and_energy_figure(tmp_path):
    volume = smooth_images(1, 6, 7, 8)[0]
    figures.picture(tmp_path / "v.png", volume)
    assert png_size(tmp_path / "v.png") == (260, 3 * 260)
    history = {
        "like.pixel": torch.linspace(5, 1, 10)[:, None].repeat(1, 2),
        "prior.l2": -torch.ones(10, 2),
        "total": torch.linspace(4, 0, 10)[:, None].repeat(1, 2),
        "lr": torch.full((10,), 0.1),
    }
    figures.energy_figure(tmp_path / "e.png", history, index=1)
    assert png_size(tmp_path / "e.png") == (640, 400)
