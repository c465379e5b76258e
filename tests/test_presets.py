"""BRGM presets: every number against the research notes (brgm.md §3.2, §3.3, §9), converted to [0, 1]."""

from __future__ import annotations

import pytest
import torch

import brgm
from brgm.core.plugins import registry
from brgm.plugins.likelihoods.pixel import PixelLikelihood
from brgm.plugins.solvers.map import MAPSolver

#: the references' own numbers (pixel weight for [0, 255] images), before any conversion
REFERENCE = {
    "brgm-tf": {
        "pixel": 0.001,
        "perceptual": 1.0,
        "resize": "tf",
        "reduction": "lpips",
        "gaussian": 100.0,
        "seed": 111,
        "colinear": 3.0,
        "colinear_reduction": "mean",
        "steps": 5000,
        "schedule": "brgm",
        "rampup": 0.05,
        "rampdown": 0.25,
        "init_jitter": 0.01,
        "downsample": "area",
        "fill": (1.0, (-1.0, 1.0)),  # fill value in the reference's own intensity range
    },
    "brgm-pt": {
        "pixel": 0.001,
        "perceptual": 1e7,
        "resize": "pt",
        "reduction": "mean",
        "gaussian": 100.0,
        "seed": 123,
        "colinear": 0.1,
        "colinear_reduction": "sum",
        "steps": 501,
        "schedule": "constant",
        "rampup": 0.0,
        "rampdown": 0.0,
        "init_jitter": 0.0,
        "downsample": "bicubic",
        "fill": (1.0, (0.0, 255.0)),
    },
}
REFERENCE["brgm-pt-sr16"] = {**REFERENCE["brgm-pt"], "colinear": 1.0}
REFERENCE["brgm-tf-noperc"] = {
    k: v for k, v in REFERENCE["brgm-tf"].items() if k not in ("perceptual", "resize", "reduction")
}

KEYS = {
    "pixel": "like.pixel.weight",
    "perceptual": "like.perceptual.weight",
    "resize": "like.perceptual.resize",
    "reduction": "like.perceptual.reduction",
    "gaussian": "prior.gaussian.weight",
    "seed": "prior.gaussian.seed",
    "colinear": "prior.colinear.weight",
    "colinear_reduction": "prior.colinear.reduction",
    "steps": "solver.steps",
    "schedule": "solver.schedule",
    "rampup": "solver.rampup",
    "rampdown": "solver.rampdown",
    "init_jitter": "solver.init_jitter",
    "downsample": "fwd.downsample.method",
    "fill": "fwd.mask.fill",
}
ROWS = [(name, item, value) for name, ref in REFERENCE.items() for item, value in ref.items()]


def in_unit_range(item: str, reference: object) -> object:
    """A reference value converted to brgm's [0, 1] intensities."""
    if item == "pixel":  # λ·mean((255·Δ)²) = 255²·λ·mean(Δ²)
        return reference * 255**2  # type: ignore[operator]
    if item == "fill":
        value, (lo, hi) = reference  # type: ignore[misc]
        return (value - lo) / (hi - lo)
    return reference


def expected(value: object) -> object:
    """``value`` itself for names, ``pytest.approx`` for numbers (which accepts no strings since pytest 9)."""
    return value if isinstance(value, str) else pytest.approx(value, rel=1e-12)


def preset(name: str) -> brgm.core.presets.Preset:
    return registry().get("preset", name).obj


@pytest.mark.parametrize(("name", "item", "reference"), ROWS, ids=[f"{n}-{i}" for n, i, _ in ROWS])
def test_preset_values_are_the_references(name: str, item: str, reference: object) -> None:
    assert preset(name).values[KEYS[item]] == expected(in_unit_range(item, reference))


@pytest.mark.parametrize("name", list(REFERENCE))
def test_shared_settings_and_nothing_unaccounted(name: str) -> None:
    values = preset(name).values
    shared = {
        "solver.lr": 0.1,
        "solver.betas": (0.9, 0.999),
        "solver.eps": 1e-8,
        "prior.gaussian.n_samples": 10000,
        "like.pixel.reduction": "mean",
        "prior.gaussian.reduction": "mean",
    }
    if "perceptual" in REFERENCE[name]:
        shared["like.perceptual.net"] = "vgg"
    assert {k: values[k] for k in shared} == shared
    assert set(values) == {KEYS[item] for item in REFERENCE[name]} | set(shared)
    likes = "pixel+perceptual" if "perceptual" in REFERENCE[name] else "pixel"
    assert preset(name).select == {"like": likes, "prior": "gaussian+colinear"}
    assert preset(name).notes and registry().get("preset", name).plugin == "brgm.plugins.presets"


def test_pixel_weight_reproduces_brgm_energy_on_0_255_images() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (
        torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64),
        torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64),
    )
    for name in REFERENCE:
        ours = preset(name).values["like.pixel.weight"] * PixelLikelihood(reduction="mean").energy(x, y, None)  # type: ignore[arg-type]
        brgm_energy = 0.001 * ((255 * x - 255 * y) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(ours, brgm_energy, rtol=1e-12)


def test_variants_differ_from_their_base_only_where_documented() -> None:
    pt, sr16 = preset("brgm-pt").values, preset("brgm-pt-sr16").values
    assert {k for k in pt if pt[k] != sr16[k]} == {"prior.colinear.weight"}
    assert "×16" in preset("brgm-pt-sr16").description and "λ_c = 1" in preset("brgm-pt-sr16").notes
    tf, noperc = preset("brgm-tf").values, preset("brgm-tf-noperc").values
    assert noperc == {k: v for k, v in tf.items() if not k.startswith("like.perceptual.")}


def test_learning_rate_schedules() -> None:
    tf = MAPSolver(
        **{
            k.removeprefix("solver."): v
            for k, v in preset("brgm-tf").values.items()
            if k.startswith("solver.")
        }
    )
    pt = MAPSolver(
        **{
            k.removeprefix("solver."): v
            for k, v in preset("brgm-pt").values.items()
            if k.startswith("solver.")
        }
    )
    assert [tf.learning_rate(s) for s in (0, 125, 250, 2500)] == [0.0, 0.05, 0.1, 0.1]
    assert tf.learning_rate(4375) == pytest.approx(0.05)  # halfway down the 25% cosine ramp
    assert {pt.learning_rate(s) for s in (0, 250, 500)} == {0.1}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_presets_compose_and_run(name: str) -> None:
    overrides = {"gen.size": 32, "solver.steps": 2}
    if "perceptual" in REFERENCE[name]:
        overrides |= {"like.perceptual.net": "alex", "like.perceptual.random_backbone_seed": 0}
    problem = brgm.compose(gen="tiny", fwd="test_scale", preset=name, device="cpu", **overrides)
    weights = {t.name: t.weight for t in (*problem.likelihoods, *problem.priors)}
    assert weights["pixel"] == pytest.approx(REFERENCE[name]["pixel"] * 255**2)
    assert weights["colinear"] == REFERENCE[name]["colinear"]
    assert problem.solver.schedule == REFERENCE[name]["schedule"]
    assert problem.config["preset_notes"] == preset(name).notes
    result = brgm.reconstruct(
        problem, torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.5
    )
    assert torch.isfinite(result.history["total"]).all()


def test_forward_model_values_reach_the_forward_models() -> None:
    for name in REFERENCE:
        for fwd, field, item in (("downsample", "method", "downsample"), ("mask", "fill", "fill")):
            problem = brgm.compose(gen="tiny", fwd=fwd, preset=name, device="cpu", likelihoods=["pixel"])
            assert getattr(problem.forward_model, field) == expected(
                in_unit_range(item, REFERENCE[name][item])
            )
