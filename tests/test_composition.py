"""Every registered generator × every compatible forward model composes, runs, lowers its energy, and keeps
gradients finite. A generator or forward model registered without settings here fails the suite."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch

import brgm
from brgm.core.errors import ShapeError, WeightsNotFoundError
from brgm.core.plugins import registry
from brgm.core.terms import Latents
from tests.conftest import FIXTURES

#: small settings for every registered generator (None: needs published weights that tests never download)
GENERATORS: dict[str, dict[str, Any] | None] = {
    "tiny": {"size": 16},
    "file": {"path": str(FIXTURES / "stylegan2_ada_tiny" / "network-ada.pkl")},
    "stylegan2": {"resolution": 16, "channel_base": 256, "channel_max": 16, "z_dim": 16, "w_dim": 16},
    "stylegan2-ffhq": None,
    "stylegan2-xray": None,
    "stylegan2-brains": None,
    "demo-brain64": {},
    "stylegan3d": {"base_shape": (2, 3, 2), "resolution": 8, "fmaps": 8, "z_dim": 8, "w_dim": 8},
    "stylegan3d-brain-2mm": None,
}
#: forward-model settings that differ from the defaults for these small images
FORWARD: dict[str, dict[str, Any]] = {"downsample": {"factor": 2}, "kspace": {"acceleration": 2}}


def test_every_registered_generator_has_test_settings() -> None:
    missing = set(registry().names("generator")) - set(GENERATORS)
    assert not missing, f"add tiny settings for {missing} to GENERATORS"


@functools.cache
def generator(name: str) -> brgm.core.generator.Generator:
    params = GENERATORS[name]
    if name == "file" and not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return brgm.load_generator(name, **params)


def compatible(gen: str, fwd: str) -> bool:
    G = generator(gen)
    op = brgm.forward_model(fwd, **FORWARD.get(fwd, {}))
    try:
        op.output_shape((1, G.img_channels, *G.img_shape))
    except ShapeError:
        return False
    return True


PAIRS = [
    (gen, fwd)
    for gen in registry().names("generator")
    if GENERATORS.get(gen) is not None and (gen != "file" or FIXTURES.is_dir())
    for fwd in registry().names("forward_model")
    if compatible(gen, fwd)
]


def test_published_presets_without_weights_fail_clearly() -> None:
    for name, params in GENERATORS.items():
        if params is None and ("generator", name) in registry():
            with pytest.raises(WeightsNotFoundError, match="brgm weights fetch"):
                brgm.load_generator(name)


def test_every_forward_model_composes_with_some_generator() -> None:
    used = {fwd for _, fwd in PAIRS}
    assert used == set(registry().names("forward_model"))


@pytest.mark.parametrize(("gen", "fwd"), PAIRS)
def test_composition_runs_lowers_energy_and_keeps_gradients_finite(gen: str, fwd: str) -> None:
    G = generator(gen)
    overrides = {f"fwd.{k}": v for k, v in FORWARD.get(fwd, {}).items()}
    problem = brgm.compose(gen=G, fwd=fwd, priors=["gaussian", "colinear"], device="cpu", **overrides)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = problem.forward_model(problem.image(Latents(ws=G.mapping(z))))
    ws = G.w_stats()[0].reshape(1, 1, -1).repeat(2, G.num_ws, 1).requires_grad_(True)
    _, terms = problem.energies(Latents(ws=ws), y)
    sum(terms.values()).sum().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    result = brgm.reconstruct(problem, y, steps=6, seed=0, schedule="constant", lr=0.002)
    total = result.history["total"]
    assert torch.isfinite(total).all()
    assert (total[-1] < total[0]).all(), total
