"""The key=value grammar: selections before values, precedence, conversion, and errors that name the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brgm.core.compose import resolve_settings
from brgm.core.config import parse_tokens
from brgm.core.errors import ConfigError
from brgm.core.params import coerce


def resolve(*tokens: str) -> dict:
    return resolve_settings(parse_tokens(tokens)).describe()


BASE = ("gen=tiny", "fwd=test_scale", "like=test_sse", "prior=none")


def test_selections_apply_before_values_whatever_their_order() -> None:
    a = resolve("fwd.factor=2", *BASE)
    b = resolve(*BASE, "fwd.factor=2")
    assert a == b and a["fwd"] == [{"name": "test_scale", "factor": 2.0}]


def test_last_value_wins_and_named_keys_reach_their_component() -> None:
    cfg = resolve(*BASE, "fwd=test_scale+test_scale", "fwd.test_scale.factor=3", "fwd.test_scale.factor=4")
    assert [f["factor"] for f in cfg["fwd"]] == [4.0, 4.0]


def test_chain_of_names_and_values_are_converted_by_field_type() -> None:
    cfg = resolve(
        *BASE, "gen.size=16", "solver.steps=12", "solver.betas=[0.5,0.9]", "solver.schedule=constant"
    )
    assert cfg["gen"]["size"] == 16
    assert cfg["solver"]["steps"] == 12 and cfg["solver"]["betas"] == [0.5, 0.9]
    assert cfg["solver"]["schedule"] == "constant"


def test_preset_values_apply_and_user_values_win() -> None:
    cfg = resolve("preset=test-preset", "gen=tiny", "fwd=test_scale", "solver.steps=3")
    assert cfg["preset"] == "test-preset" and cfg["preset_notes"] == "weights chosen for the tests"
    assert cfg["like"] == [{"name": "test_sse", "weight": 2.0}]
    assert cfg["prior"] == [{"name": "test_spread", "weight": 0.5}]
    assert cfg["fwd"] == [{"name": "test_scale", "factor": 3.0}]
    assert cfg["solver"]["steps"] == 3


def test_preset_values_for_deselected_components_are_dropped() -> None:
    cfg = resolve("preset=test-preset", "gen=tiny", "fwd=test_scale", "prior=none", "like=test_sse")
    assert cfg["prior"] == [] and cfg["like"] == [{"name": "test_sse", "weight": 2.0}]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (("gen=tinny", "fwd=test_scale"), r"unknown generator 'tinny' \(did you mean 'tiny'\?\)"),
        (("gen=tiny", "fwd=test_scal"), r"unknown forward model 'test_scal' \(did you mean 'test_scale'\?\)"),
        (
            (*BASE, "fwd.facter=2"),
            r"has no parameter 'facter' \(did you mean 'factor'\?\); valid keys: fwd.factor",
        ),
        ((*BASE, "fwd.factor=-1"), r"fwd.test_scale: factor must be in \(0, inf\], got -1.0"),
        ((*BASE, "fwd.factor=abc"), r"could not convert|must be a number"),
        ((*BASE, "solver.stepz=3"), r"solver.stepz: no such parameter \(did you mean 'steps'\?\)"),
        ((*BASE, "solver.steps=2.5"), r"solver.steps must be an integer, got '2.5'"),
        ((*BASE, "solver.schedule=cosine"), r"schedule must be one of 'brgm', 'constant'"),
        ((*BASE, "fwd.test_scales.factor=2"), r"'test_scales' is not a selected fwd component"),
        ((*BASE, "fwd=test_scale+test_scale", "fwd.factor=2"), r"fwd.factor is ambiguous"),
        ((*BASE, "gne=tiny"), r"unknown key 'gne' \(did you mean 'gen'\?\)"),
        (("fwd=test_scale",), r"no generator selected"),
        (("gen=tiny",), r"no forward model selected"),
        (("gen=tiny", "fwd"), r"expected KEY=VALUE, got 'fwd'"),
        (("preset=nope", "gen=tiny", "fwd=test_scale"), r"unknown preset 'nope'"),
    ],
)
def test_errors_name_the_problem_and_the_fix(tokens: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(*tokens)


def test_unknown_forward_model_suggestion_even_when_far() -> None:
    with pytest.raises(ConfigError, match=r"did you mean"):
        resolve("gen=tiny", "fwd=zzzzzzzz")


@attrs.define
class Typed:
    flag: bool = False
    count: int = 0
    ratio: float = 0.0
    name: str = ""
    path: Path | None = None
    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = ()


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("flag", "yes", True),
        ("flag", "0", False),
        ("count", "12", 12),
        ("count", "1e3", 1000),
        ("ratio", "0.25", 0.25),
        ("name", "a=b", "a=b"),
        ("path", "none", None),
        ("path", "x/y.pkl", Path("x/y.pkl")),
        ("mode", "b", "b"),
        ("sizes", "[1, 2,3]", (1, 2, 3)),
        ("sizes", "4", (4,)),
    ],
)
def test_coerce_by_field_type(field: str, raw: str, expected: object) -> None:
    attrs.resolve_types(Typed)
    assert coerce(raw, attrs.fields_dict(Typed)[field].type, field) == expected


@pytest.mark.parametrize(
    ("field", "raw"), [("flag", "maybe"), ("count", "x"), ("mode", "c"), ("sizes", "[1,a]")]
)
def test_coerce_rejects_with_the_key(field: str, raw: str) -> None:
    attrs.resolve_types(Typed)
    with pytest.raises(ConfigError, match=field):
        coerce(raw, attrs.fields_dict(Typed)[field].type, field)


keys = st.sampled_from(
    [
        "gen",
        "fwd",
        "like",
        "prior",
        "preset",
        "gen.size",
        "fwd.factor",
        "fwd.test_scale.factor",
        "solver.steps",
        "solver.lr",
        "solver.schedule",
        "like.weight",
        "prior.test_spread.weight",
        "bogus",
        "fwd.",
        ".x",
        "gen.seed",
    ]
)
values = st.one_of(
    st.sampled_from(
        ["tiny", "test_scale", "test_sse", "test_spread", "none", "test-preset", "test_scale+test_scale"]
    ),
    st.text(max_size=8),
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=6))
def test_any_override_string_resolves_or_is_a_config_error(pairs: list[tuple[str, str]]) -> None:
    tokens = [*BASE, *(f"{k}={v}" for k, v in pairs)]
    try:
        cfg = resolve(*tokens)
    except ConfigError as err:
        assert str(err)
    else:
        assert cfg["gen"]["name"] and cfg["fwd"]


def test_a_compose_run_builds_each_component_and_the_registry_once(monkeypatch, tmp_path: Path) -> None:
    """One ``brgm compose`` run: every component class is instantiated once, the registry built once, and
    config.json describes the objects the dry run describes (plus the loaded network and the run's settings)."""
    from typer.testing import CliRunner

    from brgm.cli.app import app
    from brgm.core import plugins
    from brgm.core.execution import Execution
    from brgm.core.operators import Chain
    from brgm.core.registry import Registry
    from brgm.plugins.forward_models.kspace import KSpace
    from brgm.plugins.likelihoods.pixel import PixelLikelihood
    from brgm.plugins.priors.gaussian import GaussianPrior
    from brgm.plugins.solvers.map import MAPSolver
    from tests.plugins.test_plugin import Scale, Spread, TinySource

    classes = [TinySource, Scale, KSpace, Chain, PixelLikelihood, GaussianPrior, Spread, MAPSolver, Execution]
    counts: dict[str, int] = {}
    for cls in [*classes, Registry]:

        def counting(self, *args, _init=cls.__init__, _name=cls.__name__, **kwargs) -> None:
            counts[_name] = counts.get(_name, 0) + 1
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    monkeypatch.setattr(plugins, "_built", None)  # as in a new process
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((1, 16, 16)).astype(np.float32))
    np.save(tmp_path / "b.npy", np.random.default_rng(1).random((1, 16, 16)).astype(np.float32))
    tokens = [
        "gen=tiny", "gen.size=16", "fwd=test_scale+kspace", "like=pixel", "prior=gaussian+test_spread",
        "solver=map", "solver.steps=2", "solver.batch_size=1",
    ]  # fmt: skip
    run = ["compose", *tokens, "--input", str(tmp_path / "a.npy"), "--input", str(tmp_path / "b.npy")]
    result = CliRunner().invoke(app, [*run, "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert counts == {cls.__name__: 1 for cls in [*classes, Registry]}

    dry = CliRunner().invoke(app, ["compose", *tokens, "--dry-run"])
    described = json.loads(dry.output)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["gen"] == {**described["gen"], "model": written["gen"]["model"]}
    assert {key: written[key] for key in described} | {"gen": described["gen"]} == described
    assert written["device"] == "cpu" and written["execution"]["batch_size"] == 1
