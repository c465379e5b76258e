"""The third-party example plugin, made visible through its entry point exactly as an installed package is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "brgm-plugin-example"


def install_entry_points(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """Write the ``.dist-info`` an installer would write: importlib.metadata finds the entry points there."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[brgm]\n{lines}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    install_entry_points(site, "brgm-plugin-example", "0.1.0", {"example": "brgm_plugin_example"})
    # the suite's own tiny generator, published the same way so the subprocess has a fast generator
    install_entry_points(site, "brgm-test-plugin", "0.0.1", {"tiny": "tests.plugins.test_plugin"})
    env = {k: v for k, v in os.environ.items() if k != "BRGM_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(EXAMPLE / "src"), str(REPO)])
    return env


def brgm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brgm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plugins_lists_the_example_components_with_their_version(env: dict[str, str]) -> None:
    result = brgm(env, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    listed = {(c["kind"], c["name"]): c for c in json.loads(result.stdout)}
    row_skip, sphere = listed[("forward_model", "row_skip")], listed[("prior", "sphere")]
    assert row_skip["plugin"] == "example" and row_skip["version"] == "brgm-plugin-example 0.1.0"
    assert sphere["plugin"] == "example" and sphere["description"].startswith(
        "Keeps every W+ vector near the sphere"
    )
    assert row_skip["params"] == [{"name": "step", "type": "int", "default": 2}]
    gd = listed[("solver", "gd")]
    assert gd["plugin"] == "example" and gd["version"] == "brgm-plugin-example 0.1.0"
    assert [p["name"] for p in gd["params"]] == ["steps", "lr"]
    assert listed[("solver", "map")]["plugin"] == "brgm.plugins.solvers"


def test_autoload_can_be_turned_off(env: dict[str, str]) -> None:
    result = brgm({**env, "BRGM_DISABLE_PLUGIN_AUTOLOAD": "1"}, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    assert "row_skip" not in {c["name"] for c in json.loads(result.stdout)}


def test_compose_runs_with_the_example_forward_model_and_prior(env: dict[str, str], tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    np.save(tmp_path / "clean.npy", image[None])
    out = tmp_path / "out"
    result = brgm(
        env, "compose", "gen=tiny", "fwd=row_skip", "fwd.step=3", "prior=gaussian+sphere", "solver.steps=5",
        "--input", str(tmp_path / "clean.npy"), "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["fwd"] == [{"name": "row_skip", "step": 3}]
    assert [p["name"] for p in config["prior"]] == ["gaussian", "sphere"]
    assert np.load(out / "clean_recon.npy").shape == (1, 8, 8)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["clean"]) == {"recon", "baseline", "noise"}
    assert metrics["clean"]["noise"]["source"] == "estimated"


def test_compose_runs_with_the_example_solver(env: dict[str, str], tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    np.save(tmp_path / "clean.npy", image[None])
    out = tmp_path / "out"
    args = ["compose", "gen=tiny", "fwd=row_skip", "prior=gaussian", "solver=gd", "solver.steps=4"]
    bad = brgm(env, *args, "solver.lrr=0.1", "--dry-run")
    assert bad.returncode == 2 and "solver.lrr: no such parameter (did you mean 'lr'?)" in bad.stderr
    result = brgm(
        env, *args, "solver.lr=0.05", "solver.batch_size=1",
        "--input", str(tmp_path / "clean.npy"), "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["solver"] == {"name": "gd", "steps": 4, "lr": 0.05}
    assert config["execution"]["batch_size"] == 1
    assert np.load(out / "clean_recon.npy").shape == (1, 8, 8)
