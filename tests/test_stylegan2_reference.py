"""StyleGAN2Generator against NVIDIA's own outputs (stylegan2-ada-pytorch @ d72cc7d) for the same weights.

The fixture (``stylegan2_ada_tiny``: 32², 1 channel, 'skip', conv_clamp active) lives under
``$BRGM_REFERENCE_FIXTURES`` (default ``<repo>/../shared/fixtures``); its README defines every array.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brgm.plugins.generators.stylegan2 import StyleGAN2Generator
from tests.conftest import DEVICES

FIXTURES = Path(
    os.environ.get("BRGM_REFERENCE_FIXTURES", Path(__file__).parents[1] / ".." / "shared" / "fixtures")
)
TINY = FIXTURES / "stylegan2_ada_tiny"

pytestmark = pytest.mark.skipif(
    not (TINY / "state_dict.safetensors").is_file(),
    reason=f"NVIDIA reference fixture not found at {TINY} (set BRGM_REFERENCE_FIXTURES)",
)


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    """max|ours − ref| / max|ref|."""
    ours_np = ours.detach().cpu().numpy().astype(ref.dtype)
    return float(np.abs(ours_np - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    with np.load(TINY / "cases.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return load_file(TINY / "state_dict.safetensors")


def build(
    state_dict: dict[str, torch.Tensor],
    *,
    fused: bool = True,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
):
    G = StyleGAN2Generator(**nvidia_init_kwargs()["ada"], fused_modconv=fused).eval().requires_grad_(False)
    G.load_state_dict(state_dict, strict=True)
    return G.to(device, dtype)


def render(G: StyleGAN2Generator, cases: dict[str, np.ndarray], suffix: str = "") -> dict[str, torch.Tensor]:
    """Every reference array's counterpart, computed in G's dtype and on G's device from the fixture's inputs."""
    dtype, device = G.mapping_network.w_avg.dtype, G.device
    z = torch.from_numpy(cases["z"]).to(device)
    out = {
        "ws_from_z": G.mapping(z),
        "ws_trunc": G.mapping(z, truncation_psi=0.7),
        "ws_trunc_cutoff": G.mapping(z, truncation_psi=0.7, truncation_cutoff=2),
    }
    ws = torch.from_numpy(cases["ws_from_z" + suffix]).to(device, dtype)
    out["img_const"] = G.synthesis(ws, noise_mode="const")
    out["img_none"] = G.synthesis(ws, noise_mode="none")
    ws_random = torch.from_numpy(cases["ws_random"]).to(device, dtype).requires_grad_(True)
    img = G.synthesis(ws_random, noise_mode="const")
    (img * torch.from_numpy(cases["grad_weights"]).to(device, dtype)).sum().backward()
    out["img_wplus"] = img
    out["grad_wplus"] = ws_random.grad
    return out


def nvidia_init_kwargs() -> dict[str, dict]:
    """G_ema's ``_init_kwargs``: as pickled by stylegan2-ada-pytorch, and as legacy.py converts the TF pickle."""
    verification = json.loads((TINY / "verification.json").read_text())
    return {
        "ada": json.loads((TINY / "config.json").read_text())["init_kwargs"],
        "tf-converted": verification["tf_converted_G_ema_init_kwargs"],
    }


@pytest.mark.parametrize("source", ["ada", "tf-converted"])
def test_state_dict_keys_and_shapes_are_nvidias(state_dict, source):
    ours = StyleGAN2Generator(**nvidia_init_kwargs()[source]).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state_dict.items()}
    assert (
        next(iter(ours)) == "synthesis.b4.const"
    )  # NVIDIA order: synthesis first, own tensors before children


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "non-fused"])
def test_float32_matches_nvidia(state_dict, cases, fused, device):
    out = render(build(state_dict, fused=fused, device=device), cases)
    for name, ours in out.items():
        tol = 1e-3 if name == "grad_wplus" else 1e-4
        assert rel_err(ours, cases[name]) < tol, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "non-fused"])
def test_float64_matches_nvidia_float64(state_dict, cases, fused, device):
    out = render(build(state_dict, fused=fused, dtype=torch.float64, device=device), cases, suffix="_f64")
    for name in ("ws_from_z", "ws_trunc", "img_const", "img_none", "img_wplus", "grad_wplus"):
        assert out[name].dtype == torch.float64
        assert rel_err(out[name], cases[name + "_f64"]) < 1e-9, name


def test_w_stats_match_brgm_definition(state_dict, cases):
    G = build(state_dict)
    mean, std = G.w_stats(n=10000, seed=123)
    assert mean.shape == (64,) and std.shape == ()
    assert rel_err(mean, cases["w_mean_10k"]) < 1e-5
    assert abs(float(std) - float(cases["w_std_10k"])) / float(cases["w_std_10k"]) < 1e-5
    assert G.w_stats() is G.w_stats(10000, 123)  # cached per (n, seed)


def test_wrong_weights_are_caught(state_dict, cases):
    perturbed = dict(state_dict)
    perturbed["synthesis.b16.conv1.bias"] = state_dict["synthesis.b16.conv1.bias"] + 0.01
    G = build(perturbed)
    img = G.synthesis(torch.from_numpy(cases["ws_from_z"]), noise_mode="const")
    assert rel_err(img, cases["img_const"]) > 1e-3
    G.load_state_dict(state_dict)
    assert rel_err(G.synthesis(torch.from_numpy(cases["ws_from_z"])), cases["img_const"]) < 1e-4


def test_loading_refreshes_w_stats(state_dict, cases):
    G = StyleGAN2Generator(**nvidia_init_kwargs()["ada"])
    before = G.w_stats(n=100)[0]
    G.load_state_dict(state_dict)
    after = G.w_stats(n=100)[0]
    assert not torch.equal(before, after)
    assert rel_err(G.mapping_network.w_avg, state_dict["mapping.w_avg"].numpy()) == 0


def test_strict_loading_rejects_missing_and_misshapen_keys(state_dict):
    G = StyleGAN2Generator(**nvidia_init_kwargs()["ada"])
    missing = {k: v for k, v in state_dict.items() if k != "synthesis.b8.conv0.noise_strength"}
    with pytest.raises(RuntimeError, match="noise_strength"):
        G.load_state_dict(missing)
    misshapen = dict(state_dict, **{"synthesis.b4.const": torch.zeros(64, 5, 4)})
    with pytest.raises(RuntimeError, match=r"synthesis\.b4\.const"):
        G.load_state_dict(misshapen)
