"""Stored calibrations of a sampler's std: the split-conformal factors, their file (round trip, hostile files),
which configuration they hold for, ``brgm calibrate`` and ``compose`` applying one, and demo-brain64's shipped
one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import brgm
from brgm.cli.app import app
from brgm.core import calibration
from brgm.core.diagnostics import calibration_metrics, coverage, level_name
from brgm.core.errors import ConfigError
from brgm.core.io import calibrations
from brgm.core.plugins import registry

runner = CliRunner()
TINY = ["gen=tiny", "gen.size=16", "fwd=kspace+gaussian_noise", "fwd.sigma=0.05", "prior=gaussian"]
FAST = ["solver=laplace", "solver.map_steps=5", "solver.samples=4"]


def config(*settings: str) -> dict:
    return brgm.compose(**dict(s.split("=", 1) for s in settings), device="cpu").config


def test_conformal_factor_is_the_rank_of_n_plus_one_times_the_level() -> None:
    scores = torch.arange(1, 101, dtype=torch.float64).flip(0)  # 100 scores, in any order
    assert calibration.conformal_factor(scores, 0.9) == 91.0 * (1 + 1e-12)  # ⌈101·0.9⌉ = 91st smallest
    assert calibration.conformal_factor(scores, 0.5) == 51.0 * (1 + 1e-12)
    assert calibration.conformal_factor(scores, 0.999) == 100.0 * (
        1 + 1e-12
    )  # the rank passes n: the largest
    with pytest.raises(ConfigError, match="at least one foreground pixel"):
        calibration.conformal_factor(torch.empty(0), 0.9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 400), level=st.sampled_from([0.5, 0.8, 0.9]), seed=st.integers(0, 2**16))
def test_the_fitted_factor_covers_at_least_the_level_of_its_own_pixels(
    n: int, level: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    truth = 0.1 + 0.8 * torch.rand(1, 1, 1, n, generator=gen, dtype=torch.float64)
    std = 0.01 + torch.rand(truth.shape, generator=gen, dtype=torch.float64) * 0.05
    mean = truth + std * torch.randn(truth.shape, generator=gen, dtype=torch.float64) * 3
    fitted = calibration.fit(mean, std, truth, {}, levels=(level,))
    k = fitted.factors[level_name(level)]
    # exactly the conformal rank's share: the pixel at the rank is inside despite rounding, the next is not
    assert coverage(mean, k * std, truth, level) == min(n, math.ceil((n + 1) * level)) / n


def test_fit_recovers_the_factor_of_gaussian_errors_and_metrics_apply_it() -> None:
    gen = torch.Generator().manual_seed(0)
    truth = torch.full((4, 1, 64, 64), 0.5, dtype=torch.float64)
    std = 0.01 + 0.02 * torch.rand(truth.shape, generator=gen, dtype=torch.float64)
    mean = truth + 3.0 * std * torch.randn(
        truth.shape, generator=gen, dtype=torch.float64
    )  # std 3× too small
    fitted = calibration.fit(mean, std, truth, {"gen": {"name": "x"}})
    assert fitted.factors["90"] == pytest.approx(3.0, rel=0.03)
    assert fitted.factors["50"] == pytest.approx(3.0, rel=0.03)
    assert (fitted.pairs, fitted.pixels) == (4, 4 * 64 * 64)
    raw = calibration_metrics(mean, std, truth)["foreground"]
    cal = calibration_metrics(mean, std, truth, factors=fitted.factors)["foreground"]
    assert raw["coverage90"] < 0.5
    assert cal["coverage90"] == pytest.approx(0.9, abs=1e-3)
    assert cal["coverage50"] == pytest.approx(0.5, abs=1e-3)
    assert cal["spearman"] == raw["spearman"]


def test_fit_refuses_collapsed_draws_and_mismatched_shapes() -> None:
    truth = torch.full((1, 1, 8, 8), 0.5)
    with pytest.raises(ConfigError, match="std is 0 on too many foreground pixels"):
        calibration.fit(truth + 0.1, torch.zeros_like(truth), truth, {})
    with pytest.raises(ConfigError, match="differ"):
        calibration.fit(truth, truth[..., :4], truth, {})


def test_a_calibration_file_round_trips_and_an_entry_of_the_same_key_is_replaced(tmp_path) -> None:
    path = tmp_path / "sub" / "cal.json"
    first = calibration.Calibration({"90": 2.0, "50": 1.5}, {"solver": {"name": "laplace"}}, 3, 100, "three")
    other = calibration.Calibration({"90": 4.0}, {"solver": {"name": "vi"}}, 1, 10)
    calibrations.save(path, first)
    calibrations.save(path, other)
    assert calibrations.load(path) == [first, other]
    assert all(c.source == str(path) for c in calibrations.load(path))
    again = attrs_evolve(first, factors={"90": 5.0, "50": 2.0})
    calibrations.save(path, again)
    assert calibrations.load(path) == [other, again]


def attrs_evolve(c: calibration.Calibration, **changes) -> calibration.Calibration:
    import attrs

    return attrs.evolve(c, **changes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "cannot be read"),
        ('{"key": {}}', "expected a list"),
        ('[{"key": {}, "factors": {"90": -1}, "pairs": 1, "pixels": 1}]', "finite number > 0"),
        ('[{"key": {}, "factors": {"90": NaN}, "pairs": 1, "pixels": 1}]', "finite number > 0"),
        ('[{"key": {}, "factors": {"50": 1}, "pairs": 1, "pixels": 1}]', "levels"),
        ('[{"key": [], "factors": {"90": 1}, "pairs": 1, "pixels": 1}]', "key must be"),
        ('[{"factors": {"90": 1}}]', "needs key, factors, pairs and pixels"),
        (b"\xff\xfe", "cannot be read"),
    ],
)
def test_a_bad_calibration_file_is_a_config_error_naming_it(tmp_path, text, message) -> None:
    path = tmp_path / "cal.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        calibrations.load(path)


def test_a_huge_calibration_file_is_refused_unread(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cal.json"
    path.write_text("[" + " " * 200 + "]")
    monkeypatch.setattr(calibrations, "MAX_FILE_BYTES", 100)
    with pytest.raises(ConfigError, match="more than 100"):
        calibrations.load(path)


def test_a_calibration_holds_for_its_configuration_whatever_the_seeds_batch_or_device() -> None:
    base = config(*TINY, *FAST)
    entry = calibration.Calibration({"90": 2.0}, calibration.configuration_key(base), 1, 1)
    same = config(*TINY, *FAST, "fwd.kspace.seed=7", "fwd.gaussian_noise.seed=3", "solver.batch_size=2")
    assert calibration.find([entry], same) is entry
    for changed in ("fwd.acceleration=8", "fwd.sigma=0.1", "solver.map_steps=6", "prior=gaussian+deviation"):
        assert calibration.find([entry], config(*TINY, *FAST, changed)) is None, changed


def test_choose_says_which_calibration_and_why_none(tmp_path) -> None:
    base = config(*TINY, *FAST)
    fitted = calibration.Calibration(
        {"90": 2.0, "50": 1.2}, calibration.configuration_key(base), 2, 50, "two"
    )
    path = tmp_path / "cal.json"
    calibrations.save(path, fitted)
    found, note = calibrations.choose(str(path), None, base)
    assert found is not None and found.factors == fitted.factors and found.source == str(path)
    assert "k90 = 2" in note and "fitted on two" in note
    assert calibrations.choose("auto", path, base)[0] == fitted  # the generator's shipped file
    assert calibrations.choose("none", path, base) == (None, calibrations.choose("none", None, base)[1])
    none, note = calibrations.choose("auto", None, base)
    assert none is None and "no calibration fitted for this configuration" in note
    other = config(*TINY, *FAST, "fwd.acceleration=8")
    assert calibrations.choose("auto", path, other)[0] is None
    with pytest.raises(ConfigError, match="holds no calibration for this configuration"):
        calibrations.choose(str(path), None, other)
    assert calibrations.choose("auto", path, base, samples=False) == (None, "")  # MAP: no std
    with pytest.raises(ConfigError, match="no std to calibrate"):
        calibrations.choose(str(path), None, base, samples=False)


def test_brgm_calibrate_then_compose_applies_it_and_writes_raw_and_calibrated_std(tmp_path) -> None:
    from tests.test_outputs import smooth_images

    images = smooth_images(3, 16, 16)
    images[..., :3] = 0  # a background
    (tmp_path / "train").mkdir()
    for i, image in enumerate(images[:2]):
        np.save(tmp_path / "train" / f"t{i}.npy", image.numpy())
    np.save(tmp_path / "scan.npy", images[2].numpy())
    cal = tmp_path / "cal.json"
    result = runner.invoke(
        app, ["calibrate", *TINY, *FAST, "--input", str(tmp_path / "train"), "--out", str(cal)]
    )
    assert result.exit_code == 0, result.output
    assert "fitted on 2 image(s)" in result.output and "-> 90" in result.output
    (entry,) = calibrations.load(cal)
    assert entry.pairs == 2 and entry.fitted_on == "2 image(s): t0, t1"
    assert entry.key == calibration.configuration_key(config(*TINY, *FAST))

    out = tmp_path / "out"
    args = [
        "compose",
        *TINY,
        *FAST,
        "--input",
        str(tmp_path / "scan.npy"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, [*args, "--calibration", str(cal)])
    assert result.exit_code == 0, result.output
    k90 = entry.factors["90"]
    std, raw = np.load(out / "scan_std.npy"), np.load(out / "scan_std_raw.npy")
    assert np.allclose(std, k90 * raw, rtol=1e-6) and raw.max() > 0
    uncertainty = json.loads((out / "metrics.json").read_text())["scan"]["uncertainty"]
    assert uncertainty["calibration"]["factors"] == entry.factors
    assert uncertainty["calibration"]["file"] == str(cal)
    assert uncertainty["calibrated"]["foreground"]["coverage90"] >= uncertainty["foreground"]["coverage90"]
    assert json.loads((out / "config.json").read_text())["calibration"]["factors"] == entry.factors

    # the same calibration installed elsewhere (another machine sharing --out) is the same run: resumed, not refused
    moved = tmp_path / "elsewhere" / "cal.json"
    moved.parent.mkdir()
    moved.write_bytes(cal.read_bytes())
    result = runner.invoke(app, [*args, "--calibration", str(moved)])
    assert result.exit_code == 0, result.output
    assert "1 already done" in " ".join(result.output.split())

    result = runner.invoke(app, [*args, "--out", str(tmp_path / "auto")])  # tiny ships no calibration
    assert result.exit_code == 0, result.output
    assert "no calibration fitted for this configuration" in result.output
    uncertainty = json.loads((tmp_path / "auto" / "metrics.json").read_text())["scan"]["uncertainty"]
    assert uncertainty["calibration"] is None
    assert "no calibration fitted" in uncertainty["calibration_note"]
    assert not (tmp_path / "auto" / "scan_std_raw.npy").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["solver=map"], "gives no std to calibrate"),
        (FAST, "--input is required"),
    ],
)
def test_brgm_calibrate_refuses_what_it_cannot_fit(tmp_path, extra, message) -> None:
    args = ["calibrate", *TINY, *extra, "--out", str(tmp_path / "c.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "c.json").exists()


def test_compose_refuses_a_calibration_that_is_neither_a_choice_nor_a_file(tmp_path) -> None:
    result = runner.invoke(
        app, ["compose", *TINY, "--calibration", str(tmp_path / "missing.json"), "--dry-run"]
    )
    assert result.exit_code == 2
    assert "--calibration must be auto, none or a calibration file" in result.output


@pytest.mark.parametrize(
    "task",
    [
        {"fwd": "kspace+gaussian_noise", "fwd.acceleration": 4},
        {"fwd": "kspace+gaussian_noise", "fwd.acceleration": 8},
        {"fwd": "mask+gaussian_noise", "fwd.missing": "box"},
    ],
    ids=["kspace4", "kspace8", "box"],
)
def test_demo_brain64_ships_a_calibration_of_the_default_laplace_for_each_task(task: dict) -> None:
    source = registry().get("generator", "demo-brain64").obj()
    path = source.calibration_file()
    assert path is not None and path.is_file()
    settings = {**task, "fwd.sigma": 0.02}
    problem_config = brgm.compose(gen="demo-brain64", solver="laplace", device="cpu", **settings).config
    found, _ = calibrations.choose("auto", path, problem_config)
    assert found is not None, (
        "the shipped calibration no longer matches the defaults: refit it (brgm calibrate)"
    )
    assert "training slices" in found.fitted_on
    assert all(math.isfinite(k) and k > 0 for k in found.factors.values())
