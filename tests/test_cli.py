"""The command line: listing plugins, composing, exit status 2 with a helpful message for every bad input."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from brgm.cli.app import app
from brgm.core.compose import default_device

runner = CliRunner()
BASE = ["compose", "gen=tiny", "fwd=test_scale", "like=test_sse", "prior=none"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_plugins_json_lists_every_component_with_plugin_and_version() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    listed = {(c["kind"], c["name"]): c for c in json.loads(result.output)}
    tiny = listed[("generator", "tiny")]
    assert tiny["plugin"] == "tests.plugins.test_plugin"
    assert tiny["description"] == "A tiny linear-tanh generator for tests (random weights, seeded)."
    assert {p["name"] for p in tiny["params"]} == {"size", "depth", "channels", "seed"}
    assert {kind for kind, _ in listed} >= {"generator", "forward_model", "likelihood", "prior", "preset"}


def test_plugins_table_and_kind_filter() -> None:
    result = invoke("plugins", "--kind", "forward_model")
    assert result.exit_code == 0
    assert "test_scale" in result.output and "tiny" not in result.output


def test_dry_run_prints_the_resolved_configuration() -> None:
    result = invoke(*BASE, "fwd.factor=2", "--steps", "9", "--dry-run")
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.output)
    assert cfg["fwd"] == [{"name": "test_scale", "factor": 2.0}]
    assert cfg["solver"]["steps"] == 9 and cfg["gen"]["name"] == "tiny"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["compose", "gen=nosuchgen", "fwd=test_scale", "--dry-run"],
            "unknown generator 'nosuchgen' (did you mean",
        ),
        ([*BASE, "fwd.nosuchkey=1", "--dry-run"], "valid keys: fwd.factor"),
        ([*BASE, "fwd.factor=-4", "--dry-run"], "factor must be in (0, inf], got -4.0"),
        ([*BASE, "--dry-run", "notakeyvalue"], "expected KEY=VALUE"),
        ([*BASE, "--input-kind", "guess", "--dry-run"], "--input-kind must be auto, image or measurement"),
        ([*BASE], "--input is required"),
        ([*BASE, "fwd.factor=1e309", "--dry-run"], "factor must be in (0, inf], got inf"),
        ([*BASE, "solver.lr=inf", "--dry-run"], "lr must be in (0, inf], got inf"),
        ([*BASE, "solver.lr=nan", "--dry-run"], "lr must be in (0, inf], got nan"),
        ([*BASE, "solver.steps=1e309", "--dry-run"], "solver.steps must be an integer, got '1e309'"),
        ([*BASE, "--seed", str(2**70), "--dry-run"], "--seed must be an integer in [0, 2**63 - 1]"),
        ([*BASE, "--device", "tpu", "--dry-run"], "device must be cpu, cuda or cuda:N, got 'tpu'"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


tokens = st.lists(
    st.one_of(
        st.from_regex(
            r"(gen|fwd|like|prior|preset|solver|x)(\.[a-z_]{1,8}){0,2}=[-+a-z0-9_.\[\],]{0,10}",
            fullmatch=True,
        ),
        st.text(alphabet="abc=.+-", max_size=6).filter(lambda s: not s.startswith("-")),
    ),
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens)
def test_generated_overrides_never_traceback(extra: list[str]) -> None:
    result = invoke(*BASE, *extra, "--dry-run")
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert "error:" in result.output


@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_a_missing_gpu_is_a_configuration_error(monkeypatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    result = invoke(*BASE, "--device", device, "--dry-run")
    assert result.exit_code == 2, result.output
    assert f"device '{device}': this machine has no CUDA device; use cpu" in " ".join(result.output.split())


def test_a_gpu_index_beyond_the_machines_is_a_configuration_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = invoke(*BASE, "--device", "cuda:7", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "has 2 CUDA device(s), cuda:0 to cuda:1" in " ".join(result.output.split())


@pytest.mark.parametrize(("local_rank", "expected"), [(None, "cuda:0"), ("0", "cuda:0"), ("3", "cuda:1")])
def test_the_default_device_is_the_processs_own_gpu(monkeypatch, local_rank, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert default_device() == torch.device(expected)


def test_a_diverging_run_is_noted_in_metrics_and_fails_with_strict(tmp_path) -> None:
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).random((8, 8), dtype=np.float32))
    args = [*BASE, "prior=test_spread", "solver.lr=1e6", "solver.schedule=constant", "--steps", "20"]
    result = invoke(*args, "--input", str(image), "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "the solve diverged" in " ".join(result.output.split())
    entry = json.loads((tmp_path / "a" / "metrics.json").read_text())["x"]
    assert entry["diverged"] is True and "try a smaller solver.lr (now 1e+06)" in entry["warning"]
    strict = invoke(*args, "--strict", "--input", str(image), "--out", str(tmp_path / "b"))
    assert strict.exit_code == 1, strict.output
    calm = invoke(*BASE, "--steps", "5", "--strict", "--input", str(image), "--out", str(tmp_path / "c"))
    assert calm.exit_code == 0, calm.output
    assert "diverged" not in json.loads((tmp_path / "c" / "metrics.json").read_text())["x"]


def test_every_output_gets_the_same_permissions(tmp_path) -> None:
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).random((8, 8), dtype=np.float32))
    result = invoke(*BASE, "--steps", "2", "--input", str(image), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert len(set(modes.values())) == 1, modes
    assert {"out/x_latents.safetensors", "out/records/x.json", "out/metrics.json"} <= set(modes)


@pytest.mark.parametrize(
    ("fwd", "message"),
    [
        ("kspace+kspace", "'kspace' takes real images, but 'kspace' before it measures complex k-space"),
        ("kspace+blur", "apply 'blur' first (fwd=blur+kspace)"),
    ],
)
def test_a_chain_after_kspace_is_a_configuration_error(tmp_path, fwd: str, message: str) -> None:
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((8, 8), dtype=np.float32))
    result = invoke("compose", "gen=tiny", f"fwd={fwd}", "--input", str(image), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
