"""The demo brain dataset builder (scripts/make_demo_data.py) on the Debian source volumes."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import brgm

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path):
    """Import a script of the repository (not a package module) by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


make_demo_data = load_script(ROOT / "scripts" / "make_demo_data.py")
readme = load_script(ROOT / ".ci" / "readme.py")  # how CI reads the README's commands

SOURCES = (make_demo_data.COLIN_BRAIN, make_demo_data.ITK_HEAD, make_demo_data.ITK_MASK)
needs_sources = pytest.mark.skipif(
    not all(p.exists() for p in SOURCES),
    reason="needs Debian packages mricron-data and insighttoolkit5-examples",
)


def test_split_holds_out_every_eighth_slice_with_a_guard_band():
    train, held_out = make_demo_data.split_indices(21)
    assert held_out.tolist() == [4, 12, 20]
    assert train.tolist() == [0, 1, 2, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp("demo-brain")
    return out, make_demo_data.build(out)


@needs_sources
def test_files_shapes_and_ranges(built):
    out, arrays = built
    for name in ("train", "test_in_subject", "test_out_of_subject"):
        with np.load(out / f"{name}.npz") as f:
            images, index = f["images"], f["slice_index"]
        np.testing.assert_array_equal(images, arrays[name])
        assert images.dtype == np.float32 and images.shape[1:] == (1, 64, 64)
        assert len(images) == len(index) > 10
        assert images.min() == 0.0 and 0.95 < images.max() <= 1.0
        # background is exactly 0: the corners lie outside every brain
        assert not images[:, :, :4, :4].any() and not images[:, :, -4:, -4:].any()
        # the brain is centred in the field of view (centre of mass within 4 pixels of the middle)
        mid = images[len(images) // 2, 0]
        rows, cols = np.nonzero(mid)
        assert abs(rows.mean() - 31.5) < 4 and abs(cols.mean() - 31.5) < 4


@needs_sources
def test_held_out_slices_are_far_from_training_slices(built):
    out, _ = built
    train = np.load(out / "train.npz")["slice_index"]
    test = np.load(out / "test_in_subject.npz")["slice_index"]
    assert np.abs(train[:, None] - test[None, :]).min() > make_demo_data.GUARD
    assert len(test) >= 10 and np.all(np.diff(test) == make_demo_data.HOLDOUT_EVERY)


def test_orientation_anterior_up_patient_right_on_the_left():
    # A synthetic RAS volume at the output pixel size: a brain cube with a marker at high x (right) and high y
    # (anterior) must land in the image's top-left quadrant, centred by the mask's bounding box.
    data = np.zeros((40, 40, 1), np.float32)
    mask = np.zeros_like(data, dtype=bool)
    mask[10:30, 10:30] = True
    data[mask] = 0.5
    data[26:29, 25:28] = 1.0
    volume = make_demo_data.Volume(data=data, mask=mask, zooms=(3.0, 3.0, 3.0), scale=1.0)
    image = make_demo_data.axial_slices(volume, np.array([0]))[0, 0]
    rows, cols = np.nonzero(image == image.max())
    assert rows.max() < 32 and cols.max() < 32
    brain_rows, brain_cols = np.nonzero(image)
    assert abs(brain_rows.mean() - 31.5) <= 1 and abs(brain_cols.mean() - 31.5) <= 1


@needs_sources
def test_deterministic_and_documented(built, tmp_path):
    out, arrays = built
    again = make_demo_data.build(tmp_path)
    for name, images in arrays.items():
        assert np.array_equal(images, again[name]), name
    provenance = (out / "PROVENANCE.md").read_text()
    assert provenance == (tmp_path / "PROVENANCE.md").read_text()
    for needle in ("mricron-data", "insighttoolkit5-examples", "BSD-3-Clause", "Apache-2.0", "ch2bet.nii.gz"):
        assert needle in provenance


@needs_sources
def test_held_out_sample_pngs_are_exact_16_bit_copies(built):
    out, arrays = built
    index = np.load(out / "test_in_subject.npz")["slice_index"].tolist()
    pngs = sorted((out / "samples").glob("heldout-*.png"))
    assert len(pngs) == make_demo_data.SAMPLES
    positions = [index.index(int(p.stem.split("-")[1])) for p in pngs]
    assert positions == make_demo_data.sample_positions(len(index)).tolist()
    assert 0 not in positions and len(index) - 1 not in positions
    for path, i in zip(pngs, positions, strict=True):
        with Image.open(path) as im:
            pixels = np.asarray(im).astype(np.float64) / 65535
        np.testing.assert_allclose(pixels, arrays["test_in_subject"][i, 0], atol=0.5 / 65535 + 1e-7)


BUNDLE = Path(__file__).resolve().parents[1] / "brgm" / "data" / "demo-brain64"


def test_demo_brain64_loads_offline_and_draws_brains():
    G = brgm.load_generator("demo-brain64")
    assert (G.img_shape, G.img_channels, G.z_dim) == ((64, 64), 1, 128)
    assert not any(p.requires_grad for p in G.parameters())
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (8, 1, 64, 64) and torch.isfinite(x).all()
    assert torch.equal(x, G(z))  # constant noise: deterministic
    # A trained brain model draws a dark background around a bright centre (a random one draws neither).
    corners = torch.cat([x[:, :, :6, :6], x[:, :, -6:, -6:]], dim=2)
    assert corners.mean() < -0.8
    assert x[:, :, 24:40, 24:40].mean() > corners.mean() + 1.0


def test_demo_brain64_bundle_is_complete():
    names = {p.name for p in BUNDLE.iterdir()}
    assert {"generator.safetensors", "MODEL_CARD.md", "PROVENANCE.md", "samples.png"} <= names
    slices = sorted(BUNDLE.glob("heldout-*.png"))
    assert len(slices) == 4
    for path in slices:
        with Image.open(path) as im:
            assert im.size == (64, 64) and np.asarray(im).dtype == np.uint16
    card = (BUNDLE / "MODEL_CARD.md").read_text()
    for needle in ("Colin27", "kimg", "one subject", "zero-filled"):
        assert needle in card


def readme_main_command() -> list[str]:
    """The arguments of the README's main command (after ``brgm``), read from the README as CI reads it."""
    return shlex.split(readme.command(readme.MAIN).split("&& brgm ", 1)[1])


def test_readme_main_command_beats_zero_filling(tmp_path):
    from typer.testing import CliRunner

    from brgm.cli.app import app

    args = readme_main_command()
    assert args[:2] == ["compose", "gen=demo-brain64"] and "--out" in args
    args[args.index("--out") + 1] = str(tmp_path)
    # 100 steps instead of the default 500 to keep the suite fast; the README's full run gains more
    result = CliRunner().invoke(app, [*args, "solver.steps=100"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())["heldout-066"]
    assert metrics["recon"]["psnr"] > metrics["baseline"]["psnr"] + 1.0, metrics
    for suffix in ("recon.png", "baseline.png", "comparison.png", "measurement.npy"):
        assert (tmp_path / f"heldout-066_{suffix}").is_file(), suffix
