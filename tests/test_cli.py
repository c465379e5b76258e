"""The command line: listing plugins, composing, exit status 2 with a helpful message for every bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from brgm.cli.app import app

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
