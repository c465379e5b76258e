"""Fingerprints of what an item was computed from, and reruns that redo exactly the items whose input or truth
changed since their record."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from brgm.cli.app import app
from brgm.core.io.fingerprints import array_hash, changes, path_hash, recheck
from brgm.core.items import Source
from tests.test_pipeline import TINY, compose, image, runner

# --- hashes -------------------------------------------------------------------------------------------------


def test_a_gzip_file_is_hashed_decompressed_and_a_plain_file_by_its_bytes(tmp_path) -> None:
    data = b"\x5c\x01\x00\x00" + bytes(range(256)) * 40
    (tmp_path / "a.nii.gz").write_bytes(gzip.compress(data, mtime=1))
    (tmp_path / "b.nii.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=2))
    (tmp_path / "c.nii").write_bytes(data)
    assert (tmp_path / "a.nii.gz").read_bytes() != (tmp_path / "b.nii.gz").read_bytes()
    hashes = {name: path_hash(tmp_path / name) for name in ("a.nii.gz", "b.nii.gz", "c.nii")}
    assert hashes["a.nii.gz"] == hashes["b.nii.gz"] == hashes["c.nii"]
    (tmp_path / "c.nii").write_bytes(data[:-1] + b"\x00")
    assert path_hash(tmp_path / "c.nii") != hashes["a.nii.gz"]


def test_a_series_directory_changes_with_any_file_its_name_or_a_new_file(tmp_path) -> None:
    series = tmp_path / "series"
    series.mkdir()
    for i in range(3):
        (series / f"{i}.dcm").write_bytes(bytes([i]) * 10)
    (series / ".DS_Store").write_bytes(b"ignored")
    first = path_hash(series)
    (series / ".DS_Store").write_bytes(b"still ignored")
    assert path_hash(series) == first
    (series / "1.dcm").write_bytes(b"\x01" * 9 + b"\x02")
    changed = path_hash(series)
    (series / "1.dcm").rename(series / "9.dcm")
    renamed = path_hash(series)
    (series / "3.dcm").write_bytes(b"")
    assert len({first, changed, renamed, path_hash(series)}) == 4


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=12),
    st.sampled_from([np.float32, np.float64]),
)
def test_an_array_hash_is_its_dtype_shape_and_values(values: list[float], dtype: type) -> None:
    a = np.asarray(values, dtype=dtype)
    assert array_hash(a) == array_hash(a.copy()) == array_hash(torch.from_numpy(a))
    assert array_hash(a) != array_hash(a.astype(np.float16 if dtype is np.float64 else np.float64))
    assert array_hash(a) != array_hash(a[None])
    b = a.copy()
    b[-1] = b[-1] + 1
    assert array_hash(a) != array_hash(b)


def test_a_record_is_checked_against_its_files_again(tmp_path) -> None:
    x, t = image(tmp_path / "x.png", 1), image(tmp_path / "t.png", 2)
    source = Source(key="x", path=x, truth=t)
    recorded = source.fingerprint()
    paths = {"input": str(x), "truth": str(t)}
    assert changes(recorded, recheck(recorded, paths)) == []
    image(tmp_path / "t.png", 3)
    assert changes(recorded, recheck(recorded, paths)) == ["truth"]
    x.unlink()
    assert changes(recorded, recheck(recorded, paths)) == ["input", "truth"]
    assert changes(None, recorded) == ["input", "truth"]  # a record of an older brgm
    array = Source(key="a", array=np.zeros((4, 4), np.float32)).fingerprint()
    assert recheck(array, {"input": None, "truth": None}) == array == {"input": array["input"], "truth": None}


# --- reruns -------------------------------------------------------------------------------------------------


def record(out: Path, key: str) -> dict:
    return json.loads((out / "records" / f"{key}.json").read_text())


#: one item per batch: a batch's make-up changes a solve in the last bits
ONE_BY_ONE = [*TINY, "solver.batch_size=1"]


def test_a_rerun_redoes_exactly_the_changed_item_and_says_so(tmp_path) -> None:
    folder, out = tmp_path / "scans", tmp_path / "out"
    for i in range(3):
        image(folder / f"s{i}.png", i)
    assert compose(*ONE_BY_ONE, "-i", str(folder), "--out", str(out)).exit_code == 0
    before = json.loads((out / "metrics.json").read_text())
    stamps = {k: (out / "records" / f"{k}.json").stat().st_mtime_ns for k in ("s0", "s2")}
    pixels = np.asarray(Image.open(folder / "s1.png"))
    Image.fromarray(pixels[::-1].copy()).save(folder / "s1.png")  # the scan corrected: same name, flipped

    again = compose(*ONE_BY_ONE, "-i", str(folder), "--out", str(out))
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "s1.png: input changed since its record: redone" in text
    assert (
        "wrote 1 reconstruction(s) to" in text
        and "(1 redone: input or truth changed since its record)" in text
    )
    assert "2 of 3 item(s) already done" in text
    assert {k: (out / "records" / f"{k}.json").stat().st_mtime_ns for k in ("s0", "s2")} == stamps
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["s0"] == before["s0"] and metrics["s2"] == before["s2"] and metrics["s1"] != before["s1"]
    fresh = tmp_path / "fresh"
    assert compose(*ONE_BY_ONE, "-i", str(folder), "--out", str(fresh)).exit_code == 0
    assert metrics == json.loads((fresh / "metrics.json").read_text())  # the results of the data as it is now
    assert record(out, "s1")["fingerprint"] == record(fresh, "s1")["fingerprint"]
    assert record(out, "s1")["paths"] == {"input": str((folder / "s1.png").resolve()), "truth": None}

    unchanged = compose(*ONE_BY_ONE, "-i", str(folder), "--out", str(out))
    assert (
        "wrote 0 reconstruction(s)" in unchanged.output and "3 of 3 item(s) already done" in unchanged.output
    )
    assert "redone" not in unchanged.output


def test_a_changed_truth_is_redone_and_a_recompressed_file_is_not(tmp_path) -> None:
    nib = pytest.importorskip("nibabel")

    def volume(path: Path, seed: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        values = np.random.default_rng(seed).random((8, 8, 8), dtype=np.float32)
        nib.save(nib.Nifti1Image(values, np.eye(4)), path)
        return path

    scan, truth = volume(tmp_path / "in" / "scan.nii.gz", 0), volume(tmp_path / "truth" / "scan.nii", 1)
    out = tmp_path / "out"
    args = [*TINY, "gen.depth=8", "-i", str(scan), "--truth", str(tmp_path / "truth"), "--out", str(out)]
    first = compose(*args)
    assert first.exit_code == 0, first.output
    scan.write_bytes(gzip.compress(gzip.decompress(scan.read_bytes()), compresslevel=1, mtime=12345))
    same = compose(*args)
    assert "wrote 0 reconstruction(s)" in same.output and "1 of 1 item(s) already done" in same.output
    volume(truth, 2)
    redone = " ".join(compose(*args).output.split())
    assert "scan.nii.gz: truth changed since its record: redone" in redone and "1 redone" in redone, redone


def test_merge_leaves_out_and_counts_the_stale_records(tmp_path) -> None:
    folder, out = tmp_path / "scans", tmp_path / "out"
    for i in range(3):
        image(folder / f"s{i}.png", i)
    assert compose(*TINY, "-i", str(folder), "--out", str(out)).exit_code == 0
    image(folder / "s0.png", 10)
    (folder / "s2.png").unlink()
    merged = runner.invoke(app, ["merge", str(out)])
    assert merged.exit_code == 0, merged.output
    assert "1 item(s) done; 2 stale (input or truth changed or gone since its record" in " ".join(
        merged.output.split()
    )
    assert set(json.loads((out / "metrics.json").read_text())) == {"s1"}
