"""The run pipeline: item keys, per-item records, resume, configuration changes, and every bad input or output
ending in a failed.json entry or a one-line error while the other items finish."""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from brgm.cli.app import app
from brgm.core.io.formats import raster
from brgm.core.items import collect, item_seed

runner = CliRunner()
TINY = ["gen=tiny", "fwd=test_scale", "like=test_sse", "prior=none", "solver.steps=3"]


def compose(*args: str):
    return runner.invoke(app, ["compose", *args])


def image(path: Path, seed: int = 0, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    if path.suffix.lower() == ".npy":
        np.save(path, pixels.astype(np.float32) / 255)
    else:
        Image.fromarray(pixels).save(path, format="PNG")
    return path


# --- keys --------------------------------------------------------------------------------------------------


def test_keys_are_unique_stable_and_independent_of_order(tmp_path) -> None:
    files = [
        image(tmp_path / "d1" / "slice.png"),
        image(tmp_path / "d2" / "slice.png"),
        image(tmp_path / "a.png"),
        image(tmp_path / "a.npy"),
        image(tmp_path / "b.png"),
        image(tmp_path / "b.PNG"),
        image(tmp_path / "c.png"),
    ]
    keys = {s.path.relative_to(tmp_path).as_posix(): s.key for s in collect(files)}
    assert keys == {
        "d1/slice.png": "d1_slice_png",
        "d2/slice.png": "d2_slice_png",
        "a.png": "a_png",
        "a.npy": "a_npy",
        "b.png": "b_png",
        "b.PNG": "b_PNG",
        "c.png": "c",
    }
    assert [s.key for s in collect(files[::-1])] == [s.key for s in collect(files)]


def test_item_seeds_depend_on_the_run_seed_and_the_key_only() -> None:
    assert item_seed(0, "a") == item_seed(0, "a") != item_seed(1, "a") != item_seed(0, "b")
    assert 0 <= item_seed(2**63 - 1, "x") < 2**63


def test_colliding_stems_get_their_own_outputs(tmp_path) -> None:
    inputs = [image(tmp_path / "d1" / "slice.png", 1), image(tmp_path / "d2" / "slice.png", 2)]
    inputs += [image(tmp_path / "a.png", 3), image(tmp_path / "a.npy", 4)]
    args = [arg for p in inputs for arg in ("-i", str(p))]
    result = compose(*TINY, *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"d1_slice_png", "d2_slice_png", "a_png", "a_npy"}
    assert metrics["d1_slice_png"] != metrics["d2_slice_png"]
    for key in metrics:
        assert (tmp_path / "out" / f"{key}_recon.png").exists() or (
            tmp_path / "out" / f"{key}_recon.npy"
        ).exists()


# --- resume and configuration -------------------------------------------------------------------------------


def test_a_rerun_skips_finished_items_and_never_reads_its_own_outputs(tmp_path) -> None:
    folder = tmp_path / "scans"
    for i in range(3):
        image(folder / f"s{i}.png", i)
    first = compose(*TINY, "-i", str(folder), "--out", str(folder))
    assert first.exit_code == 0, first.output
    run_files = ("config.json", "metrics.json", "failed.json", "summary.json")  # assembled anew by every run
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name not in run_files}
    again = compose(*TINY, "-i", str(folder), "--out", str(folder))
    assert again.exit_code == 0, again.output
    assert "3 of 3 item(s) already done" in again.output and "wrote 0 reconstruction(s)" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name not in run_files} == before
    assert set(json.loads((folder / "metrics.json").read_text())) == {"s0", "s1", "s2"}
    redo = compose(*TINY, "-i", str(folder), "--out", str(folder), "--overwrite")
    assert redo.exit_code == 0 and "wrote 3 reconstruction(s)" in redo.output, redo.output


def test_another_configuration_into_the_same_out_needs_overwrite(tmp_path) -> None:
    image(tmp_path / "in" / "x.png")
    out = str(tmp_path / "out")
    assert compose(*TINY, "-i", str(tmp_path / "in"), "--out", out).exit_code == 0
    changed = compose(*TINY, "fwd.factor=2", "-i", str(tmp_path / "in"), "--out", out)
    assert changed.exit_code == 2
    assert "holds the results of a run with another configuration" in " ".join(changed.output.split())
    replaced = compose(*TINY, "fwd.factor=2", "-i", str(tmp_path / "in"), "--out", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["fwd"][0]["factor"] == 2.0
    record = json.loads((tmp_path / "out" / "records" / "x.json").read_text())
    assert record["config_hash"] == config["config_hash"] and record["status"] == "done"


# --- bad inputs ---------------------------------------------------------------------------------------------


def bad_inputs(folder: Path) -> dict[str, str]:
    """Files that cannot be reconstructed, by name -> a phrase of the error each must give."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.nii.gz").write_bytes(gzip.compress(b"\x00" * 400)[:60])  # a cut gzip stream
    # a PNG whose header claims 20000×20000 pixels (Pillow's decompression-bomb guard)
    header = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (folder / "bomb.png").write_bytes(header + chunk)
    # a .npy whose header promises 10^10 float32 values
    np.save(folder / "forged.npy", np.zeros((4, 4), np.float32))
    raw = (folder / "forged.npy").read_bytes()
    end = raw.index(b"\n") + 1
    head = raw[:end].decode("latin1").replace("(4, 4)", "(100000, 100000)")
    head = head[:-1].rstrip() + " " * (end - len(head[:-1].rstrip()) - 1) + "\n"
    (folder / "forged.npy").write_bytes(head.encode("latin1") + raw[end:])
    np.save(folder / "empty.npy", np.zeros((0, 64), np.float32))
    # a DICOM image without BitsStored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(folder / "nobits.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 8, 8, 1, 16
    ds.PhotometricInterpretation, ds.PixelRepresentation = "MONOCHROME2", 0
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    pydicom.dcmwrite(folder / "nobits.dcm", ds, enforce_file_format=True)
    return {
        "corrupt.nii.gz": "corrupt.nii.gz",
        "bomb.png": "bomb.png",
        "forged.npy": "forged.npy",
        "empty.npy": "is empty",
        "nobits.dcm": "nobits.dcm",
    }


def test_every_bad_input_is_recorded_and_the_others_finish(tmp_path) -> None:
    bad = bad_inputs(tmp_path / "bad")
    good = image(tmp_path / "good" / "fine.png")
    args = [arg for name in bad for arg in ("-i", str(tmp_path / "bad" / name))]
    result = compose(*TINY, *args, "-i", str(good), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    failed = json.loads((tmp_path / "out" / "failed.json").read_text())
    assert set(failed) == {str(tmp_path / "bad" / name) for name in bad}
    for name, phrase in bad.items():
        message = failed[str(tmp_path / "bad" / name)]
        assert phrase in message and "\n" not in message, (name, message)
    assert set(json.loads((tmp_path / "out" / "metrics.json").read_text())) == {"fine"}


def test_when_every_input_fails_failed_json_is_still_written(tmp_path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = compose(*TINY, "-i", str(tmp_path / "broken.png"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert set(json.loads((tmp_path / "out" / "failed.json").read_text())) == {str(tmp_path / "broken.png")}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {}


# --- bad outputs --------------------------------------------------------------------------------------------


def test_an_out_that_is_a_file_or_cannot_be_created_is_a_one_line_error(tmp_path) -> None:
    image(tmp_path / "x.png")
    (tmp_path / "taken").write_text("a file")
    result = compose(*TINY, "-i", str(tmp_path / "x.png"), "--out", str(tmp_path / "taken"))
    assert result.exit_code == 2 and "is a file; give a directory" in result.output, result.output
    result = compose(*TINY, "-i", str(tmp_path / "x.png"), "--out", str(tmp_path / "taken" / "sub"))
    assert result.exit_code == 2 and "cannot be written" in result.output, result.output


def test_a_read_only_output_file_is_replaced_and_the_run_goes_on(tmp_path) -> None:
    image(tmp_path / "in" / "x.png", 1)
    image(tmp_path / "in" / "y.png", 2)
    out = tmp_path / "out"
    assert compose(*TINY, "-i", str(tmp_path / "in"), "--out", str(out)).exit_code == 0
    (out / "x_recon.png").chmod(0o444)
    result = compose(*TINY, "-i", str(tmp_path / "in"), "--out", str(out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "metrics.json").read_text())) == {"x", "y"}


def test_a_full_disk_fails_one_item_and_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    write = raster.write

    def full_disk(path, array, meta, fmt):
        if Path(path).name.startswith(".x_baseline"):
            Path(path).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, array, meta, fmt)

    monkeypatch.setattr(raster, "write", full_disk)
    image(tmp_path / "in" / "x.png", 1)
    image(tmp_path / "in" / "y.png", 2)
    out = tmp_path / "out"
    result = compose(*TINY, "-i", str(tmp_path / "in"), "--out", str(out))
    assert result.exit_code == 1, result.output
    failed = json.loads((out / "failed.json").read_text())
    assert "No space left on device" in failed[str(tmp_path / "in" / "x.png")]
    assert set(json.loads((out / "metrics.json").read_text())) == {"y"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.startswith("x_baseline")]
    monkeypatch.setattr(raster, "write", write)
    rerun = compose(*TINY, "-i", str(tmp_path / "in"), "--out", str(out))
    assert rerun.exit_code == 0 and "wrote 1 reconstruction(s)" in rerun.output, rerun.output


def test_simulate_refuses_to_overwrite_its_input(tmp_path) -> None:
    x = image(tmp_path / "x.png")
    before = x.read_bytes()
    result = runner.invoke(app, ["simulate", "fwd=blur", "--input", str(x), "--out", str(x)])
    assert result.exit_code == 2 and "would overwrite the input" in result.output, result.output
    assert x.read_bytes() == before


# --- a killed run, resumed, equals an uninterrupted one -------------------------------------------------------

GEN = ["gen=stylegan2", "gen.resolution=16", "gen.channel_max=16", "gen.z_dim=16", "gen.w_dim=16"]
KSPACE = ["fwd=kspace+gaussian_noise", "fwd.acceleration=2", "fwd.sigma=0.01", "solver.init_jitter=0.05"]


def brgm_compose(*args: str) -> subprocess.Popen:
    env = {**os.environ, "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "brgm", "compose", *GEN, *KSPACE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def finish(*args: str) -> str:
    process = brgm_compose(*args)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result_in_any_order_and_batch_size(tmp_path) -> None:
    folder = tmp_path / "slices"
    for i in range(12):
        image(folder / f"s{i:02d}.png", i, size=16)
    steps = ["solver.steps=60", "solver.batch_size=2"]
    killed = tmp_path / "killed"
    process = brgm_compose(*steps, "-i", str(folder), "--out", str(killed))
    deadline = time.monotonic() + 60
    while len(list((killed / "records").glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list((killed / "records").glob("*.json")))
    assert 4 <= done < 12, f"{done} items were done when the run was killed"
    resumed = finish(*steps, "-i", str(folder), "--out", str(killed))
    assert (
        f"{done} of 12 item(s) already done" in resumed and f"wrote {12 - done} reconstruction(s)" in resumed
    )

    whole = tmp_path / "whole"
    finish(*steps, "-i", str(folder), "--out", str(whole))
    reordered = tmp_path / "reordered"
    inputs = [arg for p in sorted(folder.iterdir(), reverse=True) for arg in ("-i", str(p))]
    finish("solver.steps=60", "solver.batch_size=5", *inputs, "--out", str(reordered))
    expected = json.loads((whole / "metrics.json").read_text())
    assert len(expected) == 12
    for other in (killed, reordered):
        metrics = json.loads((other / "metrics.json").read_text())
        assert set(metrics) == set(expected)
        for key, values in expected.items():
            assert abs(metrics[key]["recon"]["psnr"] - values["recon"]["psnr"]) < 0.01, (other, key)
            assert metrics[key]["baseline"] == values["baseline"], (other, key)  # same mask and noise
            np.testing.assert_array_equal(
                np.load(other / f"{key}_measurement.npy"), np.load(whole / f"{key}_measurement.npy")
            )
