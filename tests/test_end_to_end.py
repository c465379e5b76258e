"""``brgm compose`` from files to every output, on the reference generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import brgm
from brgm.cli.app import app

runner = CliRunner()
STEPS = "100"


@pytest.fixture(scope="module")
def network(fixture_dir: Path) -> Path:
    return fixture_dir / "network-ada.pkl"


@pytest.fixture(scope="module")
def images(network: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 32×32 PNGs drawn from the reference generator (truncation 0.5)."""
    G = brgm.load_generator(str(network))
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(100))
    with torch.no_grad():
        x = ((G.synthesis(G.mapping(z, truncation_psi=0.5)) + 1) / 2).clamp(0, 1)
    folder = tmp_path_factory.mktemp("images")
    for i, image in enumerate(x):
        Image.fromarray(np.round(image[0].numpy() * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def compose(*args: str):
    result = runner.invoke(app, ["compose", *args, "--device", "cpu"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_super_resolution_writes_every_output_and_beats_the_baseline(network, images, tmp_path) -> None:
    out = tmp_path / "out"
    image = images / "img0.png"
    result = compose(
        f"gen={network}", "fwd=downsample", "fwd.factor=4", "prior=gaussian+colinear", f"solver.steps={STEPS}",
        "--input", str(image), "--truth", str(image), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    expected = {
        "recon.png",
        "baseline.png",
        "measurement.png",
        "comparison.png",
        "energy.png",
        "latents.safetensors",
    }
    assert {f"img0_{n}" for n in expected} | {"config.json", "metrics.json"} <= names
    assert Image.open(out / "img0_measurement.png").size == (8, 8)
    metrics = json.loads((out / "metrics.json").read_text())["img0"]
    assert metrics["recon"]["psnr"] > metrics["baseline"]["psnr"] + 1.0, metrics
    # metrics.json agrees with brgm.metrics on the saved latents and the truth file
    G = brgm.load_generator(str(network))
    ws = load_file(out / "img0_latents.safetensors")
    (key,) = ws
    with torch.no_grad():
        recon = ((G.synthesis(ws[key].reshape(1, G.num_ws, G.w_dim)) + 1) / 2).clamp(0, 1)
    truth = torch.from_numpy(np.asarray(Image.open(image), dtype=np.float32) / 255)[None, None]
    assert brgm.metrics.psnr(recon, truth).item() == pytest.approx(metrics["recon"]["psnr"], abs=1e-4)
    assert brgm.metrics.ssim(recon, truth).item() == pytest.approx(metrics["recon"]["ssim"], abs=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["fwd"] == [{"name": "downsample", "factor": 4, "method": "area"}]
    assert [p["name"] for p in config["prior"]] == ["gaussian", "colinear"]
    assert config["solver"]["steps"] == int(STEPS)


def test_inpainting_writes_the_merged_image(network, images, tmp_path) -> None:
    out = tmp_path / "out"
    result = compose(
        f"gen={network}", "fwd=mask", "solver.steps=3", "--input", str(images / "img1.png"), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    merged = np.asarray(Image.open(out / "img1_merged.png"))
    truth = np.asarray(Image.open(images / "img1.png"))
    assert np.array_equal(merged[:, :16], truth[:, :16])  # the observed left half is kept


def test_a_directory_is_a_batch_and_a_bad_file_is_skipped(network, images, tmp_path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("img0.png", "img1.png"):
        (folder / name).write_bytes((images / name).read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = compose(
        f"gen={network}", "fwd=kspace", "solver.steps=3", "--input", str(folder), "--out", str(out)
    )
    assert result.exit_code == 1, result.output
    assert set(json.loads((out / "failed.json").read_text())) == {str(folder / "broken.png")}
    assert (out / "img0_recon.png").exists() and (out / "img1_recon.png").exists()
    assert set(json.loads((out / "metrics.json").read_text())) == {"img0", "img1"}


def test_inputs_of_another_size_are_cropped_resized_and_reported(network, tmp_path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)).save(
        tmp_path / "wide.png"
    )
    out = tmp_path / "out"
    result = compose(
        f"gen={network}",
        "fwd=blur",
        "solver.steps=2",
        "--input",
        str(tmp_path / "wide.png"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    notes = " ".join(json.loads((out / "records" / "wide.json").read_text())["notes"])
    assert "wide.png: centre-cropped 40×48 → 40×40 and resized to 32×32 (Lanczos)" in notes, notes


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "brgm-tf",
            {
                "like": {"pixel": 65.025, "perceptual": 1.0},
                "prior": {"gaussian": 100.0, "colinear": 3.0},
                "steps": 5000,
            },
        ),
        (
            "brgm-pt",
            {
                "like": {"pixel": 65.025, "perceptual": 1e7},
                "prior": {"gaussian": 100.0, "colinear": 0.1},
                "steps": 501,
            },
        ),
    ],
)
def test_brgm_presets_run_and_show_the_reference_values(network, images, tmp_path, preset, expected) -> None:
    args = [f"preset={preset}", f"gen={network}", "fwd=downsample", "fwd.factor=2"]
    dry = compose(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    config = json.loads(dry.output)
    assert {t["name"]: t["weight"] for t in config["like"]} == pytest.approx(expected["like"])
    assert {t["name"]: t["weight"] for t in config["prior"]} == pytest.approx(expected["prior"])
    assert config["solver"]["steps"] == expected["steps"] and config["preset"] == preset
    out = tmp_path / "out"
    run = compose(
        *args,
        "like.perceptual.random_backbone_seed=0",
        "solver.steps=2",
        "--input",
        str(images / "img0.png"),
        "--out",
        str(out),
    )
    assert run.exit_code == 0, run.output
    assert json.loads((out / "config.json").read_text())["preset"] == preset
