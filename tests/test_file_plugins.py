"""File formats and checkpoint readers are plugins: a test plugin's toy format and toy checkpoint reader are used
by ``io.load``/``io.save``, ``brgm compose`` and ``brgm.load_generator`` without any change to brgm, and listed
by ``brgm plugins``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import brgm
from brgm.cli.app import app
from brgm.core import io
from brgm.core.compose import checkpoint_readers
from brgm.core.errors import CheckpointError, ImageFileError
from brgm.core.plugins import pm
from brgm.plugins.generators.checkpoints import read_checkpoint
from tests.plugins import toy_files

PLUGIN = "tests.plugins.toy_files"
TINY = ["gen=tiny", "fwd=test_scale", "like=test_sse", "prior=none", "solver.steps=3"]
runner = CliRunner()


@pytest.fixture
def toy_plugin():
    pm.register(toy_files, name=PLUGIN)
    yield toy_files
    pm.unregister(name=PLUGIN)


def toy_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.random.default_rng(seed).random((8, 8))
    path.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows) + "\n")
    return path


def test_a_plugin_format_is_read_and_written_by_suffix(toy_plugin, tmp_path) -> None:
    path = toy_image(tmp_path / "scan.TOY")
    assert io.detect_format(path) == "toy"
    assert io.split_suffix(path) == (tmp_path / "scan", ".toy")
    loaded = io.load(path)
    assert loaded.data.shape == (1, 1, 8, 8) and loaded.meta.format == "toy"
    assert io.output_suffix(loaded.meta) == ".toy"
    assert io.output_suffix(loaded.meta, is_complex=True) == ".npy"
    out = io.save(tmp_path / "out.toy", loaded.data[0] * 0.5, loaded.meta)
    assert torch.allclose(io.load(out).data, loaded.data * 0.5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.toy", "scan.TOY"]  # no temporary file left
    with pytest.raises(
        ImageFileError, match=r"complex data \(k-space\) can only be written to \.npy or \.pt"
    ):
        io.save(tmp_path / "k.toy", torch.zeros(1, 8, 8, dtype=torch.complex64), loaded.meta)
    with pytest.raises(
        ImageFileError, match=r"unknown output type '\.bmp'; brgm writes PNG, .*, toy text \(\.toy\)"
    ):
        io.save(tmp_path / "x.bmp", loaded.data[0], loaded.meta)


def test_without_the_plugin_the_format_is_unknown(tmp_path) -> None:
    path = toy_image(tmp_path / "scan.toy")
    with pytest.raises(ImageFileError, match=r"unknown file type '\.toy'; brgm reads PNG, JPEG, TIFF, DICOM"):
        io.load(path)
    assert ".toy" not in io.input_suffixes()


def test_compose_reads_and_writes_a_plugin_format(toy_plugin, tmp_path) -> None:
    single = toy_image(tmp_path / "x.toy", 1)
    toy_image(tmp_path / "folder" / "y.toy", 2)
    for name, given in (("x", single), ("y", tmp_path / "folder")):  # a file, and a directory expanded
        out = tmp_path / f"out_{name}"
        result = runner.invoke(app, ["compose", *TINY, "--input", str(given), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert set(json.loads((out / "metrics.json").read_text())) == {name}
        for output in ("recon", "baseline", "measurement"):
            written = io.load(out / f"{name}_{output}.toy")
            assert written.data.shape == (1, 1, 8, 8) and written.meta.format == "toy"


def test_a_plugin_checkpoint_reader_loads_a_generator(toy_plugin, tmp_path) -> None:
    path = tmp_path / "g.toygen"
    path.write_bytes(toy_files.MAGIC + b"3")
    assert read_checkpoint(path, checkpoint_readers()).format == "toygen"
    G = brgm.load_generator(str(path))
    expected = toy_files.toy_source(3).load().state_dict()
    assert G.state_dict().keys() == expected.keys()
    assert all(torch.equal(G.state_dict()[k], v) for k, v in expected.items())
    pm.unregister(name=PLUGIN)
    try:
        with pytest.raises(
            CheckpointError, match=r"not a checkpoint brgm knows \(it starts with b'TOYGEN 3'\)"
        ):
            brgm.load_generator(str(path))
    finally:
        pm.register(toy_files, name=PLUGIN)


def test_unknown_checkpoints_name_every_registered_reader(toy_plugin, tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"brgm reads torch\.save zip files.*; toy generator files"):
        brgm.load_generator(str(path))


def test_plugins_json_lists_formats_and_readers_with_plugin_and_version(toy_plugin) -> None:
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {(c["kind"], c["name"]): c for c in json.loads(result.output)}
    for kind, name, description in [
        ("format", "toy", "toy text images (.toy)"),
        ("checkpoint_reader", "toygen", "toy generator files (TOYGEN and a seed)"),
    ]:
        entry = listed[(kind, name)]
        assert (entry["plugin"], entry["version"], entry["description"], entry["params"]) == (
            PLUGIN,
            "0.0.7",
            description,
            [],
        )
    assert listed[("format", "png")]["plugin"] == "brgm.core.io.formats.builtin"
    assert listed[("checkpoint_reader", "pickle")]["plugin"] == "brgm.plugins.generators"
    table = runner.invoke(app, ["plugins", "--kind", "format"])
    assert table.exit_code == 0 and "toy" in table.output and "nifti" in table.output
